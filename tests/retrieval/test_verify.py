import importlib.util

import numpy as np
import pytest

from exporters.onnx_export import read_metadata
from exporters.parity import tolerance_for
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.deploy.export import ExportSettings, default_images, export_tiers
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.metrics import evaluate
from sfsc_deploy.models import checkpoint
from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor
from sfsc_deploy.retrieval.gallery import Gallery
from sfsc_deploy.retrieval.search import SearchSettings
from sfsc_deploy.retrieval.shards import ShardedGallery, extract_shards, open_gallery
from sfsc_deploy.retrieval.verify import VerifySettings, verify
from tests.conftest import INPUT, tiny

# int8 may cost at most this many mAP points of M(φ_q, φ_g) against the same width in fp32
INT8_MAP_TOLERANCE = 2.0
needs_faiss = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None,
    reason='faiss is not installed (pip install "sfsc-deploy[faiss]")',
)


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
        tolerance_for("int8", max_map_drop=INT8_MAP_TOLERANCE, max_rank1_drop=5.0),
    )
    fp32_map, int8_map = report.reference_metrics.mAP, report.artifact_metrics.mAP
    assert report.passed, [c for c in report.checks if not c.passed]
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
    assert "only declared" in report.note
    neighbours = next(c for c in report.checks if c.name == "query→gallery neighbours above chance")
    print(f"own model: neighbours above chance {neighbours.value}")
    assert neighbours.passed and float(neighbours.value) > 0.8


def _with_metadata(model_path, metadata, out) -> None:
    """``model_path``'s graph saved to ``out`` carrying ``metadata`` (which replaces its own)."""
    import onnx

    from exporters.onnx_export import set_metadata

    model = onnx.load(str(model_path))
    set_metadata(model, metadata)
    onnx.save(model, str(out))


def test_a_foreign_model_with_copied_metadata_fails_without_a_reference(setup, tmp_path, synthetic_small):
    """Same architecture and shapes, other weights, the real export's metadata pasted in: the family
    check is fooled (it trusts the metadata), the feature statistics against the gallery are not."""
    files, gallery, queries, ck = setup
    foreign_ck = tmp_path / "foreign.safetensors"
    checkpoint.create(checkpoint.read_config(ck), foreign_ck, seed=7)
    images = default_images(synthetic_small, INPUT, calibration=8, parity=4)
    manifest = export_tiers(
        foreign_ck, [Tier("mobile", 0.5)], tmp_path / "out", images, settings=ExportSettings(progress=False)
    )
    forged = tmp_path / "out" / manifest.artifacts[0].file
    _with_metadata(forged, read_metadata(files["mobile"]), forged)
    report = verify(open_extractor(forged), gallery, queries)
    assert not report.passed
    failed = [c for c in report.checks if not c.passed]
    assert [c.name for c in failed] == ["query→gallery neighbours above chance"], report.checks
    print(f"foreign model: neighbours above chance {failed[0].value}")
    assert float(failed[0].value) < 0.35
    # with the reference the lie is caught outright: the features are not the reference's
    proved = verify(open_extractor(forged), gallery, queries, TorchExtractor.from_checkpoint(ck, 0.5))
    assert not next(c for c in proved.checks if c.name == "query feature cosine (min)").passed


def test_a_graph_that_contradicts_its_metadata_is_refused(setup, tmp_path):
    files, *_ = setup
    for key, value in [("feature_dim", "16"), ("bake_preprocess", "true"), ("input_size", "128x64")]:
        path = tmp_path / f"{key}.onnx"
        _with_metadata(files["mobile"], {**read_metadata(files["mobile"]), key: value}, path)
        with pytest.raises(SfscError, match="metadata does not describe this model"):
            open_extractor(path)


