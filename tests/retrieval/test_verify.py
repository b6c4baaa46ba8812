import numpy as np
import pytest

from exporters.parity import tolerance_for
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.deploy.export import ExportSettings, default_images, export_tiers
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.metrics import evaluate
from sfsc_deploy.models import checkpoint
from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
from sfsc_deploy.retrieval.gallery import Gallery
from sfsc_deploy.retrieval.verify import verify
from tests.conftest import INPUT, tiny

# int8 may cost at most this many mAP points of M(φ_q, φ_g) against the same width in fp32
INT8_MAP_TOLERANCE = 2.0


@pytest.fixture(scope="module")
def setup(tmp_path_factory, trained_checkpoint, synthetic_small):
    root = tmp_path_factory.mktemp("verify")
    images = default_images(synthetic_small, INPUT, calibration=256, parity=32)
    tiers = [Tier("mobile", 0.5), Tier("camera", 0.25, precision="int8", bake_preprocess=True)]
    manifest = export_tiers(
        trained_checkpoint, tiers, root / "out", images, settings=ExportSettings(progress=False)
    ).to_dict()
    files = {a["tier"]: root / "out" / a["file"] for a in manifest["artifacts"]}
    full = TorchExtractor.from_checkpoint(trained_checkpoint, 1.0)
    bank = build_bank(synthetic_small.gallery, INPUT, progress=False)
    gallery = Gallery(
        full.features(bank.images),
        bank.pids.numpy(),
        bank.camids.numpy(),
        np.array(bank.paths),
        full.info.to_dict(),
    )
    queries = build_bank(synthetic_small.query, INPUT, progress=False)
    return files, gallery, queries, trained_checkpoint


def test_fp32_artifact_passes(setup):
    files, gallery, queries, ck = setup
    artifact = open_extractor(files["mobile"])
    report = verify(artifact, gallery, queries, TorchExtractor.from_checkpoint(ck, 0.5))
    assert report.passed, report.checks
    assert report.top1_agreement == 1.0
    assert abs(report.artifact_metrics.mAP - report.reference_metrics.mAP) < 0.01


def test_int8_camera_tier_keeps_cross_width_retrieval(setup):
    """M(φ_0.25 int8, φ_1.0) stays within INT8_MAP_TOLERANCE of M(φ_0.25 fp32, φ_1.0)."""
    files, gallery, queries, ck = setup
    int8 = open_extractor(files["camera"])
    report = verify(
        int8,
        gallery,
        queries,
        TorchExtractor.from_checkpoint(ck, 0.25),
        tolerance_for("int8", max_map_drop=INT8_MAP_TOLERANCE, max_rank1_drop=5.0, min_top1_agreement=0.8),
    )
    fp32_map, int8_map = report.reference_metrics.mAP, report.artifact_metrics.mAP
    assert report.passed, report.checks
    assert abs(fp32_map - int8_map) <= INT8_MAP_TOLERANCE
    random_map = evaluate(
        np.random.default_rng(0).normal(size=(len(queries), 32)),
        gallery.features,
        queries.pids,
        gallery.pids,
        queries.camids,
        gallery.camids,
    ).mAP
    assert int8_map > random_map + 3  # the model really retrieves, so the comparison means something


def test_broken_artifact_fails(setup):
    files, gallery, queries, ck = setup

    class Scrambled:
        """An engine that lost its weights: right metadata, wrong features."""

        def __init__(self, inner):
            self.info, self.inner = inner.info, inner

        def features(self, images, **kw):
            f = self.inner.features(images, **kw)
            return np.random.default_rng(0).permutation(f, axis=1)

    report = verify(
        Scrambled(open_extractor(files["mobile"])), gallery, queries, TorchExtractor.from_checkpoint(ck, 0.5)
    )
    assert not report.passed
    failed = {c.name for c in report.checks if not c.passed}
    assert "query feature cosine (min)" in failed and "top-1 agreement" in failed


def test_other_family_or_dim_is_refused(setup, tmp_path):
    files, gallery, queries, _ = setup
    artifact = open_extractor(files["mobile"])
    other = Gallery(
        gallery.features, gallery.pids, gallery.camids, gallery.paths, {**gallery.meta, "family_id": "0" * 16}
    )
    with pytest.raises(SfscError, match="model family"):
        verify(artifact, other, queries)
    narrow = Gallery(gallery.features[:, :16], gallery.pids, gallery.camids, gallery.paths, gallery.meta)
    with pytest.raises(SfscError, match="16-d"):
        verify(artifact, narrow, queries)
    stranger = tmp_path / "stranger.safetensors"
    checkpoint.save(tiny(widths=[0.5, 1.0]), stranger)
    with pytest.raises(SfscError, match="another model family"):
        verify(artifact, gallery, queries, TorchExtractor.from_checkpoint(stranger, 0.5))


def test_without_reference_only_absolute_figures(setup):
    files, gallery, queries, _ = setup
    report = verify(open_extractor(files["mobile"]), gallery, queries)
    assert report.passed and report.reference_metrics is None and report.note
