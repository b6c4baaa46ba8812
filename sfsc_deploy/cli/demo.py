"""The demo command: the whole pipeline on built-in data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sfsc_deploy.cli.options import app, err, out


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for everything the demo makes.")] = Path(
        "sfsc-demo"
    ),
    quick: Annotated[bool, typer.Option(help="Tiny model and data (about a minute): a smoke run.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out.")] = False,
) -> None:
    """Train, evaluate, export every tier, benchmark and verify, on built-in data; writes report.md."""
    from sfsc_deploy.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(out_dir, quick, seed, force), err)
    out.print(f"wrote {report}")
