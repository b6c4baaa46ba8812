"""Run every ``sfsc-deploy`` command of the README once, at tiny sizes, in one folder.

The README's commands are the whole pipeline (init → slice → train → eval → export → extract →
verify → bench → profile → plan, and the demo), so the tests that need a full pipeline's outputs
read this one run instead of training and exporting again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# appended to a command (click keeps the last value of a repeated option): tiny sizes for CI
TINY = {
    "init": "--width-mult 0.25 --input-size 64x32",
    "train": "--epochs 1 --width-mult 0.25 --input-size 64x32 --feature-dim 32 --batch-ids 4 --batch-k 2",
    "export": "--calibration-images 16 --parity-images 8",
    "bench": "--iters 3 --warmup 1",
    "profile": "--iters 3 --warmup 1",
    "demo": "--quick",
}


def readme_commands() -> list[str]:
    """Every ``sfsc-deploy`` command of the README's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if "sfsc-deploy " in line and not line.startswith("#"):
                commands.append(line[line.index("sfsc-deploy ") :])
    return commands


def fake_market(root: Path, ids: int = 12) -> None:
    """A Market-1501-named ``bounding_box_train/`` for the README's Market walk-through."""
    from PIL import Image

    folder = root / "bounding_box_train"
    folder.mkdir(parents=True)
    for pid in range(1, ids + 1):
        for cam in (1, 2):
            for k in range(2):
                colour = ((pid * 37) % 256, (cam * 80) % 256, (k * 120 + pid * 11) % 256)
                Image.new("RGB", (32, 64), colour).save(folder / f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg")


@dataclass(frozen=True)
class CommandRun:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def subcommand(self) -> str:
        return self.command.split()[1]


@dataclass(frozen=True)
class ReadmeRun:
    folder: Path
    runs: list[CommandRun]

    def of(self, subcommand: str) -> list[CommandRun]:
        return [r for r in self.runs if r.subcommand == subcommand]


def run_readme(folder: Path) -> ReadmeRun:
    shutil.copytree(ROOT / "examples", folder / "examples")
    fake_market(folder / "path" / "to" / "market1501")
    exe = shutil.which("sfsc-deploy") or f"{sys.executable} -m sfsc_deploy.cli"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = []
    for command in readme_commands():
        tiny = TINY.get(command.split()[1], "")
        line = f"{command.replace('sfsc-deploy', exe, 1)} {tiny}"
        start = time.perf_counter()
        done = subprocess.run(line, shell=True, cwd=folder, env=env, capture_output=True, text=True)
        runs.append(
            CommandRun(command, done.returncode, done.stdout, done.stderr, time.perf_counter() - start)
        )
    return ReadmeRun(folder, runs)
