"""Evaluation: retrieval metrics, the cross-width compatibility matrix, its reports, feature extraction."""

from sfsc_deploy.evaluation.features import extract_features
from sfsc_deploy.evaluation.matrix import CompatibilityMatrix, compatibility_matrix
from sfsc_deploy.evaluation.metrics import RetrievalMetrics, evaluate
from sfsc_deploy.evaluation.report import matrix_markdown, width_label, write_matrix_report

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
