"""A device's latency table (what `profile` writes) and the width planner that reads it.

Torch-free: ``sfsc-deploy plan`` runs on the deployment host and should answer at once.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporters.files import json_text, write_text
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.headers import DEVICE_TABLE
from sfsc_deploy.perf.results import BenchResult, BenchSettings


@dataclass
class DeviceTable:
    device: dict[str, Any]  # perf.bench.device_description()
    checkpoint: str
    checkpoint_sha256: str
    family_id: str
    settings: BenchSettings
    entries: list[BenchResult]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {
            **DEVICE_TABLE.header(),
            "created": self.created,
            "device": self.device,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "family_id": self.family_id,
            "settings": self.settings.to_dict(),
            "entries": [e.to_dict() for e in self.entries],
        }

    def save(self, path: str | os.PathLike, *, force: bool = True, inputs=()) -> Path:
        return write_text(path, json_text(self.to_dict()), force=force, inputs=inputs)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeviceTable:
        path = Path(path)
        if not path.is_file():
            raise SfscError(f"device table {path} not found; create it with `sfsc-deploy profile`")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        DEVICE_TABLE.check(data, path)
        shape = {"device": dict, "settings": dict, "entries": list}
        wrong = [k for k, kind in shape.items() if not isinstance(data.get(k), kind)]
        if wrong or not all(isinstance(e, dict) for e in data["entries"]):
            raise SfscError(
                f"{path} is a damaged device table ({', '.join(wrong) or 'entries'}); {DEVICE_TABLE.fix}"
            )
        try:
            return cls(
                device=dict(data["device"]),
                checkpoint=str(data["checkpoint"]),
                checkpoint_sha256=str(data["checkpoint_sha256"]),
                family_id=str(data["family_id"]),
                settings=BenchSettings.from_dict(data["settings"]),
                entries=[BenchResult.from_dict(e) for e in data["entries"]],
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SfscError(f"{path} is not a device table ({exc}); {DEVICE_TABLE.fix}") from None


def load_table(path: str | os.PathLike) -> DeviceTable:
    return DeviceTable.load(path)


@dataclass
class Candidate:
    width: float
    latency_ms: float  # at the plan's percentile
    fits: bool


@dataclass
class Plan:
    width: float | None  # None: nothing fits
    latency_ms: float | None
    expected_map: float | None  # M(φ_w, φ_1.0) from eval results
    candidates: list[Candidate]  # every width: latency at the percentile, fits or not
    budget_ms: float
    percentile: float
    batch: int
    threads: int

    def message(self) -> str:
        if self.width is None:
            fastest = min(self.candidates, key=lambda c: c.latency_ms)
            return (
                f"no trained width meets {self.budget_ms:g} ms at p{self.percentile:g} (batch {self.batch}, "
                f"{self.threads} threads); the fastest, width {fastest.width:g}, takes "
                f"{fastest.latency_ms:.2f} ms — raise the budget, add threads or train a narrower width"
            )
        text = (
            f"width {self.width:g}: p{self.percentile:g} {self.latency_ms:.2f} ms ≤ {self.budget_ms:g} ms "
            f"(batch {self.batch}, {self.threads} threads)"
        )
        if self.expected_map is not None:
            text += f"; expected M(φ_{self.width:g}, φ_1.0) = {self.expected_map:.1f} mAP"
        return text


def plan_width(
    table: DeviceTable,
    budget_ms: float,
    *,
    percentile: float = 99,
    batch: int = 1,
    threads: int | None = None,
    matrix=None,
) -> Plan:
    """The widest width whose latency at ``percentile`` meets ``budget_ms`` on the profiled device."""
    if not 0 < budget_ms < math.inf:
        raise SfscError(f"--budget-ms must be a positive finite number, got {budget_ms}")
    if not 0 < percentile <= 100:
        raise SfscError(f"--percentile must be in (0, 100], got {percentile}")
    entries = [e for e in table.entries if e.batch == batch]
    if not entries:
        have = sorted({e.batch for e in table.entries})
        raise SfscError(f"the table has no batch-{batch} figures (it has {have}); re-profile with --batches")
    threads = threads if threads is not None else min(e.threads for e in entries)
    entries = [e for e in entries if e.threads == threads]
    if not entries:
        raise SfscError(f"the table has no {threads}-thread figures; re-profile with --threads {threads}")
    candidates = []
    for e in sorted(entries, key=lambda e: e.width):
        latency = e.latency_ms.percentile(percentile)
        candidates.append(Candidate(e.width, latency, latency <= budget_ms))
    fitting = [c for c in candidates if c.fits]
    best = max(fitting, key=lambda c: c.width) if fitting else None
    expected = None
    if best is not None and matrix is not None and best.width in matrix.widths:
        expected = matrix.value(best.width, 1.0)
    return Plan(
        best.width if best else None,
        best.latency_ms if best else None,
        expected,
        candidates,
        budget_ms,
        percentile,
        batch,
        threads,
    )
