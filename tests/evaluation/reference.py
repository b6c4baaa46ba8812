"""A slow, literal per-query implementation of the Market-1501 protocol, to check the fast one against.

Ties between a true match and a negative are ordered match-first, the same rule the library documents.
"""

from __future__ import annotations

import numpy as np


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def reference_evaluate(qf, gf, q_pids, g_pids, q_camids, g_camids, ranks=(1, 5, 10)) -> dict:
    """Return {"mAP", "cmc", "mINP", "num_queries"} in percent, looping over queries one at a time."""
    qf, gf = _normalise(qf), _normalise(gf)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    aps, inps, firsts = [], [], []
    for i in range(len(qf)):
        sims = gf @ qf[i]
        keep = g_pids != -1  # junk images
        keep &= ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))  # same person, same camera
        sims, pids = sims[keep], g_pids[keep]
        matches = pids == q_pids[i]
        if not matches.any():
            continue  # no true match left: the query is skipped
        order = np.lexsort((matches, -sims))  # by similarity, descending; matches last on ties
        hits = matches[order]
        positions = np.flatnonzero(hits) + 1  # 1-based rank of every true match
        precisions = [(k + 1) / pos for k, pos in enumerate(positions)]
        aps.append(np.mean(precisions))
        inps.append(len(positions) / positions[-1])
        firsts.append(positions[0])
    firsts = np.array(firsts)
    return {
        "mAP": 100 * float(np.mean(aps)),
        "cmc": {r: 100 * float(np.mean(firsts <= r)) for r in ranks},
        "mINP": 100 * float(np.mean(inps)),
        "num_queries": len(firsts),
    }
