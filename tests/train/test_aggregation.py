import pytest
import torch

from sfsc_deploy.train.aggregation import aggregate, project_coefficients


def direct_projection(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Algorithm 1 literally, on the vectors (same shuffles as the Gram form)."""
    k = grads.shape[0]
    projected = []
    for a in range(k):
        g = grads[a].clone().double()
        for b in torch.randperm(k, generator=generator).tolist():
            if b == a:
                continue
            gb = grads[b].double()
            dot = g @ gb
            if dot < 0:
                g = g - dot / (gb @ gb) * gb
        projected.append(g)
    return torch.stack(projected).sum(0)


def test_conflicting_pair_2d_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1' = g1 + 0.5·g2 = (0.5, 0.5); g2' = g2 + g1 = (0, 1)
    out = aggregate(g, "project", torch.Generator().manual_seed(0))
    assert torch.allclose(out.direction, torch.tensor([0.5, 1.5]))
    assert out.conflicts == 1
    assert out.grad_norms == pytest.approx([1.0, 2**0.5])
    assert torch.allclose(aggregate(g, "sum").direction, torch.tensor([0.0, 1.0]))


def test_non_conflicting_pair_is_a_plain_sum():
    g = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    out = aggregate(g, "project", torch.Generator().manual_seed(0))
    assert torch.allclose(out.direction, torch.tensor([2.0, 1.0]))
    assert out.conflicts == 0


def test_three_tasks_by_hand():
    # g1 and g2 conflict, g3 is orthogonal to both: order does not matter.
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = aggregate(g, "project", torch.Generator().manual_seed(3))
    assert torch.allclose(out.direction, torch.tensor([0.5, 1.5, 1.0]))
    assert out.conflicts == 1


def test_projected_gradients_no_longer_conflict_with_their_pair():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    coeffs = project_coefficients(g @ g.T).float()
    projected = coeffs @ g
    assert projected[0] @ g[1] >= -1e-6 and projected[1] @ g[0] >= -1e-6


@pytest.mark.parametrize("seed", range(5))
def test_gram_form_equals_direct_vector_form(seed):
    torch.manual_seed(seed)
    grads = torch.randn(4, 300, dtype=torch.float64)
    grads[1] -= 1.5 * grads[0]  # make conflicts likely
    fast = aggregate(grads, "project", torch.Generator().manual_seed(seed)).direction
    slow = direct_projection(grads, torch.Generator().manual_seed(seed))
    assert torch.allclose(fast, slow, atol=1e-9)


def test_projection_is_reproducible_with_a_seed():
    grads = torch.randn(4, 50)
    grads[2] = -grads[0] + 0.1 * torch.randn(50)
    a = aggregate(grads, "project", torch.Generator().manual_seed(7)).direction
    b = aggregate(grads, "project", torch.Generator().manual_seed(7)).direction
    assert torch.equal(a, b)


def test_unknown_method():
    with pytest.raises(ValueError, match="sum, project"):
        aggregate(torch.ones(2, 2), "mean")
