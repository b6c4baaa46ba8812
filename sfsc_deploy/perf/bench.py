"""Latency and memory of exported artifacts (or the PyTorch sliced model), per batch and threads.

What is measured and how it is recorded lives in ``perf.results``; this module times things.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from exporters.runtime import MODEL_SUFFIXES
from sfsc_deploy import __version__
from sfsc_deploy.errors import SfscError
from sfsc_deploy.perf.results import BenchResult, BenchSettings, Latency


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


def artifact_target(
    path: str | os.PathLike, provider: str = "CPUExecutionProvider", allow_fallback: bool = False
) -> Target:
    """An exported artifact behind its runtime (onnxruntime, OpenVINO or TensorRT)."""
    from exporters.metadata import ModelInfo
    from exporters.runtime import open_runner

    path = Path(path)
    probe = open_runner(path, provider=provider, allow_fallback=allow_fallback)
    info = ModelInfo.from_metadata(probe.metadata, probe.runtime, str(path))
    h, w = info.input_size

    def example(batch: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        if probe.input_uint8:
            return rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        return rng.standard_normal((batch, 3, h, w), dtype=np.float32)

    def make(threads: int):
        if probe.runtime == "tensorrt":
            return probe
        return open_runner(path, threads=threads, provider=provider, allow_fallback=allow_fallback)

    meta = probe.metadata
    extra: dict[str, Any] = {"execution_provider": probe.providers[0]}  # what ran, not what was asked
    size = path.stat().st_size
    if probe.runtime == "openvino":  # an IR is its graph (.xml) and its weights (.bin)
        from exporters.openvino_runtime import weights_path

        size += weights_path(path).stat().st_size
    if probe.runtime == "tensorrt":
        engine = probe.engine  # type: ignore[attr-defined]
        memory = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", None)
        extra["tensorrt_device_memory_bytes"] = memory
    return Target(
        path.name,
        "onnxruntime" if probe.runtime == "onnx" else probe.runtime,
        info.width,
        info.to_dict(),
        make,
        example,
        size,
        int(meta["params"]) if "params" in meta else None,
        int(meta["macs"]) if "macs" in meta else None,
        extra,
    )


def torch_target(net, width: float, source: str = "") -> Target:
    """The PyTorch sliced model in eager mode: what users would run without exporting."""
    from sfsc_deploy.models.slicing import slice_model
    from sfsc_deploy.perf.complexity import count_macs, count_params

    twin = slice_model(net, width)
    h, w = net.config.options.input_size

    def make(threads: int):
        torch.set_num_threads(threads)  # bench_targets restores the caller's setting

        def run(x: np.ndarray):
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


def open_target(
    path: str | os.PathLike, provider: str = "CPUExecutionProvider", allow_fallback: bool = False
) -> Target:
    p = Path(path)
    if not p.is_file():
        raise SfscError(f"{p} not found; pass .onnx, .xml or .engine files written by `sfsc-deploy export`")
    if p.suffix not in MODEL_SUFFIXES:
        raise SfscError(
            f"{p}: cannot benchmark {p.suffix!r} files; pass .onnx, .xml (OpenVINO) or .engine "
            "(or --checkpoint)"
        )
    return artifact_target(p, provider, allow_fallback)


def cpu_name() -> str:
    """The processor's marketing name (``platform.processor()`` is empty on most Linux systems)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_description() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import onnxruntime

    desc: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "sfsc_deploy": __version__,
    }
    try:
        desc["openvino"] = version("openvino")  # without importing it (optional, and slow to load)
    except PackageNotFoundError:
        pass
    if torch.cuda.is_available():
        desc["gpu"] = torch.cuda.get_device_name()
    return desc


def bench_targets(targets: list[Target], settings: BenchSettings, progress: bool = True) -> list[BenchResult]:
    results = []
    total = len(targets) * len(settings.batches) * len(settings.threads)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
    )
    caller_threads = torch.get_num_threads()  # torch targets set their own; restored below
    try:
        with pinned(settings.cpus), Progress(*columns, disable=not progress, transient=True) as bar:
            task = bar.add_task("benchmark", total=total)
            for target in targets:
                for threads in settings.threads:
                    before = rss_mb()
                    run = target.make(threads)
                    for batch in settings.batches:
                        bar.update(task, description=f"{target.name} b{batch} t{threads}")
                        x = target.example(batch)
                        samples = time_calls(
                            partial(run, x), settings.warmup, settings.iters, settings.seconds
                        )
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
    finally:
        torch.set_num_threads(caller_threads)
    return results
