"""The compatibility matrix and the CMP-NAS rule on synthetic features with known compatibility."""

from __future__ import annotations

import json

import pytest
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation import CompatibilityMatrix, compatibility_matrix

WIDTHS = [0.25, 0.5, 0.75, 1.0]
NOISE = {0.25: 1.4, 0.5: 1.2, 0.75: 1.0, 1.0: 0.5}  # narrower width: noisier, same space


def _labels(n: int, ids: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, ids + 1, (n,), generator=g), torch.randint(0, 6, (n,), generator=g)


def synthetic(rotate: float | None = None, dim: int = 32, ids: int = 40):
    """Per width: class centres + width-dependent noise; ``rotate`` maps one width into another basis."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(ids + 1, dim, generator=g)
    q_pids, q_cams = _labels(80, ids, 1)
    g_pids, g_cams = _labels(400, ids, 2)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=g))[0]
    feats = {}
    for side, pids in (("q", q_pids), ("g", g_pids)):
        feats[side] = {}
        for w in WIDTHS:
            f = centres[pids] + NOISE[w] * torch.randn(len(pids), dim, generator=g)
            feats[side][w] = f @ rotation if w == rotate else f
    return feats["q"], feats["g"], q_pids, g_pids, q_cams, g_cams


@pytest.fixture(scope="module")
def compatible() -> CompatibilityMatrix:
    return compatibility_matrix(*synthetic())


def test_compatible_widths_pass_the_rule(compatible):
    assert set(compatible.metrics) == {(q, g) for q in WIDTHS for g in WIDTHS}
    table = compatible.rule_table()
    assert len(table) == 6 and all(row["pass"] for row in table)
    assert compatible.all_pass()
    assert compatible.rule(0.25, 1.0)
    assert compatible.value(0.25, 1.0) > compatible.value(0.25, 0.25)
    assert compatible.value(1.0, 1.0, "rank1") == compatible.metrics[(1.0, 1.0)].rank1


def test_rotated_width_fails_its_pairs():
    m = compatibility_matrix(*synthetic(rotate=0.5))
    for row in m.rule_table():
        assert row["pass"] == (0.5 not in (row["query"], row["gallery"])), row
    assert not m.all_pass()
    assert m.value(0.5, 0.5) > 50 > m.value(0.5, 1.0)  # self-test fine, cross-width broken


def test_json_roundtrip(compatible):
    data = json.loads(json.dumps(compatible.to_dict()))
    assert "0.25|1.0" in data["metrics"] and data["widths"] == WIDTHS
    assert CompatibilityMatrix.from_dict(data) == compatible


def test_lookup_errors(compatible):
    assert compatible.value(0.7500000001, 1.0) == compatible.value(0.75, 1.0)
    for bad in (
        lambda: compatible.value(0.3, 1.0),
        lambda: compatible.value(1.0, 1.0, "top1"),
        lambda: compatible.rule(1.0, 0.25),
        lambda: CompatibilityMatrix.from_dict({"widths": []}),
    ):
        with pytest.raises(SfscError):
            bad()


def test_mismatched_widths_raise():
    qf, gf, *labels = synthetic()
    del gf[0.5]
    with pytest.raises(SfscError, match="widths"):
        compatibility_matrix(qf, gf, *labels)
