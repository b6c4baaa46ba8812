"""Evaluation: retrieval metrics, the cross-width compatibility matrix, its reports, feature extraction."""

from .features import extract_features
from .matrix import CompatibilityMatrix, compatibility_matrix
from .metrics import RetrievalMetrics, evaluate
from .report import matrix_markdown, width_label, write_matrix_report

__all__ = [
    "CompatibilityMatrix",
    "RetrievalMetrics",
    "compatibility_matrix",
    "evaluate",
    "extract_features",
    "matrix_markdown",
    "width_label",
    "write_matrix_report",
]
