import pytest
import torch
import torch.nn.functional as F

from sfsc_deploy.losses.ori import batch_hard_triplet, circle_softmax, original_loss


def test_batch_hard_triplet_by_hand():
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # hardest positive is 1 for every anchor; hardest negatives: 3, √10, 3, 4
    assert batch_hard_triplet(f, labels, 0.3).item() == pytest.approx(0.0)
    expected = (0.5 + (3.5 - 10**0.5) + 0.5 + 0.0) / 4
    assert batch_hard_triplet(f, labels, 2.5).item() == pytest.approx(expected, rel=1e-5)


def test_circle_prefers_features_on_their_class_weight():
    w = torch.eye(4)
    labels = torch.arange(4)
    good = circle_softmax(w * 3, w, labels)
    bad = circle_softmax(w.roll(1, dims=0), w, labels)
    assert torch.isfinite(good) and good < bad


def test_original_loss_variants():
    torch.manual_seed(0)
    f, pre, w = torch.randn(8, 6), torch.randn(8, 6), torch.randn(5, 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits = f @ w.T
    ce = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert original_loss("softmax", f, pre, logits, w, labels).item() == pytest.approx(ce.item())
    both = original_loss("softmax+triplet", f, pre, logits, w, labels)
    assert both.item() == pytest.approx((ce + batch_hard_triplet(pre, labels)).item())
    assert torch.isfinite(original_loss("circle", f, pre, logits, w, labels))
    with pytest.raises(ValueError, match="softmax"):
        original_loss("arcface", f, pre, logits, w, labels)
