"""The one exception type users see: :class:`SfscError`.

It is exporters' :class:`~exporters.errors.UserError` under the name this package has always used,
so an error raised in either package reaches the user the same way: one line and a non-zero exit.
"""

from exporters.errors import UserError as SfscError

__all__ = ["SfscError"]
