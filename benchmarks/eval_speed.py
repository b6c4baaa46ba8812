"""Evaluation speed: mAP / CMC / mINP on a Market-size problem vs a per-query numpy loop.

3,368 queries × 19,732 gallery, random 512-d features, Market-1501 protocol. Targets: ≥ 5× faster
than the straightforward implementation and ≤ 2 s on 2 cores; the figures must agree.

    python -m benchmarks.eval_speed

Writes ``benchmarks/results/eval_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import RESULTS, provenance, provenance_md, write_results
from sfsc_deploy.evaluation.metrics import evaluate


def per_query_numpy(qf, gf, q_pids, g_pids, q_cams, g_cams, max_rank=10):
    """The textbook loop: one query at a time, sort its gallery, drop same id + same camera."""
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    keep_g = g_pids != -1
    gf, g_pids, g_cams = gf[keep_g], g_pids[keep_g], g_cams[keep_g]
    aps, cmc, inps = [], np.zeros(max_rank), []
    for i in range(len(qf)):
        order = np.argsort(-(gf @ qf[i]), kind="stable")
        valid = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        matches = (g_pids[order] == q_pids[i])[valid]
        if not matches.any():
            continue
        hits = np.flatnonzero(matches)
        cmc[hits[0] :] += 1 if hits[0] < max_rank else 0
        precision = np.arange(1, len(hits) + 1) / (hits + 1)
        aps.append(precision.mean())
        inps.append(len(hits) / (hits[-1] + 1))
    n = len(aps)
    return 100 * float(np.mean(aps)), 100 * cmc[0] / n, 100 * float(np.mean(inps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS / "eval_speed"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    nq, ng, d, ids = 3368, 19732, 512, 750
    q_pids = rng.integers(1, ids + 1, nq)
    g_pids = np.concatenate([rng.integers(1, ids + 1, ng - 2000), np.full(1000, 0), np.full(1000, -1)])
    centres = rng.standard_normal((ids + 1, d)).astype(np.float32)
    qf = (centres[q_pids] + 2.0 * rng.standard_normal((nq, d))).astype(np.float32)
    gf = (centres[np.maximum(g_pids, 0)] + 2.0 * rng.standard_normal((ng, d))).astype(np.float32)
    q_cams, g_cams = rng.integers(1, 7, nq), rng.integers(1, 7, ng)
    evaluate(qf[:64], gf, q_pids[:64], g_pids, q_cams[:64], g_cams)  # warm-up
    fast = []
    for _ in range(3):
        t0 = time.perf_counter()
        m = evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams)
        fast.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref_map, ref_r1, ref_minp = per_query_numpy(qf, gf, q_pids, g_pids, q_cams, g_cams)
    slow = time.perf_counter() - t0
    best = min(fast)
    record = {
        "provenance": provenance(),
        "queries": nq,
        "gallery": ng,
        "dim": d,
        "evaluate_seconds": fast,
        "per_query_numpy_seconds": slow,
        "speedup": slow / best,
        "mAP": m.mAP,
        "reference_mAP": ref_map,
        "rank1": m.rank1,
        "reference_rank1": ref_r1,
        "mINP": m.mINP,
        "reference_mINP": ref_minp,
        "pass": slow / best >= 5 and best <= 2.0 and abs(m.mAP - ref_map) < 1e-3,
    }
    md = [
        "# Evaluation speed (Market-size, random features)",
        "",
        provenance_md(record["provenance"]),
        f"{nq:,} queries × {ng:,} gallery (1,000 distractors, 1,000 junk), {d}-d.",
        "",
        "| implementation | seconds | mAP | R1 | mINP |",
        "|---|---:|---:|---:|---:|",
        f"| `sfsc_deploy.evaluation.evaluate` (best of 3) | {best:.2f} | {m.mAP:.3f} | {m.rank1:.3f} "
        f"| {m.mINP:.3f} |",
        f"| per-query numpy loop | {slow:.2f} | {ref_map:.3f} | {ref_r1:.3f} | {ref_minp:.3f} |",
        "",
        f"Speed-up {slow / best:.1f}× (target ≥ 5×), {best:.2f} s (target ≤ 2 s): "
        f"{'✅' if record['pass'] else '❌'}",
    ]
    write_results(Path(args.out), record, md)
    print("\n".join(md))


if __name__ == "__main__":
    main()
