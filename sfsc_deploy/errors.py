"""The one exception type users see.

Anything raised as :class:`SfscError` is a problem with the user's input; the CLI prints its
message as a single line and exits non-zero. Everything else is a bug and keeps its traceback.
"""


class SfscError(Exception):
    """A bad input, with a message that names the problem and the fix."""
