"""Shared by the CLI tests: run one command line in this process and capture what it printed."""

from sfsc_deploy.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``sfsc-deploy ARGV`` (arguments given as str or Path)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err
