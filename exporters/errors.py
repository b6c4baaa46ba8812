"""The one exception type users see, shared by exporters and sfsc_deploy.

Anything raised as :class:`UserError` is a problem with the user's input; the command line prints
its message as a single line and exits non-zero. Everything else is a bug and keeps its traceback.
It lives here, in the lower layer, because exporters may not import sfsc_deploy.
"""


class UserError(Exception):
    """A bad input, with a message that names the problem and the fix."""
