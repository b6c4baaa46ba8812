"""openvino tiers through export_tiers: the IR pair, its parity, the manifest, the ownership list."""

import json
import re
import sys

import numpy as np
import pytest

from exporters.files import OWNED, file_sha256
from exporters.openvino_runtime import openvino_unavailable, to_openvino, weights_path
from exporters.parity import compare
from sfsc_deploy.deploy import export as export_module
from sfsc_deploy.deploy.export import MANIFEST, ExportSettings, Manifest, default_images, export_tiers
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.retrieval.extractors import open_extractor
from tests.conftest import INPUT, tiny

REASON = openvino_unavailable()
needs_openvino = pytest.mark.skipif(REASON is not None, reason=f"{REASON}")
QUIET = ExportSettings(progress=False)


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "ck.safetensors"
    checkpoint.save(tiny(), path)
    return path


@pytest.fixture(scope="module")
def images(synthetic_small):
    return default_images(synthetic_small, INPUT, calibration=64, parity=16)


@pytest.fixture(scope="module")
def exported(ck, images, tmp_path_factory):
    if REASON is not None:
        pytest.skip(REASON)
    out = tmp_path_factory.mktemp("export") / "out"
    tiers = [
        Tier("edge", 0.5, "openvino", normalize=True),
        Tier("camera", 0.25, "openvino", "int8", bake_preprocess=True),
        Tier("camera-onnx", 0.25, "onnx", "int8", bake_preprocess=True),
    ]
    return out, tiers, export_tiers(ck, tiers, out, images, settings=QUIET)


@needs_openvino
def test_openvino_tiers_are_exported_checked_and_listed(exported):
    out, tiers, manifest = exported
    assert Manifest.load(out).to_dict() == manifest.to_dict() == json.loads((out / MANIFEST).read_text())
    edge, camera, camera_onnx = manifest.artifacts
    assert (edge.file, camera.file) == ("edge_w0.5_fp32.xml", "camera_w0.25_int8.xml")
    assert camera_onnx.file == "camera-onnx_w0.25_int8.onnx" and camera_onnx.companions == []
    for artifact, tier in zip(manifest.artifacts, tiers, strict=True):
        path = out / artifact.file
        assert artifact.format == tier.format and artifact.precision == tier.precision
        assert artifact.sha256 == file_sha256(path) and artifact.bytes == path.stat().st_size
        assert artifact.parity.passed and artifact.parity.precision == tier.precision
        assert artifact.parity.images == 16
        assert (
            artifact.info.normalized == tier.normalize
            and artifact.info.bake_preprocess == tier.bake_preprocess
        )
    assert edge.parity.min_cosine > 0.99999 and edge.parity.max_abs_rel <= 1e-4
    # the IR's weights are recorded beside it, with their hash
    for artifact in (edge, camera):
        (weights,) = artifact.companions
        assert weights.file == weights_path(artifact.file).name
        assert (
            weights.sha256 == file_sha256(out / weights.file)
            and weights.bytes == (out / weights.file).stat().st_size
        )
    # every file of the folder is an artifact or a companion (or the manifest), and the ownership
    # list that --force relies on names them all
    on_disk = sorted(p.name for p in out.iterdir())
    assert on_disk == sorted([OWNED, MANIFEST] + [p.name for p in manifest.all_files(out)])
    assert set(json.loads((out / OWNED).read_text())["entries"]) == set(on_disk) - {OWNED}
    assert [p.name for p in manifest.files(out)] == [a.file for a in manifest.artifacts]


@needs_openvino
def test_the_openvino_tier_converts_the_onnx_the_onnx_tier_ships(exported, images, tmp_path):
    out, _, manifest = exported
    _, camera, camera_onnx = manifest.artifacts
    # the same int8 ONNX model: converting the onnx tier's file gives the very same IR weights
    to_openvino(out / camera_onnx.file, tmp_path / "again.xml")
    assert (tmp_path / "again.bin").read_bytes() == (out / weights_path(camera.file).name).read_bytes()
    ov = open_extractor(out / camera.file)
    assert ov.info.runtime == "openvino" and ov.info.precision == "int8" and ov.info.bake_preprocess
    assert ov.runner.providers == ["CPU"]
    got, ort = ov.features(images.parity), open_extractor(out / camera_onnx.file).features(images.parity)
    same = compare(ort, got, "int8")
    assert same.passed and same.min_cosine > 0.995, same.summary()
    assert not np.array_equal(got, ort)  # two runtimes really ran


