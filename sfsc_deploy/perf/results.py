"""What a latency benchmark measures and how it is written down: settings, latency, one result row.

Torch-free on purpose: ``plan`` reads device tables made of these rows and must start fast.
Figures follow trtexec / onnxruntime_perf_test where they overlap: latency in ms (mean, std, min,
median, p90, p95, p99, max) per inference of one batch, throughput in images/s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sfsc_deploy.errors import SfscError

PERCENTILES = (50, 90, 95, 99, 100)


@dataclass(frozen=True)
class BenchSettings:
    batches: tuple[int, ...] = (1, 8, 32)
    threads: tuple[int, ...] = (1,)
    warmup: int = 10
    iters: int = 100
    seconds: float | None = None  # stop a configuration early once this much time was spent timing
    provider: str = "CPUExecutionProvider"
    allow_fallback: bool = False  # run on onnxruntime's fallback when the provider is missing
    cpus: tuple[int, ...] | None = None  # pin the process to these cores (emulate a small device)

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1 or not self.threads or min(self.threads) < 1:
            raise SfscError("batch sizes and thread counts must be >= 1")
        if (
            self.warmup < 0
            or self.iters < 1
            or (self.seconds is not None and not 0 < self.seconds < math.inf)
        ):
            raise SfscError("need --warmup >= 0, --iters >= 1 and a finite --seconds > 0")
        if max(self.threads) > 1024 or max(self.batches) > 65536:
            raise SfscError("thread counts must be <= 1024 and batch sizes <= 65536")
        if not isinstance(self.provider, str) or not self.provider.endswith("ExecutionProvider"):
            raise SfscError(
                f"--provider {self.provider!r} is not an onnxruntime execution provider name "
                f"(e.g. CPUExecutionProvider, CUDAExecutionProvider)"
            )
        if not isinstance(self.allow_fallback, bool):
            raise SfscError(f"allow_fallback must be true or false, got {self.allow_fallback!r}")
        if self.cpus is not None:
            available = os.sched_getaffinity(0)
            missing = sorted(set(self.cpus) - available)
            if missing or not self.cpus:
                raise SfscError(
                    f"--cpus {list(self.cpus)}: cores {missing} are not available here "
                    f"(this machine has {sorted(available)})"
                )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchSettings:
        tuples = ("batches", "threads", "cpus")
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()})


@dataclass
class Latency:
    mean: float
    std: float
    min: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    iters: int

    @classmethod
    def of(cls, samples_ms: list[float]) -> Latency:
        import numpy as np

        a = np.asarray(samples_ms, dtype=np.float64)
        q = np.percentile(a, [50, 90, 95, 99])
        return cls(
            float(a.mean()),
            float(a.std()),
            float(a.min()),
            float(q[0]),
            float(q[1]),
            float(q[2]),
            float(q[3]),
            float(a.max()),
            len(a),
        )

    def percentile(self, p: float) -> float:
        table = {50: self.median, 90: self.p90, 95: self.p95, 99: self.p99, 100: self.max}
        if p not in table:
            raise SfscError(
                f"percentile {p} is not recorded; choose one of {', '.join(map(str, PERCENTILES))}"
            )
        return table[p]


@dataclass
class BenchResult:
    target: str
    runtime: str
    width: float
    batch: int
    threads: int
    latency_ms: Latency
    throughput: float  # images/s
    rss_growth_mb: float  # resident memory added by loading the model and running it
    peak_rss_mb: float
    file_bytes: int | None
    params: int | None
    macs: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        """From a file: numbers must be numbers (not strings, booleans or NaN) before any comparison."""
        latency = data["latency_ms"]
        if not isinstance(latency, Mapping):
            raise ValueError("latency_ms must be a table")
        numbers = {
            **{f"latency_ms.{k}": v for k, v in latency.items()},
            "width": data.get("width"),
            "batch": data.get("batch"),
            "threads": data.get("threads"),
            "throughput": data.get("throughput"),
        }
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        return cls(**{**data, "latency_ms": Latency(**latency)})


def results_markdown(results: list[BenchResult]) -> str:
    lines = [
        "| model | runtime | width | batch | threads | mean ms | p50 | p90 | p99 | img/s | RSS +MB | size MB "
        "| MACs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lat = r.latency_ms
        size = f"{r.file_bytes / 1e6:.2f}" if r.file_bytes else "–"
        macs = f"{r.macs / 1e6:.1f} M" if r.macs else "–"
        lines.append(
            f"| {r.target} | {r.runtime} | {r.width:g} | {r.batch} | {r.threads} | {lat.mean:.3f} "
            f"| {lat.median:.3f} | {lat.p90:.3f} | {lat.p99:.3f} | {r.throughput:.1f} "
            f"| {r.rss_growth_mb:.1f} | {size} | {macs} |"
        )
    return "\n".join(lines)
