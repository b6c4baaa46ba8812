import json
from dataclasses import replace

import pytest

from exporters import parity
from exporters.files import OWNED, file_sha256
from sfsc_deploy.deploy.export import MANIFEST, ExportSettings, Manifest, default_images, export_tiers
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from tests.conftest import INPUT, tiny

QUIET = ExportSettings(progress=False)


@pytest.fixture
def ck(tmp_path):
    path = tmp_path / "ck.safetensors"
    checkpoint.save(tiny(), path)
    return path


@pytest.fixture(scope="module")
def images(synthetic_small):
    return default_images(synthetic_small, INPUT, calibration=64, parity=16)


def test_every_tier_is_exported_checked_and_listed(ck, tmp_path, images):
    tiers = [
        Tier("cloud", 1.0, normalize=True),
        Tier("mobile", 0.5, bake_preprocess=True),
        Tier("camera", 0.25, precision="int8", bake_preprocess=True),
    ]
    manifest = export_tiers(ck, tiers, tmp_path / "out", images, settings=QUIET).to_dict()
    on_disk = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert on_disk == manifest
    assert Manifest.load(tmp_path / "out").to_dict() == on_disk  # the typed reader round-trips
    assert manifest["family_id"] == checkpoint.family_id(checkpoint.load(ck))
    assert manifest["checkpoint_sha256"] == file_sha256(ck)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [OWNED, MANIFEST] + [a["file"] for a in manifest["artifacts"]]
    )
    for artifact, tier in zip(manifest["artifacts"], tiers, strict=True):
        path = tmp_path / "out" / artifact["file"]
        assert artifact["sha256"] == file_sha256(path) and artifact["bytes"] == path.stat().st_size
        assert artifact["width"] == tier.width and artifact["parity"]["passed"]
        assert artifact["info"]["normalized"] == tier.normalize
        assert artifact["info"]["bake_preprocess"] == tier.bake_preprocess
        assert artifact["parity"]["images"] == 16
    assert manifest["artifacts"][0]["parity"]["min_cosine"] > 0.99999
    assert manifest["artifacts"][2]["precision"] == "int8"


def test_failed_parity_leaves_nothing(ck, tmp_path, images, monkeypatch):
    impossible = replace(parity.TOLERANCES["fp32"], min_cosine=1.1, min_mean_cosine=1.1, max_abs_rel=0.0)
    monkeypatch.setitem(parity.TOLERANCES, "fp32", impossible)
    with pytest.raises(SfscError, match="failed its fp32 parity check"):
        export_tiers(ck, [Tier("a", 0.5), Tier("b", 1.0)], tmp_path / "out", images, settings=QUIET)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [ck]  # no temporary directory left either


def test_untrained_width_and_existing_output_are_refused(ck, tmp_path, images):
    with pytest.raises(SfscError, match="no BatchNorm"):
        export_tiers(ck, [Tier("x", 0.3)], tmp_path / "out", images, settings=QUIET)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(SfscError, match="exists"):
        export_tiers(ck, [Tier("x", 0.5)], tmp_path / "out", images, settings=QUIET)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"
    # --force never deletes what sfsc-deploy did not write
    with pytest.raises(SfscError, match="not written by sfsc-deploy"):
        export_tiers(ck, [Tier("x", 0.5)], tmp_path / "out", images, settings=QUIET, force=True)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"
    # but replaces its own earlier export
    export_tiers(ck, [Tier("x", 0.5)], tmp_path / "own", images, settings=QUIET)
    export_tiers(ck, [Tier("y", 0.5)], tmp_path / "own", images, settings=QUIET, force=True)
    assert Manifest.load(tmp_path / "own").artifacts[0].tier == "y"


def test_tensorrt_without_tensorrt_is_one_error_and_no_files(ck, tmp_path, images):
    from exporters.tensorrt_engine import tensorrt_unavailable

    if tensorrt_unavailable() is None:
        pytest.skip("TensorRT is available here")
    with pytest.raises(SfscError, match="cannot use --format tensorrt"):
        export_tiers(ck, [Tier("gpu", 1.0, "tensorrt", "fp16")], tmp_path / "out", images, settings=QUIET)
    assert not (tmp_path / "out").exists()


def test_int8_worse_than_its_own_calibration_fit_is_refused(ck, tmp_path, images, monkeypatch):
    """A model whose features fall below what its quantiser measured is not the calibrated model: here
    one weight scale is damaged after calibration, and the table's floors are lifted so that only the
    model's own fit can catch it."""
    from onnx import numpy_helper

    from exporters import quantize

    real = quantize.quantize_int8

    def damaged(*args, **kwargs):
        result = real(*args, **kwargs)
        inits = {i.name: i for i in result.model.graph.initializer}
        dq = [n for n in result.model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        scale = inits[dq[-1].input[1]]
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 3, scale.name))
        return result

    monkeypatch.setattr(quantize, "quantize_int8", damaged)
    loose = replace(parity.TOLERANCES["int8"], min_cosine=0.0, min_mean_cosine=0.0, max_abs_rel=1e9)
    monkeypatch.setitem(parity.TOLERANCES, "int8", loose)
    with pytest.raises(SfscError, match="its quantiser measured on the calibration images"):
        export_tiers(ck, [Tier("c", 0.25, precision="int8")], tmp_path / "out", images, settings=QUIET)
    assert not (tmp_path / "out").exists()