@needs_openvino
def test_force_replaces_an_openvino_export(exported, ck, images, tmp_path):
    out = tmp_path / "own"
    export_tiers(ck, [Tier("a", 0.5, "openvino")], out, images, settings=QUIET)
    assert sorted(p.name for p in out.iterdir()) == [OWNED, "a_w0.5_fp32.bin", "a_w0.5_fp32.xml", MANIFEST]
    with pytest.raises(SfscError, match="already exists"):
        export_tiers(ck, [Tier("b", 0.5, "openvino")], out, images, settings=QUIET)
    export_tiers(ck, [Tier("b", 0.5, "openvino")], out, images, settings=QUIET, force=True)
    assert sorted(p.name for p in out.iterdir()) == [OWNED, "b_w0.5_fp32.bin", "b_w0.5_fp32.xml", MANIFEST]


@needs_openvino
def test_a_failed_openvino_parity_leaves_nothing(ck, images, tmp_path, monkeypatch):
    from dataclasses import replace

    from exporters import parity

    impossible = replace(parity.TOLERANCES["fp32"], min_cosine=1.1, min_mean_cosine=1.1, max_abs_rel=0.0)
    monkeypatch.setitem(parity.TOLERANCES, "fp32", impossible)
    with pytest.raises(SfscError, match="'a' failed its fp32 parity check"):
        export_tiers(ck, [Tier("a", 0.5, "openvino")], tmp_path / "out", images, settings=QUIET)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_openvino_missing_fails_before_any_tier_is_built(ck, images, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed

    def built(*args, **kwargs):
        raise AssertionError("a tier was built before the missing runtime was reported")

    monkeypatch.setattr(export_module, "_export_one", built)
    tiers = [Tier("cpu", 0.5), Tier("intel", 0.5, "openvino")]
    missing = re.escape('OpenVINO is not installed; pip install "sfsc-deploy[openvino]"')
    with pytest.raises(SfscError, match=f"cannot use format openvino: {missing}"):
        export_tiers(ck, tiers, tmp_path / "out", images, settings=QUIET)
    assert not (tmp_path / "out").exists()


@needs_openvino
def test_manifest_companions_are_plain_file_names_and_optional(exported, tmp_path):
    out, _, manifest = exported
    data = json.loads((out / MANIFEST).read_text())
    older = json.loads(json.dumps(data))
    for artifact in older["artifacts"]:
        del artifact["companions"]  # a manifest written before companions were recorded
    (tmp_path / MANIFEST).write_text(json.dumps(older))
    assert all(a.companions == [] for a in Manifest.load(tmp_path).artifacts)
    for name in ("../secret.bin", "/etc/passwd", "", ".."):
        data["artifacts"][0]["companions"][0]["file"] = name
        (tmp_path / MANIFEST).write_text(json.dumps(data))
        with pytest.raises(SfscError, match="is damaged.*not a file name in the export folder"):
            Manifest.load(tmp_path)


@needs_openvino
def test_the_intel_example_tiers_export_a_trained_model(trained_checkpoint, synthetic_small, tmp_path):
    """examples/tiers_intel.toml on a trained model: the int8 IR keeps int8 parity with PyTorch on any
    x86 CPU (7-bit weights: full-range ones measured min cos 0.90 on this AVX2 machine's OpenVINO)."""
    from pathlib import Path

    from sfsc_deploy.deploy.tiers import load_tiers

    tiers = load_tiers(Path(__file__).resolve().parents[2] / "examples" / "tiers_intel.toml")
    images = default_images(synthetic_small, INPUT, calibration=128, parity=64)
    manifest = export_tiers(trained_checkpoint, tiers, tmp_path / "out", images, settings=QUIET)
    assert [(a.format, a.precision) for a in manifest.artifacts] == [
        ("openvino", "fp32"),
        ("openvino", "int8"),
    ]
    int8 = manifest.artifacts[1].parity
    assert int8.passed and int8.min_cosine >= 0.98, int8