def test_a_graph_without_one_image_input_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from exporters.ort_runtime import OrtModel

    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4])
    value = helper.make_tensor("c", TensorProto.FLOAT, [1, 4], [0, 1, 2, 3])
    const = helper.make_node("Constant", [], ["features"], value=value)
    no_input = helper.make_model(helper.make_graph([const], "g", [], [out]))
    onnx.save(no_input, str(tmp_path / "none.onnx"))
    with pytest.raises(SfscError, match="takes 0 input"):
        OrtModel(tmp_path / "none.onnx")


class _Misfed:
    """A deployment bug outside the weights: the right model fed images prepared the wrong way."""

    def __init__(self, inner, transform):
        self.info, self.inner, self.transform = inner.info, inner, transform

    def features(self, images, **kw):
        return self.inner.features(self.transform(images), **kw)


def _wrong_width_bn(ck):
    """Width 0.5 running with width 1.0's BatchNorm (statistics and affine), cut to its channels."""
    from sfsc_deploy.switchable.channels import width_key
    from sfsc_deploy.switchable.layers import SwitchableBatchNorm

    net = checkpoint.load(ck)
    for m in net.modules():
        if isinstance(m, SwitchableBatchNorm):
            mine, full = m.bn[width_key(0.5)], m.bn[width_key(1.0)]
            n = mine.num_features
            for name in ("running_mean", "running_var", "weight", "bias"):
                getattr(mine, name).data.copy_(getattr(full, name).data[:n])
    return TorchExtractor(net, 0.5)


