"""sfsc-deploy: one switchable re-id network, sliced and exported per platform tier."""

__version__ = "0.1.0"
