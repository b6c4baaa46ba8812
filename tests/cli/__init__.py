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


# the tiny ResNet-18 the CLI and multi-process tests build: small enough to train in seconds
TINY_NET = ["--arch", "resnet18", "--width-mult", "0.25", "--input-size", "64x32", "--divisor", "4"]