def _damaged_int8_scale(path, out):
    """The int8 model with one convolution's weight scale 4x too large (a broken calibration)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    dq = [
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and len(inits[n.input[0]].dims) == 4
    ]
    scale = inits[dq[len(dq) // 2].input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 4, scale.name))
    onnx.save(model, str(out))
    return open_extractor(out)


@pytest.mark.parametrize("bug", ["bgr", "normalisation", "wrong-width-bn", "int8-scale"])
def test_a_broken_artifact_fails_verification(setup, tmp_path, bug):
    """Each bug a real deployment has shipped: the verdict must be FAIL, not pass or no verdict."""
    from dataclasses import replace

    files, gallery, queries, ck = setup
    width, precision = (0.25, "int8") if bug == "int8-scale" else (0.5, "fp32")
    if bug == "bgr":
        artifact = _Misfed(open_extractor(files["mobile"]), lambda images: images.flip(1))
    elif bug == "normalisation":
        artifact = open_extractor(files["mobile"])
        artifact.info = replace(artifact.info, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    elif bug == "wrong-width-bn":
        artifact = _wrong_width_bn(ck)
    else:
        artifact = _damaged_int8_scale(files["camera"], tmp_path / "damaged.onnx")
    reference = TorchExtractor.from_checkpoint(ck, width)
    report = verify(artifact, gallery, queries, reference, tolerance_for(precision))
    assert report.verdict == "fail", report.checks
    failed = {c.name for c in report.checks if not c.passed}
    assert "query feature cosine (min)" in failed, report.checks
    if bug == "int8-scale":  # worse than its own quantiser measured: not the model that was calibrated
        assert "query cosine vs calibration fit" in failed, report.checks


def test_too_few_queries_give_no_verdict_not_a_pass(setup):
    files, gallery, queries, ck = setup
    report = verify(
        open_extractor(files["mobile"]),
        gallery,
        queries,
        TorchExtractor.from_checkpoint(ck, 0.5),
        min_queries=1000,
    )
    assert report.verdict == "no verdict" and not report.passed
    assert all(c.passed for c in report.checks)  # nothing failed: the data cannot tell
    assert "too few queries" in report.summary()


# ---------------------------------------------------------------- any gallery size: top-k lists
def _assert_same_figures(got, want):
    assert got.num_queries == want.num_queries
    assert got.mAP == pytest.approx(want.mAP, abs=1e-6)
    assert got.cmc == pytest.approx(want.cmc, abs=1e-6)
    assert got.mINP == pytest.approx(want.mINP, abs=1e-6)


class _NoDense(ShardedGallery):
    """A gallery folder that refuses to be read whole: only ``blocks`` may read its features."""

    @property
    def features(self):
        raise AssertionError("verify read the whole gallery (Gallery.features)")


def test_settings_pick_the_ranking_and_refuse_impossible_ones():
    small, large = VerifySettings(), VerifySettings(full_ranking_max_bytes=10**6)
    assert small.resolve(3368, 19732, 2048) == "full"  # Market-1501: the benchmark protocol, as before
    assert large.resolve(1000, 10**6, 512) == "topk"
    assert VerifySettings(search=SearchSettings(index="ivf")).resolve(10, 10, 4) == "topk"
    assert VerifySettings(ranking="topk").resolve(10, 10, 4) == "topk"
    with pytest.raises(SfscError, match="--ranking"):
        VerifySettings(ranking="partial").check()
    with pytest.raises(SfscError, match="--ranking full"):
        VerifySettings(ranking="full", search=SearchSettings(index="flat")).check()


def test_topk_covering_the_gallery_gives_the_full_rankings_verdict_and_figures(setup):
    files, gallery, queries, ck = setup
    artifact = open_extractor(files["mobile"])
    reference = TorchExtractor.from_checkpoint(ck, 0.5)
    auto = verify(artifact, gallery, queries, reference)  # a small gallery: the full ranking
    every = SearchSettings(k=len(gallery), query_block=7, gallery_block=13)
    topk = verify(
        artifact, gallery, queries, reference, settings=VerifySettings(ranking="topk", search=every)
    )
    assert auto.ranking == "full" and auto.artifact_metrics.ranking == "full"
    assert topk.ranking == f"top-k (k={len(gallery)})" == topk.artifact_metrics.ranking
    assert "ranking: full" in auto.summary() and f"ranking: top-k (k={len(gallery)})" in topk.summary()
    assert topk.to_dict()["ranking"] == topk.ranking and auto.to_dict()["ranking"] == "full"
    assert topk.verdict == auto.verdict == "pass"
    _assert_same_figures(topk.artifact_metrics, auto.artifact_metrics)
    _assert_same_figures(topk.reference_metrics, auto.reference_metrics)
    assert topk.top1_agreement == auto.top1_agreement
    assert [(c.name, c.passed) for c in topk.checks] == [(c.name, c.passed) for c in auto.checks]
    for a, b in zip(topk.paired, auto.paired, strict=True):
        assert a.verdict == b.verdict and a.queries == b.queries
        assert (a.drop, a.low, a.high) == pytest.approx((b.drop, b.low, b.high), abs=1e-9)
    # the same top-k path with a broken artifact fails as the full ranking does
    scrambled = _Misfed(artifact, lambda images: images.flip(1))
    bad_full = verify(scrambled, gallery, queries, reference, settings=VerifySettings(ranking="full"))
    bad_topk = verify(
        scrambled, gallery, queries, reference, settings=VerifySettings(ranking="topk", search=every)
    )
    assert bad_full.verdict == bad_topk.verdict == "fail"
    _assert_same_figures(bad_topk.artifact_metrics, bad_full.artifact_metrics)
    assert {c.name for c in bad_topk.checks if not c.passed} == {
        c.name for c in bad_full.checks if not c.passed
    }


@pytest.fixture(scope="module")
def sharded(setup, tmp_path_factory, synthetic_small):
    """The setup's gallery as a folder of 7-row shards, opened so that reading it whole fails."""
    *_, ck = setup
    folder = tmp_path_factory.mktemp("sharded") / "gallery"
    extractor = TorchExtractor.from_checkpoint(ck, 1.0)
    written = extract_shards(extractor, synthetic_small, "gallery", folder, shard_size=7, batch_size=7)
    assert written.shards > 2
    gallery = open_gallery(folder)
    whole = Gallery(gallery.features, gallery.pids, gallery.camids, gallery.paths, dict(gallery.meta))
    gallery.__class__ = _NoDense
    with pytest.raises(AssertionError, match="whole gallery"):
        gallery.features  # noqa: B018
    return gallery, whole


