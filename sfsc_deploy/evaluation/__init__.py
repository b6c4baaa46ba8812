"""Evaluation: retrieval metrics, the cross-width compatibility matrix, its reports, seeds."""

from sfsc_deploy.io.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "extract_features": "sfsc_deploy.evaluation.features",
        "CompatibilityMatrix": "sfsc_deploy.evaluation.matrix",
        "compatibility_matrix": "sfsc_deploy.evaluation.matrix",
        "RetrievalMetrics": "sfsc_deploy.evaluation.metrics",
        "evaluate": "sfsc_deploy.evaluation.metrics",
        "matrix_markdown": "sfsc_deploy.evaluation.report",
        "width_label": "sfsc_deploy.evaluation.report",
        "write_matrix_report": "sfsc_deploy.evaluation.report",
    },
)
