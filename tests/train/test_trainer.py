import copy
import json

import pytest
import torch

from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.errors import SfscError
from sfsc_deploy.losses import asym_s
from sfsc_deploy.models import build, checkpoint
from sfsc_deploy.models.networks import CHECKPOINT
from sfsc_deploy.train import TrainConfig, train
from sfsc_deploy.train.tasks import StepContext, switchable_tasks
from sfsc_deploy.train.trainer import LOG, Trainer, TrainingDiverged
from tests.train.conftest import TINY_OPTIONS

# device cpu: the comparisons below hold tensors built on the CPU (auto would pick a GPU if there is one)
CFG = dict(epochs=2, batch_ids=4, batch_k=2, warmup_epochs=0.5, device="cpu")


def run(data, tmp_path, name="run", *, resume=False, force=False, plots=True, tensorboard=False, **overrides):
    cfg = TrainConfig(**{**CFG, **overrides})
    return train(
        data,
        "resnet18",
        "0.25,0.5",
        cfg,
        tmp_path / name,
        feature_dim=16,
        options=TINY_OPTIONS,
        progress=False,
        resume=resume,
        force=force,
        plots=plots,
        tensorboard=tensorboard,
    )


def test_sum_update_is_the_gradient_of_the_summed_losses(small_data, tmp_path):
    torch.manual_seed(0)
    net = build("resnet18", [0.25, 0.5], 16, small_data.num_classes, **vars(TINY_OPTIONS)).train()
    cfg = TrainConfig(**CFG, method="bct-s", aggregation="sum")
    bank = build_bank(small_data.train, (64, 32), progress=False)
    trainer = Trainer(net, switchable_tasks(cfg, [0.25, 0.5, 1.0]), cfg, bank, tmp_path, progress=False)
    x = torch.randn(8, 3, 64, 32)
    y = torch.arange(8) % 4
    twin = copy.deepcopy(net)
    total = 0
    ctx = StepContext(0, twin.classifier.weight)
    for task in trainer.tasks:
        twin.set_width(task.width)
        total = total + task.loss(twin(x), y, ctx).loss
    total.backward()
    record = trainer._train_step(x, y, 0, torch.Generator().manual_seed(0))
    for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        if any(p is trained for trained in trainer.params):
            expected = q.grad if q.grad is not None else torch.zeros_like(p)
            assert torch.allclose(p.grad, expected, atol=1e-6), name
    assert set(record) >= {
        "loss/1",
        "loss/0.5",
        "loss/0.25",
        "grad_norm/0.25",
        "conflicts",
        "logit_std/0.5",
        "lr",
    }


def test_log_checkpoint_and_networks(small_data, tmp_path):
    result = run(small_data, tmp_path)
    out = result.out_dir
    lines = [json.loads(line) for line in (out / LOG).read_text().splitlines()]
    assert {line["epoch"] for line in lines} == {0, 1}
    assert all(line["conflicts"] >= 0 and line["grad_norm/1"] > 0 for line in lines)
    header = checkpoint.read_header(out / CHECKPOINT)
    assert header["extra"]["training"]["epoch"] == 1
    assert header["extra"]["training"]["config"]["aggregation"] == "project"
    networks = json.loads((out / "networks.json").read_text())
    assert [n["width"] for n in networks["networks"]] == [0.25, 0.5, 1.0]


def test_resume_with_other_options_is_refused(small_data, tmp_path):
    run(small_data, tmp_path, epochs=1)
    with pytest.raises(SfscError, match="other options"):
        run(small_data, tmp_path, lr=1e-3, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["pk", "random"])
def test_interrupted_run_resumes_to_the_same_weights(small_data, tmp_path, monkeypatch, sampler):
    straight = run(small_data, tmp_path, "straight", sampler=sampler)
    original = Trainer._save

    def die_after_first_epoch(self, epoch, val):
        original(self, epoch, val)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", die_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(small_data, tmp_path, "resumed", sampler=sampler)
    monkeypatch.setattr(Trainer, "_save", original)
    resumed = run(small_data, tmp_path, "resumed", resume=True, sampler=sampler)
    a = checkpoint.load(straight.networks[1.0]).state_dict()
    b = checkpoint.load(resumed.networks[1.0]).state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    log = [json.loads(x) for x in (tmp_path / "resumed" / LOG).read_text().splitlines()]
    assert [x["step"] for x in log] == sorted({x["step"] for x in log})  # no duplicated steps


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(small_data, tmp_path, monkeypatch):
    from sfsc_deploy.train import tasks

    real = tasks.original_loss

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        return loss * float("nan") if poisoned.epoch_hits > 2 else loss

    poisoned.epoch_hits = 0
    original_save = Trainer._save

    def counting_save(self, epoch, val):
        original_save(self, epoch, val)
        poisoned.epoch_hits = 3

    monkeypatch.setattr(tasks, "original_loss", poisoned)
    monkeypatch.setattr(Trainer, "_save", counting_save)
    with pytest.raises(TrainingDiverged, match="became nan at epoch 2.*last good checkpoint"):
        run(small_data, tmp_path)
    header = checkpoint.read_header(tmp_path / "run" / CHECKPOINT)
    assert header["extra"]["training"]["epoch"] == 0
    checkpoint.load(tmp_path / "run" / CHECKPOINT)


