"""What the SFSC paper plots, drawn from a training log: losses, gradient norms (Fig. 5),
uncertainty per width, and conflicting gradient pairs (Fig. 6).

Figures are built on ``matplotlib.figure.Figure`` directly, so plotting never switches the
process-wide matplotlib backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sfsc_deploy.io.figures import save_png
from sfsc_deploy.train.log import TrainLog, read_log


@dataclass
class LogPlots:
    losses: Path
    grad_norms: Path
    uncertainty: Path | None  # only runs with an evidential loss log u
    conflicts: Path

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.losses, self.grad_norms, self.uncertainty, self.conflicts) if p]


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (NaN-aware), so per-step noise does not hide the trend."""
    ok = np.isfinite(values)
    v = np.where(ok, values, 0.0)
    sums, counts = np.cumsum(v), np.cumsum(ok)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _window(log: TrainLog) -> int:
    return max(1, len(log.step) // 60)


def _save(fig: Figure, path: Path) -> Path:
    return save_png(fig, path, dpi=110)


def _lines(ax, log: TrainLog, metric: str, ylabel: str, logy: bool = False) -> bool:
    series = log.per_width(metric)
    for width, values in series.items():
        ax.plot(log.step, smooth(values, _window(log)), label=f"{width:g}×", lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if series:
        ax.legend(title="width", fontsize=8)
    ax.grid(alpha=0.3)
    return bool(series)


def plot_log(log: TrainLog | str | os.PathLike, out_dir: str | os.PathLike, title: str = "") -> LogPlots:
    """Write losses.png, grad_norms.png, uncertainty.png (evidential runs) and conflicts.png."""
    log = log if isinstance(log, TrainLog) else read_log(log)
    out = Path(out_dir)
    suffix = f" — {title}" if title else ""

    extra = [m for m in ("evidence_loss", "kl") if log.per_width(m)]
    fig = Figure(figsize=(5.5 * (1 + len(extra)), 3.8))
    axes = fig.subplots(1, 1 + len(extra), squeeze=False)[0]
    _lines(axes[0], log, "loss", "loss per task (L_ori at 1.0×)")
    for ax, metric in zip(axes[1:], extra, strict=True):
        _lines(ax, log, metric, {"evidence_loss": "L_ev", "kl": "KL(Dir(α) ‖ Dir(1))"}[metric])
    fig.suptitle(f"losses{suffix}")
    fig.tight_layout()
    losses = _save(fig, out / "losses.png")

    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    _lines(ax, log, "grad_norm", "‖g_i‖ per task", logy=True)
    ax.set_title(f"gradient norm per task (SFSC Fig. 5){suffix}", fontsize=10)
    fig.tight_layout()
    grad_norms = _save(fig, out / "grad_norms.png")

    uncertainty = None
    if log.per_width("uncertainty"):
        fig = Figure(figsize=(6.5, 3.8))
        ax = fig.subplots()
        _lines(ax, log, "uncertainty", "u = C / S (batch mean)")
        ax.legend(title="width", fontsize=8, loc="upper right")
        ax.set_ylim(0, 1.02)
        offset = log.column("evidence_offset")
        if offset is not None:
            twin = ax.twinx()
            twin.plot(log.step, offset, color="grey", ls="--", lw=1, label="logit offset b")
            twin.set_ylabel("evidence offset b", color="grey")
            twin.legend(loc="lower right", fontsize=8)
        ax.set_title(f"uncertainty per width{suffix}", fontsize=10)
        fig.tight_layout()
        uncertainty = _save(fig, out / "uncertainty.png")

    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    counts = log.columns["conflicts"]
    ax.plot(log.step, np.cumsum(counts), label="cumulative conflicting pairs")
    ax.set_xlabel("step")
    ax.set_ylabel("cumulative conflicting pairs")
    twin = ax.twinx()
    twin.plot(log.step, smooth(counts, _window(log)), color="tab:orange", lw=1, label="per step (smoothed)")
    twin.set_ylabel("pairs per step", color="tab:orange")
    ax.set_title(f"gradient conflicts g_a · g_b < 0 (SFSC Fig. 6){suffix}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    conflicts = _save(fig, out / "conflicts.png")
    return LogPlots(losses, grad_norms, uncertainty, conflicts)


def plot_comparison(
    logs: dict[str, TrainLog], metric: str, ylabel: str, path: str | os.PathLike, *, logy: bool = False
) -> Path:
    """One panel per run, one line per width: e.g. BCT-S's and SFSC's gradient norms side by side."""
    fig = Figure(figsize=(4.6 * len(logs), 3.6))
    axes = fig.subplots(1, len(logs), squeeze=False, sharey=True)[0]
    for ax, (name, log) in zip(axes, logs.items(), strict=True):
        _lines(ax, log, metric, ylabel, logy)
        ax.set_title(name, fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_cumulative_conflicts(logs: dict[str, TrainLog], path: str | os.PathLike) -> Path:
    """Fig. 6: cumulative conflicting gradient pairs of several runs on one axis."""
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    for name, log in logs.items():
        ax.plot(log.step, np.cumsum(log.columns["conflicts"]), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("cumulative conflicting pairs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[Path, LogPlots]:
    """Plot every training log of a run: the run itself, or each network (w*/) of a baseline run.

    The PNGs go to ``<log folder>/plots``, or to ``out_dir`` (one sub-folder per network).
    """
    from sfsc_deploy.errors import SfscError
    from sfsc_deploy.train.trainer import LOG

    run = Path(run_dir)
    single = (run / LOG).exists()
    folders = [run] if single else sorted(p for p in run.glob("w*/") if (p / LOG).exists())
    if not folders:
        raise SfscError(f"no training log in {run}; pass the --out of `sfsc-deploy train`")
    plots = {}
    for folder in folders:
        if out_dir is None:
            target = folder / "plots"
        else:
            target = Path(out_dir) if single else Path(out_dir) / folder.name
        plots[folder] = plot_log(folder, target, title=folder.name)
    return plots
