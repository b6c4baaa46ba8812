"""The pictures a deployment engineer decides from: latency vs width, accuracy vs latency."""

from __future__ import annotations

import os
from pathlib import Path

from sfsc_deploy.io.figures import new_figure, save_png
from sfsc_deploy.perf.results import BenchResult


def latency_vs_width(results: list[BenchResult], path: str | os.PathLike) -> Path:
    fig = new_figure(6, 3.8)
    ax = fig.subplots()
    groups: dict[tuple, list[BenchResult]] = {}
    for r in results:
        groups.setdefault((r.runtime, r.batch, r.threads), []).append(r)
    for (runtime, batch, threads), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r.width)
        ax.plot(
            [r.width for r in rows],
            [r.latency_ms.mean for r in rows],
            "o-",
            label=f"{runtime} batch {batch}, {threads} thr",
        )
    ax.set_xlabel("width γ")
    ax.set_ylabel("latency per batch (ms, mean)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Latency vs width")
    fig.tight_layout()
    return save_png(fig, path)


def accuracy_vs_latency(
    results: list[BenchResult], matrix, path: str | os.PathLike, *, batch: int | None = None
) -> Path:
    """M(φ_w, φ_1.0) against latency per width; the upper-left frontier is what to deploy."""
    batch = batch if batch is not None else min(r.batch for r in results)
    rows = sorted(
        (r for r in results if r.batch == batch and r.width in matrix.widths), key=lambda r: r.width
    )
    fig = new_figure(6, 3.8)
    ax = fig.subplots()
    for runtime in sorted({r.runtime for r in rows}):
        pts = [(r.latency_ms.mean, matrix.value(r.width, 1.0), r.width) for r in rows if r.runtime == runtime]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=runtime)
        for lat, acc, w in pts:
            ax.annotate(f"{w:g}", (lat, acc), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xlabel(f"latency (ms, mean, batch {batch})")
    ax.set_ylabel("M(φ_w, φ_1.0) mAP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Query-model accuracy vs latency (gallery: full model)")
    fig.tight_layout()
    return save_png(fig, path)
