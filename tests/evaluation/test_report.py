"""Report files: JSON that reloads to the same matrix, a Table-2 shaped Markdown, a real PNG."""

from __future__ import annotations

import json

from sfsc_deploy.evaluation import CompatibilityMatrix, RetrievalMetrics, matrix_markdown, write_matrix_report

WIDTHS = [0.25, 0.5, 0.75, 1.0]


def _matrix() -> CompatibilityMatrix:
    metrics = {}
    for i, q in enumerate(WIDTHS):
        for j, g in enumerate(WIDTHS):
            mAP = 40 + 10 * i + 3 * j - (5 if (q, g) == (0.25, 0.5) else 0)
            metrics[(q, g)] = RetrievalMetrics(mAP, {1: mAP + 20, 5: mAP + 25, 10: mAP + 27}, mAP / 3, 100)
    return CompatibilityMatrix(WIDTHS, metrics)


def test_report_files(tmp_path):
    matrix = _matrix()
    paths = write_matrix_report(
        matrix, tmp_path / "out", title="SFSC test", extra={"command": "sfsc-deploy eval"}
    )
    assert set(paths) == {"json", "md", "png"}
    assert all(p.exists() for p in paths.values())
    assert not list((tmp_path / "out").glob(".*.tmp"))

    data = json.loads(paths["json"].read_text())
    assert CompatibilityMatrix.from_dict(data["matrix"]) == matrix
    assert data["extra"] == {"command": "sfsc-deploy eval"} and data["all_pass"] is False
    assert len(data["rules"]) == 6

    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000

    md = paths["md"].read_text()
    assert md.startswith("# SFSC test")
    assert md == f"# SFSC test\n\n{matrix_markdown(matrix)}"


def test_markdown_layout():
    md = matrix_markdown(_matrix())
    lines = md.splitlines()
    header = lines[0]
    assert header.startswith("| query φ_q") and "φ 0.25×" in header and header.endswith("φ 1.0× |")
    rows = [line for line in lines[2:6]]
    assert [r.split("|")[1].strip() for r in rows] == ["φ 0.25×", "φ 0.5×", "φ 0.75×", "φ 1.0×"]
    assert "| 40.0 / 60.0 | 38.0 / 58.0 |" in rows[0]  # mAP / R1, one decimal
    assert md.count("✅") == 5 and md.count("❌") == 1
    assert "**5/6 pairs compatible**" in md
    assert "ranking: full" in md  # the matrix says which ranking its figures come from (not top-k)
    assert "✅" not in matrix_markdown(_matrix(), rules=False)
