"""Compatibility-matrix reports: JSON for machines, Markdown laid out like SFSC Table 2, a PNG heatmap."""

from __future__ import annotations

import json
from pathlib import Path

from exporters.files import check_overwrite, json_text, write_text
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.matrix import CompatibilityMatrix


def width_label(w: float, prefix: str = "φ ") -> str:
    """``φ 0.25×``, ``φ 1.0×``: the paper's notation for a sub-model."""
    text = f"{w:g}"
    return f"{prefix}{text if '.' in text or 'e' in text else text + '.0'}×"


def _cell(matrix: CompatibilityMatrix, q: float, g: float) -> str:
    return f"{matrix.value(q, g, 'mAP'):.1f} / {matrix.value(q, g, 'rank1'):.1f}"


def matrix_markdown(matrix: CompatibilityMatrix, *, rules: bool = True, metric: str = "mAP") -> str:
    """Table 2 layout (rows: query model, columns: gallery model, cells ``mAP / R1``), then the rule table.

    No heading, so a report can embed several matrices under its own titles.
    """
    labels = [width_label(w) for w in matrix.widths]
    lines = [
        "| query φ_q ↓ · gallery φ_g → | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for q, label in zip(matrix.widths, labels, strict=True):
        lines.append(f"| {label} | " + " | ".join(_cell(matrix, q, g) for g in matrix.widths) + " |")
    lines.append("")
    lines.append("Cells: mAP / rank-1 (%), from the full ranking of every gallery image (ranking: full).")
    if not rules:
        return "\n".join(lines) + "\n"
    table = matrix.rule_table(metric)
    lines += [
        "",
        f"| query φ_q | gallery φ_g | {metric} M(φ_q, φ_g) | {metric} M(φ_q, φ_q) | compatible |",
        "|---|---|---:|---:|:---:|",
    ]
    for row in table:
        mark = "✅" if row["pass"] else "❌"
        lines.append(
            f"| {width_label(row['query'])} | {width_label(row['gallery'])} "
            f"| {row['cross']:.1f} | {row['self']:.1f} | {mark} |"
        )
    passed = sum(row["pass"] for row in table)
    lines += [
        "",
        f"**{passed}/{len(table)} pairs compatible** "
        f"(rule: M(φ_q, φ_g) > M(φ_q, φ_q) for q < g, on {metric}).",
    ]
    return "\n".join(lines) + "\n"


def _heatmap(matrix: CompatibilityMatrix, path: Path, title: str) -> None:
    """mAP heatmap per (query, gallery) width."""
    from sfsc_deploy.io.figures import new_figure, save_png

    n = len(matrix.widths)
    values = [[matrix.value(q, g, "mAP") for g in matrix.widths] for q in matrix.widths]
    fig = new_figure(1.3 * n + 2.2, 1.1 * n + 1.6)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100)
    for i in range(n):
        for j in range(n):
            v = values[i][j]
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="black" if v > 60 else "white")
    labels = [width_label(w, prefix="") for w in matrix.widths]
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("gallery model width φ_g")
    ax.set_ylabel("query model width φ_q")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="mAP (%)")
    fig.tight_layout()
    save_png(fig, path)


def matrix_report_paths(out_dir: str | Path) -> dict[str, Path]:
    return {kind: Path(out_dir) / f"compat_matrix.{kind}" for kind in ("json", "md", "png")}


def write_matrix_report(
    matrix: CompatibilityMatrix,
    out_dir: str | Path,
    *,
    title: str,
    extra: dict | None = None,
    force: bool = True,
    inputs=(),
) -> dict[str, Path]:
    """Write compat_matrix.{json,md,png} atomically into ``out_dir``; return their paths by kind."""
    paths = matrix_report_paths(out_dir)
    for path in paths.values():
        check_overwrite(path, force, inputs)
    payload = {
        "title": title,
        "matrix": matrix.to_dict(),
        "rules": matrix.rule_table(),
        "all_pass": matrix.all_pass(),
        "extra": extra or {},
    }
    write_text(paths["json"], json_text(payload))
    write_text(paths["md"], f"# {title}\n\n{matrix_markdown(matrix)}")
    _heatmap(matrix, paths["png"], title)
    return paths


def load_matrix_report(path: str | Path) -> CompatibilityMatrix:
    """The matrix of a ``compat_matrix.json`` written by ``eval`` (or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "compat_matrix.json"
    try:
        return CompatibilityMatrix.from_dict(json.loads(path.read_text())["matrix"])
    except FileNotFoundError:
        raise SfscError(f"eval results {path} not found; run `sfsc-deploy eval` first") from None
    except Exception:
        raise SfscError(f"{path} is not a compat_matrix.json from `sfsc-deploy eval`") from None
