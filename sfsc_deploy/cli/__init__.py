"""The ``sfsc-deploy`` command line: a thin layer over the library, one module per pipeline stage.

Each command parses its options into the library's dataclasses and calls the library; defaults and
choices come from the library. User errors (:class:`SfscError`) print one line and exit 2;
``--debug`` anywhere on the command line shows the traceback instead. Importing this package loads
no torch, so ``--help`` and ``plan`` answer at once.
"""

from __future__ import annotations

import errno
import sys

from sfsc_deploy import __version__
from sfsc_deploy.cli import demo, deploy, model, perf, retrieval, training  # noqa: F401  (registers commands)
from sfsc_deploy.cli.options import COMMAND_ARGS, app, err, out
from sfsc_deploy.errors import SfscError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if args in (["--version"], ["-V"]):
        out.print(f"sfsc-deploy {__version__}")
        return
    COMMAND_ARGS[:] = args  # what --nproc runs again in every process
    try:
        app(args=args, prog_name="sfsc-deploy")
    except SfscError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except OSError as exc:  # the machine, not the code: a full disk, a vanished file, no permission
        if debug:
            raise
        err.print(f"error: {os_error_line(exc)}", markup=False)
        sys.exit(2)


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system failure (outputs are written to temp names, so the one
    being written when it struck is removed, never left half-written)."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in _NO_SPACE:
        return (
            f"no space left to write{where}: {exc.strerror or exc}; the unfinished output was removed — "
            "free space or choose another --out"
        )
    return f"{exc.strerror or exc}{where}"
