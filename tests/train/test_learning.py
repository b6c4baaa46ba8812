"""On the built-in synthetic data a trained model beats an untrained one by a wide margin."""

from sfsc_deploy import checkpoint
from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.evaluation_runs import evaluate_run
from sfsc_deploy.models import build
from sfsc_deploy.train import TrainConfig, train
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
