import pytest
import torch
import torch.nn.functional as F

from sfsc_deploy.losses import evidential
from sfsc_deploy.losses.ori import CIRCLE_SCALE
from sfsc_deploy.models import NetOutput
from sfsc_deploy.train import TrainConfig
from sfsc_deploy.train.tasks import StepContext, kl_weight_at, switchable_tasks

G = torch.Generator().manual_seed(0)
FEATURES = torch.randn(6, 16, generator=G)
WEIGHT = torch.randn(10, 16, generator=G)
LABELS = torch.tensor([0, 1, 2, 3, 4, 5])


def narrow_task(**cfg):
    return switchable_tasks(TrainConfig(**cfg), [0.5, 1.0])[1]


def output():
    return NetOutput(FEATURES, FEATURES, F.linear(FEATURES, WEIGHT))


def test_with_circle_the_compatible_losses_read_the_classifier_as_scaled_cosines():
    cosine = CIRCLE_SCALE * F.linear(F.normalize(FEATURES), F.normalize(WEIGHT))
    offset = torch.tensor(-2.0)
    ctx = StepContext(0, WEIGHT, offset)
    sensoy = dict(kl="sensoy", kl_weight=0.01, kl_anneal_epochs=0)
    sfsc = narrow_task(method="sfsc", loss="circle", **sensoy).loss(output(), LABELS, ctx)
    expected = evidential(cosine + offset, LABELS, 0.01, 10.0, "sensoy")
    assert torch.allclose(sfsc.loss, expected.loss)
    assert sfsc.metrics["uncertainty"] == pytest.approx(float(expected.uncertainty))
    bct = narrow_task(method="bct-s", loss="circle").loss(output(), LABELS, ctx)
    assert torch.allclose(bct.loss, F.cross_entropy(cosine, LABELS))
    # with softmax the same losses read dot products
    dot = narrow_task(method="bct-s").loss(output(), LABELS, ctx)
    assert torch.allclose(dot.loss, F.cross_entropy(F.linear(FEATURES, WEIGHT), LABELS))


def test_the_evidential_loss_reads_the_offset_and_reports_its_own_uncertainty():
    task = narrow_task(method="sfsc", kl="paper", kl_weight=0.2, kl_anneal_epochs=0)
    logits = F.linear(FEATURES, WEIGHT)
    shifted = task.loss(output(), LABELS, StepContext(0, WEIGHT, torch.tensor(-3.0)))
    plain = task.loss(output(), LABELS, StepContext(0, WEIGHT, None))
    assert torch.allclose(shifted.loss, evidential(logits - 3.0, LABELS, 0.2, 10.0, "paper").loss)
    assert torch.allclose(plain.loss, evidential(logits, LABELS, 0.2, 10.0, "paper").loss)
    # lower evidence everywhere: u = C / S rises towards 1
    assert shifted.metrics["uncertainty"] > plain.metrics["uncertainty"]
    assert set(shifted.metrics) == {"uncertainty", "evidence_loss", "kl"}


@pytest.mark.parametrize("kl", ["paper", "sensoy"])
def test_kl_annealing_applies_alike_to_both_variants(kl):
    cfg = TrainConfig(kl=kl, kl_weight=0.2, kl_anneal_epochs=4)
    assert [kl_weight_at(cfg, e) for e in range(6)] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert kl_weight_at(TrainConfig(kl=kl, kl_weight=0.2, kl_anneal_epochs=0), 0) == 0.2


@pytest.mark.parametrize("kl", ["paper", "sensoy"])
def test_zero_mean_logits_make_the_kl_shrink_them_and_the_offset_frees_them(kl):
    """The head's arithmetic. Logits with zero batch mean per class (a BN neck and a bias-free
    classifier in train mode) keep every class's batch-mean evidence ≥ 1 (Jensen), so the KL can
    only be lowered by shrinking the whole logit spread: the best scale of a confident, correct
    batch is below 1 (paper KL: u stays at 0.5). With an offset the loss is far lower at a larger
    spread."""
    num_classes, batch = 200, 64
    labels = torch.arange(batch) % num_classes
    logits = torch.randn(batch, num_classes, generator=torch.Generator().manual_seed(0)) * 0.5
    logits[torch.arange(batch), labels] += 9.0
    logits = logits - logits.mean(dim=0)
    assert (logits.exp().mean(dim=0) >= 1).all()

    def loss(scale, offset=0.0):
        return evidential(scale * logits + offset, labels, 0.2, 10.0, kl)

    scales = [i / 20 for i in range(41)]
    pinned_loss, pinned_scale = min((float(loss(s).loss), s) for s in scales)
    freed_loss, freed_scale, _ = min((float(loss(s, -b / 2).loss), s, b) for s in scales for b in range(25))
    assert pinned_scale < 1.0 and pinned_scale < freed_scale
    assert freed_loss < pinned_loss / 2
    if kl == "paper":
        assert float(loss(pinned_scale).uncertainty) > 0.45
