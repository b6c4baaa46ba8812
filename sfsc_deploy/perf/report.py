"""One benchmark report: bench.json, bench.md and the pictures, written the same way for everyone.

``bench_report`` times the targets and writes ``bench.json`` (device, settings, command, date and
every result), ``bench.md`` (the same header and a table), ``latency_vs_width.png`` and, with an
evaluation matrix, ``accuracy_vs_latency.png``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporters.files import check_overwrite, json_text, write_text
from sfsc_deploy.perf.results import BenchResult, BenchSettings, results_markdown


@dataclass
class BenchReport:
    device: dict[str, Any]
    settings: BenchSettings
    results: list[BenchResult]
    command: str = field(default_factory=lambda: "sfsc-deploy " + " ".join(sys.argv[1:]))
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    files: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "date": self.date,
            "device": self.device,
            "settings": self.settings.to_dict(),
            "results": [r.to_dict() for r in self.results],
        }

    def markdown(self) -> str:
        dev = self.device
        return (
            f"# Benchmark\n\n- command: `{self.command}`\n- machine: {dev['cpu']}, {dev['cores']} cores, "
            f"{dev['system']}\n- date: {self.date}\n"
            f"- onnxruntime {dev['onnxruntime']}"
            + (f", OpenVINO {dev['openvino']}" if "openvino" in dev else "")
            + f", torch {dev['torch']}\n\n"
            f"{results_markdown(self.results)}\n"
        )


def bench_report(
    targets: list,  # perf.bench.Target
    settings: BenchSettings,
    out_dir: str | os.PathLike,
    *,
    matrix=None,  # evaluation.CompatibilityMatrix: adds accuracy_vs_latency.png
    command: str | None = None,
    progress: bool = True,
    force: bool = True,
    inputs=(),
) -> BenchReport:
    """Time ``targets`` and write the report into ``out_dir``; with ``force=False`` an earlier
    report there is refused before anything is timed, and never onto one of ``inputs``."""
    from sfsc_deploy.perf.bench import bench_targets, device_description
    from sfsc_deploy.perf.plots import accuracy_vs_latency, latency_vs_width

    out = Path(out_dir)
    names = ["bench.json", "bench.md", "latency_vs_width.png"]
    names += ["accuracy_vs_latency.png"] if matrix is not None else []
    for name in names:
        check_overwrite(out / name, force, inputs)
    report = BenchReport(device_description(), settings, bench_targets(targets, settings, progress))
    if command is not None:
        report.command = command
    report.files = [
        write_text(out / "bench.json", json_text(report.to_dict())),
        write_text(out / "bench.md", report.markdown()),
        latency_vs_width(report.results, out / "latency_vs_width.png"),
    ]
    if matrix is not None:
        report.files.append(accuracy_vs_latency(report.results, matrix, out / "accuracy_vs_latency.png"))
    return report