def test_random_sampler_is_refused_for_the_triplet_loss():
    with pytest.raises(SfscError, match="triplet.*--sampler pk"):
        TrainConfig(sampler="random", loss="softmax+triplet")


def test_asym_s_trains_on_random_batches_through_same_image_pairs():
    """Every label distinct (a shuffled batch): the same image's two features are still a positive."""
    TrainConfig(sampler="random", method="asym-s")
    g = torch.Generator().manual_seed(0)
    reference, labels = torch.randn(6, 32, generator=g), torch.arange(6)
    assert float(asym_s(reference, reference, labels)) == 0.0
    assert float(asym_s(torch.randn(6, 32, generator=g), reference, labels)) > 0.1


def test_existing_run_needs_resume_or_force(small_data, tmp_path):
    run(small_data, tmp_path, epochs=2)
    with pytest.raises(SfscError, match="--resume"):
        run(small_data, tmp_path, epochs=1)
    (tmp_path / "run" / "notes.txt").write_text("keep me")
    run(small_data, tmp_path, epochs=1, force=True)
    log = [json.loads(x) for x in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert {x["epoch"] for x in log} == {0}  # the old run's lines are gone
    assert checkpoint.read_header(tmp_path / "run" / CHECKPOINT)["extra"]["training"]["epochs"] == 1
    assert (tmp_path / "run" / "notes.txt").read_text() == "keep me"  # only run files removed


@pytest.mark.parametrize("method", ["unified", "bct"])
def test_separate_network_baselines(small_data, tmp_path, method):
    result = run(small_data, tmp_path, method=method, epochs=1)
    assert sorted(result.networks) == [0.25, 0.5, 1.0]
    assert len(set(result.networks.values())) == 3
    full = checkpoint.load(result.networks[1.0])
    if method == "bct":  # the frozen reference is the full model, unchanged by the others
        assert checkpoint.family_id(full) == checkpoint.read_header(result.networks[1.0])["family_id"]
    narrow = checkpoint.load(result.networks[0.25])
    assert narrow.widths == [0.25, 1.0]


def test_validation_split_comes_from_training_identities(small_data, tmp_path):
    result = run(small_data, tmp_path, epochs=1, val_ids=3)
    net = checkpoint.load(result.networks[1.0])
    assert net.config.num_classes == small_data.num_classes - 3
    val = checkpoint.read_header(result.networks[1.0])["extra"]["training"]["val"]
    assert "mAP/0.25->1" in val and all(0 <= v <= 100 for v in val.values())


@pytest.mark.parametrize(
    "arch, widths, feature_dim, options, named",
    [
        ("resnet18", "0.25,0.5", 16, {"input_size": (96, 48)}, "options.input_size"),
        ("resnet18", "0.25,0.5", 32, {}, "feature_dim: 16 → 32"),
        ("resnet18", "0.5", 16, {}, "widths"),
        ("mobilenet_v2", "0.25,0.5", 16, {}, "arch: resnet18 → mobilenet_v2"),
    ],
)
def test_resume_with_another_model_is_refused(
    small_data, tmp_path, arch, widths, feature_dim, options, named
):
    """The final checkpoint would otherwise claim a model (e.g. an input size) it was not trained as."""
    from dataclasses import replace

    run(small_data, tmp_path, epochs=1)
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    with pytest.raises(SfscError, match="another model") as info:
        train(
            small_data,
            arch,
            widths,
            TrainConfig(**{**CFG, "epochs": 1}),
            tmp_path / "run",
            feature_dim=feature_dim,
            options=replace(TINY_OPTIONS, **options),
            progress=False,
            resume=True,
        )
    assert named in str(info.value)
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before