def test_topk_on_a_sharded_gallery_never_reads_it_whole(setup, sharded):
    files, _, queries, ck = setup
    gallery, whole = sharded
    artifact = open_extractor(files["mobile"])
    reference = TorchExtractor.from_checkpoint(ck, 0.5)
    small_k = VerifySettings(ranking="topk", search=SearchSettings(k=10, gallery_block=5, query_block=16))
    report = verify(artifact, gallery, queries, reference, settings=small_k)
    assert report.ranking == "top-k (k=10)" and report.artifact_metrics.ranking == "top-k (k=10)"
    assert "ranking: top-k (k=10)" in report.summary()
    assert report.search["method"] == "exact" and report.search["recall"] is None
    assert report.passed, report.checks  # the fp32 artifact keeps the reference's lists
    # AP@10 bounds the full ranking's from below (the full ranking read from the in-memory copy)
    full = verify(artifact, whole, queries, reference, settings=VerifySettings(ranking="full"))
    assert report.artifact_metrics.mAP <= full.artifact_metrics.mAP + 1e-6
    assert report.artifact_metrics.rank1 == pytest.approx(
        full.artifact_metrics.rank1
    )  # rank 1 is in any list
    assert report.top1_agreement == full.top1_agreement == 1.0
    # auto picks top-k when the full ranking would not fit, and says so
    tight = VerifySettings(full_ranking_max_bytes=0, search=SearchSettings(k=10))
    assert verify(artifact, gallery, queries, reference, settings=tight).ranking == "top-k (k=10)"


def test_without_reference_the_neighbour_check_reads_blocks(setup, sharded):
    files, _, queries, _ = setup
    gallery, whole = sharded
    artifact = open_extractor(files["mobile"])
    blocked = SearchSettings(gallery_block=5, query_block=16)
    report = verify(artifact, gallery, queries, settings=VerifySettings(ranking="topk", search=blocked))
    neighbours = next(c for c in report.checks if c.name == "query→gallery neighbours above chance")
    assert neighbours.passed and float(neighbours.value) > 0.8, report.checks
    # the same figure as a dense gallery gives (exact search: block sizes change nothing)
    dense = verify(artifact, whole, queries, settings=VerifySettings(ranking="full"))
    assert neighbours.value == next(c for c in dense.checks if c.name == neighbours.name).value


@needs_faiss
@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_an_approximate_index_reports_its_recall_every_time(setup, sharded, index):
    files, _, queries, ck = setup
    gallery, _ = sharded
    artifact = open_extractor(files["mobile"])
    reference = TorchExtractor.from_checkpoint(ck, 0.5)
    # IVF visiting every cell finds what exact search finds: recall 1 here too
    search = SearchSettings(index=index, k=10, nlist=4, nprobe=4, gallery_block=5)
    report = verify(artifact, gallery, queries, reference, settings=VerifySettings(search=search))
    assert report.ranking == "top-k (k=10)"  # auto: an index means top-k lists
    row = next(c for c in report.checks if c.name == f"faiss-{index} recall@10 vs exact search")
    assert report.search["method"] == f"faiss-{index}" and report.search["recall"] == 1.0
    assert row.passed and row.value.startswith("1.0000") and row.limit == "≥ 0.95"
    assert f"faiss-{index} index, recall@10 1.0000" in report.summary()
    assert report.passed, report.checks
    # the floor is a check: an impossible one fails the verdict
    strict = verify(
        artifact, gallery, queries, reference, settings=VerifySettings(search=search, min_recall=1.0)
    )
    assert next(c for c in strict.checks if "recall@" in c.name).passed  # 1.0 ≥ 1.0
