"""Deployment: platform tiers and the export of one artifact per tier, each proven against PyTorch."""
