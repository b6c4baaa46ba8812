"""Latency and memory of exported artifacts (or the PyTorch sliced model), per batch and threads.

Figures follow trtexec / onnxruntime_perf_test where they overlap: latency in ms (mean, std, min,
median, p90, p95, p99, max) per inference of one batch, throughput in images/s.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sfsc_deploy import __version__
from sfsc_deploy.errors import SfscError


@dataclass(frozen=True)
class BenchSettings:
    batches: tuple[int, ...] = (1, 8, 32)
    threads: tuple[int, ...] = (1,)
    warmup: int = 10
    iters: int = 100
    seconds: float | None = None  # stop a configuration early once this much time was spent timing
    provider: str = "CPUExecutionProvider"
    cpus: tuple[int, ...] | None = None  # pin the process to these cores (emulate a small device)

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1 or not self.threads or min(self.threads) < 1:
            raise SfscError("batch sizes and thread counts must be >= 1")
        if self.warmup < 0 or self.iters < 1 or (self.seconds is not None and self.seconds <= 0):
            raise SfscError("need --warmup >= 0, --iters >= 1 and --seconds > 0")
        if self.cpus is not None:
            available = os.sched_getaffinity(0)
            missing = sorted(set(self.cpus) - available)
            if missing or not self.cpus:
                raise SfscError(
                    f"--cpus {list(self.cpus)}: cores {missing} are not available here "
                    f"(this machine has {sorted(available)})"
                )


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
            raise SfscError(f"percentile {p} is not recorded; choose one of 50, 90, 95, 99, 100")
        return table[p]


def time_calls(fn: Callable[[], Any], warmup: int, iters: int, seconds: float | None = None) -> list[float]:
    """Wall time of each call in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if seconds is not None and time.perf_counter() - start >= seconds and len(samples) >= 5:
            break
    return samples


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Target:
    """Something to time: a callable per thread count plus what it is."""

    name: str
    runtime: str
    width: float
    info: dict[str, Any]
    make: Callable[[int], Callable[[np.ndarray], Any]]  # threads -> run(batch input)
    example: Callable[[int], np.ndarray]  # batch -> input
    file_bytes: int | None = None
    params: int | None = None
    macs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the runtime's own device memory


def onnx_target(path: str | os.PathLike, provider: str = "CPUExecutionProvider") -> Target:
    from exporters.ort_runtime import OrtModel
    from sfsc_deploy.retrieval.extractors import ModelInfo

    path = Path(path)
    probe = OrtModel(path)
    info = ModelInfo.from_metadata(probe.metadata, "onnx", str(path))
    h, w = info.input_size

    def example(batch: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        if probe.input_uint8:
            return rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        return rng.standard_normal((batch, 3, h, w), dtype=np.float32)

    def make(threads: int):
        return OrtModel(path, threads=threads, providers=[provider])

    meta = probe.metadata
    return Target(
        path.name,
        "onnxruntime",
        info.width,
        info.to_dict(),
        make,
        example,
        path.stat().st_size,
        int(meta["params"]) if "params" in meta else None,
        int(meta["macs"]) if "macs" in meta else None,
    )


def torch_target(net, width: float, source: str = "") -> Target:
    """The PyTorch sliced model in eager mode: what users would run without exporting."""
    from sfsc_deploy.models.slicing import slice_model
    from sfsc_deploy.perf.complexity import count_macs, count_params

    twin = slice_model(net, width)
    h, w = net.config.options.input_size

    def make(threads: int):
        def run(x: np.ndarray):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                return twin(torch.from_numpy(x))

        return run

    def example(batch: int) -> np.ndarray:
        return np.random.default_rng(0).standard_normal((batch, 3, h, w), dtype=np.float32)

    size = sum(t.numel() * t.element_size() for t in twin.state_dict().values())
    return Target(
        f"pytorch w{width:g}",
        "pytorch",
        width,
        {"source": source},
        make,
        example,
        size,
        count_params(twin),
        count_macs(twin, (h, w)),
    )


def engine_target(path: str | os.PathLike) -> Target:
    from sfsc_deploy.retrieval.extractors import TensorRTExtractor

    ext = TensorRTExtractor(path)
    h, w = ext.info.input_size

    def example(batch: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        if ext.info.bake_preprocess:
            return rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        return rng.standard_normal((batch, 3, h, w), dtype=np.float32)

    engine = ext.model.engine
    memory = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", None)
    return Target(
        Path(path).name,
        "tensorrt",
        ext.info.width,
        ext.info.to_dict(),
        lambda threads: ext.model,
        example,
        Path(path).stat().st_size,
        extra={"tensorrt_device_memory_bytes": memory},
    )


def open_target(path: str | os.PathLike, provider: str = "CPUExecutionProvider") -> Target:
    p = Path(path)
    if not p.is_file():
        raise SfscError(f"{p} not found; pass .onnx or .engine files written by `sfsc-deploy export`")
    if p.suffix == ".onnx":
        return onnx_target(p, provider)
    if p.suffix in (".engine", ".plan", ".trt"):
        return engine_target(p)
    raise SfscError(f"{p}: cannot benchmark {p.suffix!r} files; pass .onnx or .engine (or --checkpoint)")


def cpu_name() -> str:
    """The processor's marketing name (``platform.processor()`` is empty on most Linux systems)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_description() -> dict[str, Any]:
    import onnxruntime

    desc = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "sfsc_deploy": __version__,
    }
    if torch.cuda.is_available():
        desc["gpu"] = torch.cuda.get_device_name()
    return desc


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


def bench_targets(targets: list[Target], settings: BenchSettings, progress: bool = True) -> list[BenchResult]:
    results = []
    total = len(targets) * len(settings.batches) * len(settings.threads)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    with pinned(settings.cpus), Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("benchmark", total=total)
        for target in targets:
            for threads in settings.threads:
                before = rss_mb()
                run = target.make(threads)
                for batch in settings.batches:
                    bar.update(task, description=f"{target.name} b{batch} t{threads}")
                    x = target.example(batch)
                    samples = time_calls(partial(run, x), settings.warmup, settings.iters, settings.seconds)
                    lat = Latency.of(samples)
                    results.append(
                        BenchResult(
                            target.name,
                            target.runtime,
                            target.width,
                            batch,
                            threads,
                            lat,
                            batch * 1e3 / lat.mean,
                            rss_mb() - before,
                            peak_rss_mb(),
                            target.file_bytes,
                            target.params,
                            target.macs,
                            dict(target.extra),
                        )
                    )
                    bar.advance(task)
    return results


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
