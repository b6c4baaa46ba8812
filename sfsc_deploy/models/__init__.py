"""Backbones, the switchable network, and what is built from it: slices, checkpoints, BN calibration."""

from sfsc_deploy.io.lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ARCHS": "sfsc_deploy.models.architectures",
        "build": "sfsc_deploy.models.architectures",
        "build_from_config": "sfsc_deploy.models.architectures",
        "build_plain": "sfsc_deploy.models.architectures",
        "ARCH_NAMES": "sfsc_deploy.models.config",
        "ArchOptions": "sfsc_deploy.models.config",
        "NetConfig": "sfsc_deploy.models.config",
        "FeatureNet": "sfsc_deploy.models.net",
        "NetOutput": "sfsc_deploy.models.net",
        "SwitchableNet": "sfsc_deploy.models.net",
    },
)
