import numpy as np
import onnx
import pytest
import torch

from exporters.graph import DeployGraph
from exporters.onnx_export import to_onnx
from sfsc_deploy.deploy.export import ExportSettings, default_images, export_tiers
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.models.slicing import slice_model
from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
from tests.conftest import INPUT, tiny


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic_small):
    root = tmp_path_factory.mktemp("extract")
    ck = root / "ck.safetensors"
    checkpoint.save(tiny(), ck)
    images = default_images(synthetic_small, INPUT, calibration=32, parity=8)
    tiers = [Tier("plain", 0.5), Tier("baked", 0.5, normalize=True, bake_preprocess=True)]
    manifest = export_tiers(
        ck, tiers, root / "out", images, settings=ExportSettings(progress=False)
    ).to_dict()
    return ck, {a["tier"]: root / "out" / a["file"] for a in manifest["artifacts"]}, images.parity


def test_every_runtime_gives_the_same_features(exported):
    ck, files, images = exported
    ref = TorchExtractor.from_checkpoint(ck, 0.5).features(images, batch_size=3)
    plain = open_extractor(files["plain"]).features(images, batch_size=5)
    np.testing.assert_allclose(plain, ref, atol=1e-4, rtol=1e-4)
    baked = open_extractor(files["baked"]).features(images)
    np.testing.assert_allclose(baked, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-4)


def test_artifact_describes_itself(exported):
    ck, files, _ = exported
    info = open_extractor(files["baked"]).info
    ref = TorchExtractor.from_checkpoint(ck, 0.5).info
    assert info.runtime == "onnx" and ref.runtime == "pytorch"
    assert info.family_id == ref.family_id and info.width == 0.5 and info.feature_dim == 32
    assert info.input_size == INPUT and info.normalized and info.bake_preprocess


def test_wrong_images_are_refused(exported):
    _, files, images = exported
    extractor = open_extractor(files["plain"])
    with pytest.raises(SfscError, match="input size"):
        extractor.features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(SfscError, match="uint8"):
        extractor.features(images.float())


def test_open_extractor_errors(exported, tmp_path):
    ck, files, _ = exported
    with pytest.raises(SfscError, match="exactly one"):
        open_extractor(files["plain"], checkpoint=ck)
    with pytest.raises(SfscError, match="exactly one"):
        open_extractor()
    with pytest.raises(SfscError, match="width-0.5 model, not 0.25"):
        open_extractor(files["plain"], width=0.25)
    with pytest.raises(SfscError, match="--checkpoint"):
        open_extractor(ck)
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(SfscError, match="unknown model type"):
        open_extractor(tmp_path / "m.tflite")
    with pytest.raises(SfscError, match="not found"):
        open_extractor(tmp_path / "none.onnx")


def test_foreign_onnx_is_refused(tmp_path):
    graph = DeployGraph(slice_model(tiny(), 1.0), (0.5,) * 3, (0.5,) * 3)
    onnx.save(to_onnx(graph, INPUT, {}), str(tmp_path / "foreign.onnx"))
    with pytest.raises(SfscError, match="not exported by sfsc-deploy"):
        open_extractor(tmp_path / "foreign.onnx")
