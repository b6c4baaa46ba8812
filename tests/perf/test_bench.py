import json
import os

import numpy as np
import pytest

from sfsc_deploy.deploy.export import ExportSettings, default_images, export_tiers
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.perf.bench import artifact_target, bench_targets, time_calls, torch_target
from sfsc_deploy.perf.results import BenchSettings, Latency
from tests.conftest import INPUT, tiny


def test_latency_statistics_match_numpy():
    samples = list(np.random.default_rng(0).gamma(2.0, 1.0, size=200))
    lat = Latency.of(samples)
    assert lat.mean == pytest.approx(np.mean(samples)) and lat.max == max(samples)
    assert lat.median == pytest.approx(np.percentile(samples, 50))
    assert lat.p99 == pytest.approx(np.percentile(samples, 99))
    assert lat.min <= lat.median <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
    assert lat.percentile(99) == lat.p99
    with pytest.raises(SfscError, match="percentile"):
        lat.percentile(42)


def test_time_calls_counts_and_bounds():
    calls = []
    samples = time_calls(lambda: calls.append(1), warmup=3, iters=7)
    assert len(samples) == 7 and len(calls) == 10
    assert len(time_calls(lambda: None, warmup=0, iters=10**6, seconds=0.01)) < 10**6


def test_settings_are_validated():
    with pytest.raises(SfscError):
        BenchSettings(batches=(0,))
    with pytest.raises(SfscError):
        BenchSettings(iters=0)
    with pytest.raises(SfscError, match="not available"):
        BenchSettings(cpus=(max(os.sched_getaffinity(0)) + 1,))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, synthetic_small):
    root = tmp_path_factory.mktemp("bench")
    ck = root / "ck.safetensors"
    checkpoint.save(tiny(), ck)
    images = default_images(synthetic_small, INPUT, calibration=16, parity=8)
    tiers = [Tier("a", 0.25), Tier("b", 1.0), Tier("c", 0.25, precision="int8", bake_preprocess=True)]
    manifest = export_tiers(
        ck, tiers, root / "out", images, settings=ExportSettings(progress=False)
    ).to_dict()
    return ck, [root / "out" / a["file"] for a in manifest["artifacts"]]


def test_bench_every_runtime_and_configuration(artifacts):
    ck, files = artifacts
    net = checkpoint.load(ck)
    targets = [artifact_target(f) for f in files] + [torch_target(net, 0.25)]
    settings = BenchSettings(batches=(1, 3), threads=(1,), warmup=1, iters=4, cpus=(0,))
    results = bench_targets(targets, settings, progress=False)
    assert len(results) == len(targets) * 2
    for r in results:
        assert r.latency_ms.iters == 4 and r.latency_ms.min > 0
        assert r.throughput == pytest.approx(r.batch * 1e3 / r.latency_ms.mean)
        assert r.file_bytes > 0 and r.params > 0 and r.macs > 0
    by_name = {(r.target, r.batch): r for r in results}
    narrow, full = by_name[(files[0].name, 1)], by_name[(files[1].name, 1)]
    assert narrow.macs < full.macs / 4 and narrow.params < full.params / 4
    assert by_name[(files[2].name, 1)].file_bytes < narrow.file_bytes  # int8 file is smaller
    assert json.dumps([r.to_dict() for r in results])  # JSON-able


def test_a_missing_provider_is_refused_unless_the_fallback_is_allowed(artifacts):
    """onnxruntime alone would warn and quietly time the CPU under the GPU provider's name."""
    import onnxruntime as ort

    _, files = artifacts
    missing = next(
        p
        for p in ("CUDAExecutionProvider", "OpenVINOExecutionProvider", "CoreMLExecutionProvider")
        if p not in ort.get_available_providers()
    )
    with pytest.raises(SfscError, match=f"cannot run {missing} here.*--allow-fallback"):
        artifact_target(files[0], missing)
    target = artifact_target(files[0], missing, allow_fallback=True)
    assert target.extra["execution_provider"] == "CPUExecutionProvider"  # what ran, not what was asked
    settings = BenchSettings(batches=(1,), warmup=0, iters=2, provider=missing, allow_fallback=True)
    (result,) = bench_targets([target], settings, progress=False)
    assert result.extra["execution_provider"] == "CPUExecutionProvider"
