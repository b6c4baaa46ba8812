import math

import pytest
import torch

from sfsc_deploy.losses.compat import asym_s, dirichlet_kl_uniform, evidential, lce_s


def digamma(x: float) -> float:
    """Recurrence up to x ≥ 6, then the asymptotic series (independent of torch)."""
    shift = 0.0
    while x < 6:
        shift -= 1 / x
        x += 1
    inv2 = 1 / (x * x)
    return shift + math.log(x) - 0.5 / x - inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 / 252))


def direct(logits, labels, lam, clamp, variant):
    """Eq. 3-5 written out per sample with math.lgamma and a series digamma."""
    total, unc = 0.0, 0.0
    for z, y in zip(logits.tolist(), labels.tolist(), strict=True):
        alpha = [math.exp(max(-clamp, min(clamp, v))) + 1 for v in z]
        c, s = len(alpha), sum(alpha)
        ev = digamma(s) - digamma(alpha[y])
        a_kl = alpha if variant == "paper" else [1.0 if i == y else a for i, a in enumerate(alpha)]
        s_kl = sum(a_kl)
        kl = (
            math.lgamma(s_kl)
            - math.lgamma(c)
            - sum(math.lgamma(a) for a in a_kl)
            + sum((a - 1) * (digamma(a) - digamma(s_kl)) for a in a_kl)
        )
        total += ev + lam * kl
        unc += c / s
    n = len(labels)
    return total / n, unc / n


@pytest.mark.parametrize("variant", ["paper", "sensoy"])
@pytest.mark.parametrize("scale", [0.5, 3.0, 20.0])
def test_matches_direct_computation(variant, scale):
    g = torch.Generator().manual_seed(int(scale * 10))
    logits = torch.randn(6, 7, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(0, 7, (6,), generator=g)
    out = evidential(logits, labels, kl_weight=0.2, clamp=10.0, variant=variant)
    loss, unc = direct(logits, labels, 0.2, 10.0, variant)
    assert out.loss.item() == pytest.approx(loss, rel=1e-7)
    assert out.uncertainty.item() == pytest.approx(unc, rel=1e-5)


def test_large_logits_stay_finite_with_finite_gradients():
    logits = torch.tensor([[1e4, -1e4, 50.0], [-3e38, 3e38, 0.0]], requires_grad=True)
    out = evidential(logits, torch.tensor([0, 2]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(logits.grad).all()


def test_kl_is_zero_for_the_uniform_dirichlet_and_positive_otherwise():
    assert dirichlet_kl_uniform(torch.ones(1, 5, dtype=torch.float64)).abs().item() < 1e-12
    assert dirichlet_kl_uniform(torch.tensor([[3.0, 1.0, 1.0]])).item() > 0


def test_paper_variant_caps_true_class_evidence_as_method_md_says():
    """With C = 500, λ = 0.2 and one-hot evidence the paper's loss is minimal near α_y ≈ 5."""
    c = 500
    alphas = torch.linspace(1.5, 60, 400, dtype=torch.float64)
    losses = []
    for a in alphas:
        z = torch.full((1, c), -10.0, dtype=torch.float64)
        z[0, 0] = math.log(a - 1)
        losses.append(evidential(z, torch.tensor([0]), variant="paper").loss.item())
    best = alphas[int(torch.tensor(losses).argmin())].item()
    assert 3 < best < 8
    sensoy = [
        evidential(
            torch.tensor([[math.log(a - 1)] + [-10.0] * (c - 1)], dtype=torch.float64),
            torch.tensor([0]),
            variant="sensoy",
        ).loss.item()
        for a in alphas
    ]
    assert all(x >= y for x, y in zip(sensoy, sensoy[1:], strict=False))  # no ceiling


def test_asym_contrastive_and_regression():
    f = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert asym_s(f, f, labels, mode="regression").item() == 0
    far = torch.eye(8)[:6] * 5
    assert asym_s(far, far, torch.arange(6)).item() == pytest.approx(0.0, abs=1e-6)  # all ≥ margin
    assert asym_s(f, -f, labels).item() > asym_s(f, f, labels).item()


def test_asym_contrastive_weighs_each_anchor_positive_the_same_at_any_batch_size():
    """Shuffled batches: the same image's pair is an anchor's only positive. Its pull must not
    shrink as the batch grows (a mean over all N² pairs weighs it 1/N and the alignment vanishes)."""

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        reference = torch.eye(64)[:n]  # distinct ids, pairwise distance √2 > margin: no negative term
        tilted = torch.nn.functional.normalize(reference + 0.3 * torch.roll(reference, 1, dims=1), dim=1)
        return tilted, reference

    d2 = 2 - 2 / math.sqrt(1 + 0.3**2)  # squared distance of each feature to its own reference
    for n in (8, 64):
        features, reference = batch(n)
        assert asym_s(features, reference, torch.arange(n)).item() == pytest.approx(0.5 * d2, rel=1e-5)


def test_lce_boundary_term_vanishes_when_sub_equals_full():
    torch.manual_seed(0)
    w = torch.randn(4, 8)
    f = torch.randn(5, 8)
    labels = torch.tensor([0, 1, 2, 3, 0])
    logits = f @ w.T
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert lce_s(f, f, logits, w, labels).item() == pytest.approx(ce.item(), rel=1e-6)
    assert lce_s(-f, f, -logits, w, labels).item() > ce.item()
