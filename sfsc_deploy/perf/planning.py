"""Per-device latency tables and the width planner: the widest width that meets a latency budget."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporters.files import write_text
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.perf.bench import BenchSettings, bench_targets, device_description, onnx_target

TABLE_FORMAT = "sfsc-deploy/device-table"


def profile_device(
    checkpoint_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: BenchSettings,
    *,
    export_dir: str | os.PathLike | None = None,
    images=None,
    progress: bool = True,
) -> dict[str, Any]:
    """Export every trained width (fp32 ONNX; reused from ``export_dir`` when it holds this
    checkpoint's export), benchmark each here, and write the device's latency table."""
    from exporters.files import file_sha256
    from sfsc_deploy.deploy.export import MANIFEST, ExportSettings, default_images, export_tiers
    from sfsc_deploy.deploy.tiers import Tier

    net = checkpoint.load(checkpoint_path)
    sha = file_sha256(checkpoint_path)
    widths = net.config.all_widths
    with tempfile.TemporaryDirectory(prefix="sfsc-profile-") as tmp:
        folder = Path(export_dir) if export_dir else Path(tmp) / "export"
        manifest_path = folder / MANIFEST
        reuse = (
            manifest_path.exists() and json.loads(manifest_path.read_text()).get("checkpoint_sha256") == sha
        )
        if reuse:
            manifest = json.loads(manifest_path.read_text())
        else:
            if images is None:
                from sfsc_deploy.data import load_dataset

                images = default_images(load_dataset("synthetic"), net.config.options.input_size, 8, 8)
            tiers = [Tier("profile", w) for w in widths]
            manifest = export_tiers(
                checkpoint_path, tiers, folder, images, settings=ExportSettings(progress=progress), force=True
            )
        files = {
            a["width"]: folder / a["file"]
            for a in manifest["artifacts"]
            if a["format"] == "onnx" and a["precision"] == "fp32"
        }
        missing = [w for w in widths if w not in files]
        if missing:
            raise SfscError(f"{folder} has no fp32 ONNX for widths {missing}; drop --export-dir to re-export")
        results = bench_targets(
            [onnx_target(files[w], settings.provider) for w in widths], settings, progress
        )
    table = {
        "format": TABLE_FORMAT,
        "format_version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_description(),
        "checkpoint": str(checkpoint_path),
        "checkpoint_sha256": sha,
        "family_id": checkpoint.family_id(net),
        "settings": {**settings.__dict__},
        "entries": [r.to_dict() for r in results],
    }
    write_text(out_path, json.dumps(table, indent=2, default=list) + "\n")
    return table


def load_table(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SfscError(f"device table {path} not found; create it with `sfsc-deploy profile`")
    try:
        table = json.loads(path.read_text())
        assert table["format"] == TABLE_FORMAT and isinstance(table["entries"], list)
    except Exception:
        raise SfscError(f"{path} is not a device table; create one with `sfsc-deploy profile`") from None
    return table


@dataclass
class Plan:
    width: float | None  # None: nothing fits
    latency_ms: float | None
    expected_map: float | None  # M(φ_w, φ_1.0) from eval results
    candidates: list[dict[str, Any]]  # every width: latency at the percentile, fits or not
    budget_ms: float
    percentile: float
    batch: int
    threads: int

    def message(self) -> str:
        if self.width is None:
            fastest = min(self.candidates, key=lambda c: c["latency_ms"])
            return (
                f"no trained width meets {self.budget_ms:g} ms at p{self.percentile:g} (batch {self.batch}, "
                f"{self.threads} threads); the fastest, width {fastest['width']:g}, takes "
                f"{fastest['latency_ms']:.2f} ms — raise the budget, add threads or train a narrower width"
            )
        text = (
            f"width {self.width:g}: p{self.percentile:g} {self.latency_ms:.2f} ms ≤ {self.budget_ms:g} ms "
            f"(batch {self.batch}, {self.threads} threads)"
        )
        if self.expected_map is not None:
            text += f"; expected M(φ_{self.width:g}, φ_1.0) = {self.expected_map:.1f} mAP"
        return text


def plan_width(
    table: dict[str, Any],
    budget_ms: float,
    *,
    percentile: float = 99,
    batch: int = 1,
    threads: int | None = None,
    matrix=None,
) -> Plan:
    if budget_ms <= 0:
        raise SfscError("--budget-ms must be positive")
    entries = [e for e in table["entries"] if e["batch"] == batch]
    if not entries:
        have = sorted({e["batch"] for e in table["entries"]})
        raise SfscError(f"the table has no batch-{batch} figures (it has {have}); re-profile with --batches")
    threads = threads if threads is not None else min(e["threads"] for e in entries)
    entries = [e for e in entries if e["threads"] == threads]
    if not entries:
        raise SfscError(f"the table has no {threads}-thread figures; re-profile with --threads {threads}")
    from sfsc_deploy.perf.bench import Latency

    candidates = []
    for e in sorted(entries, key=lambda e: e["width"]):
        lat = Latency(**e["latency_ms"]).percentile(percentile)
        candidates.append({"width": e["width"], "latency_ms": lat, "fits": lat <= budget_ms})
    fitting = [c for c in candidates if c["fits"]]
    best = max(fitting, key=lambda c: c["width"]) if fitting else None
    expected = None
    if best is not None and matrix is not None and best["width"] in matrix.widths:
        expected = matrix.value(best["width"], 1.0)
    return Plan(
        best["width"] if best else None,
        best["latency_ms"] if best else None,
        expected,
        candidates,
        budget_ms,
        percentile,
        batch,
        threads,
    )
