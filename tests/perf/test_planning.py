import pytest

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.matrix import CompatibilityMatrix
from sfsc_deploy.evaluation.scores import RetrievalMetrics
from sfsc_deploy.models import checkpoint
from sfsc_deploy.perf.device_table import DeviceTable, load_table, plan_width
from sfsc_deploy.perf.profile import profile_device
from sfsc_deploy.perf.results import BenchResult, BenchSettings, Latency
from tests.conftest import tiny


def entry(width, batch, threads, p99):
    lat = dict(
        mean=p99 / 2,
        std=0.1,
        min=p99 / 3,
        median=p99 / 2,
        p90=p99 * 0.8,
        p95=p99 * 0.9,
        p99=p99,
        max=p99 * 1.2,
        iters=10,
    )
    return BenchResult(
        f"w{width:g}", "onnxruntime", width, batch, threads, Latency(**lat), 1.0, 0, 0, None, None, None
    )


TABLE = DeviceTable(
    device={},
    checkpoint="ck.safetensors",
    checkpoint_sha256="",
    family_id="",
    settings=BenchSettings(),
    entries=[
        entry(0.25, 1, 1, 2.0),
        entry(0.5, 1, 1, 4.5),
        entry(1.0, 1, 1, 12.0),
        entry(0.25, 8, 1, 9.0),
        entry(0.5, 8, 1, 20.0),
        entry(1.0, 8, 1, 60.0),
        entry(1.0, 1, 4, 4.0),
    ],
)


def test_widest_width_within_budget():
    assert plan_width(TABLE, 5.0).width == 0.5
    assert plan_width(TABLE, 100.0).width == 1.0
    assert plan_width(TABLE, 2.5).width == 0.25
    assert plan_width(TABLE, 10.0, batch=8).width == 0.25
    assert plan_width(TABLE, 5.0, threads=4).width == 1.0
    assert plan_width(TABLE, 3.0, percentile=50).width == 0.5  # median of 0.5 is 2.25 ms


def test_nothing_fits_says_so():
    plan = plan_width(TABLE, 1.0)
    assert plan.width is None and "no trained width meets 1 ms" in plan.message()
    assert "0.25" in plan.message()


def test_expected_accuracy_from_eval():
    widths = [0.25, 0.5, 1.0]
    matrix = CompatibilityMatrix(
        widths, {(q, 1.0): RetrievalMetrics(mAP=30.0 + 20 * q, cmc={1: 50.0}) for q in widths}
    )
    plan = plan_width(TABLE, 5.0, matrix=matrix)
    assert plan.width == 0.5 and plan.expected_map == pytest.approx(40.0)
    assert "expected M(φ_0.5, φ_1.0) = 40.0 mAP" in plan.message()


def test_bad_requests():
    with pytest.raises(SfscError, match="batch-32"):
        plan_width(TABLE, 5.0, batch=32)
    with pytest.raises(SfscError, match="2-thread"):
        plan_width(TABLE, 5.0, threads=2)
    with pytest.raises(SfscError, match="positive"):
        plan_width(TABLE, 0)


def test_profile_writes_a_table_plan_can_use(tmp_path):
    ck = tmp_path / "ck.safetensors"
    checkpoint.save(tiny(widths=[0.25, 0.5, 1.0]), ck)
    settings = BenchSettings(batches=(1, 2), threads=(1,), warmup=1, iters=3)
    table = profile_device(ck, tmp_path / "dev.json", settings, export_dir=tmp_path / "exp", progress=False)
    assert load_table(tmp_path / "dev.json").to_dict() == table.to_dict()
    assert {(e.width, e.batch) for e in table.entries} == {(w, b) for w in (0.25, 0.5, 1.0) for b in (1, 2)}
    assert table.device["cores"] >= 1 and "onnxruntime" in table.device
    stamp = (tmp_path / "exp" / "manifest.json").stat().st_mtime_ns
    profile_device(ck, tmp_path / "dev2.json", settings, export_dir=tmp_path / "exp", progress=False)
    assert (tmp_path / "exp" / "manifest.json").stat().st_mtime_ns == stamp  # exports reused
    assert plan_width(table, 1e6).width == 1.0


def test_bad_table_files(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        load_table(tmp_path / "none.json")
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(SfscError, match="not a device table"):
        load_table(tmp_path / "x.json")
