"""The training log (``train_log.jsonl``) read back as columns, for plots and benchmarks.

The trainer writes one JSON line per step (losses, gradient norms, uncertainty, conflicts per
width) and one per validated epoch. ``read_log`` turns them into arrays keyed by metric and
width, so nothing downstream parses the line format itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sfsc_deploy.errors import SfscError
from sfsc_deploy.train.trainer import LOG


@dataclass
class TrainLog:
    step: np.ndarray  # [T] optimiser step of every step record (1-based)
    epoch: np.ndarray  # [T]
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [T], NaN where absent
    val: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (epoch, validation figures)

    def per_width(self, metric: str) -> dict[float, np.ndarray]:
        """``metric/<width>`` columns as {width: values}, widest first (e.g. ``uncertainty``)."""
        found = {
            float(name.split("/", 1)[1]): values
            for name, values in self.columns.items()
            if name.split("/", 1)[0] == metric and "/" in name
        }
        return dict(sorted(found.items(), reverse=True))

    def column(self, name: str) -> np.ndarray | None:
        return self.columns.get(name)

    def epoch_mean(self, values: np.ndarray) -> np.ndarray:
        """Mean of ``values`` per epoch (NaN-aware), in epoch order."""
        return np.array([np.nanmean(values[self.epoch == e]) for e in np.unique(self.epoch)])


def read_log(run_dir: str | Path) -> TrainLog:
    """The log of a run directory (or a ``train_log.jsonl`` path)."""
    path = Path(run_dir)
    path = path / LOG if path.is_dir() else path
    if not path.is_file():
        raise SfscError(f"no training log at {path}; pass the --out of `sfsc-deploy train`")
    steps, val = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise SfscError(f"{path} line {number} is not JSON; the log is damaged") from None
        if "val" in record:
            val.append((int(record["epoch"]), record["val"] or {}))
        else:
            steps.append(record)
    if not steps:
        raise SfscError(f"{path} holds no training steps yet; plot it after the first epoch")
    names = sorted({k for r in steps for k, v in r.items() if isinstance(v, int | float)} - {"step", "epoch"})
    columns = {
        name: np.array([float(r[name]) if name in r else math.nan for r in steps], dtype=np.float64)
        for name in names
    }
    return TrainLog(
        step=np.array([int(r["step"]) for r in steps]),
        epoch=np.array([int(r["epoch"]) for r in steps]),
        columns=columns,
        val=val,
    )
