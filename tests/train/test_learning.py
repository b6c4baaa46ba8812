"""What training achieves on the built-in synthetic data: retrieval, and a working uncertainty signal."""

from sfsc_deploy import checkpoint
from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.evaluation_runs import evaluate_run
from sfsc_deploy.models import build
from sfsc_deploy.train import TrainConfig, train
from sfsc_deploy.train.log import read_log
from tests.train.conftest import TINY_OPTIONS


def test_training_beats_an_untrained_model_widely(tmp_path):
    data = load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=60, num_test_ids=30))
    cfg = TrainConfig(epochs=20, lr=1e-3, batch_ids=8, batch_k=4)
    train(data, "resnet18", [], cfg, tmp_path / "run", feature_dim=64, options=TINY_OPTIONS, progress=False)
    trained = evaluate_run(tmp_path / "run", data, progress=False).value(1.0, 1.0)
    untrained_net = build("resnet18", [], 64, data.num_classes, **vars(TINY_OPTIONS))
    checkpoint.save(untrained_net, tmp_path / "untrained.safetensors")
    untrained = evaluate_run(tmp_path / "untrained.safetensors", data, progress=False).value(1.0, 1.0)
    assert trained > 3 * untrained and trained - untrained > 15, (trained, untrained)


def test_the_offset_moves_the_uncertainty_off_half_where_it_stayed_pinned(tmp_path):
    """The paper's loss (KL on α, λ 0.2). Without the offset the head's logits have zero batch mean
    per class, every narrow width's u sits at 0.5 all run; with it u leaves 0.5 and falls as the
    widths learn."""
    data = load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=32, num_test_ids=8))
    paper = dict(method="sfsc", kl="paper", kl_weight=0.2, kl_anneal_epochs=0, sampler="random")
    common = dict(epochs=3, lr=3e-3, batch_ids=8, batch_k=4, warmup_epochs=0.5, **paper)
    u = {}
    for offset in (False, True):
        cfg = TrainConfig(evidence_offset=offset, **common)
        run = tmp_path / f"offset-{offset}"
        train(data, "resnet18", "0.25,0.5", cfg, run, feature_dim=32, options=TINY_OPTIONS, progress=False)
        u[offset] = read_log(run).per_width("uncertainty")
        assert sorted(u[offset]) == [0.25, 0.5]
    for values in u[False].values():
        assert abs(values - 0.5).max() < 0.01
    log = read_log(tmp_path / "offset-True")
    for values in u[True].values():
        assert values.min() > 0.6
        per_epoch = log.epoch_mean(values)
        assert per_epoch[-1] < per_epoch[0]
    offset = log.column("evidence_offset")
    assert offset is not None and offset[-1] != offset[0]
