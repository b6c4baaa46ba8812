"""Which network serves each width: ``networks.json`` in a training run directory.

SFSC trains one switchable network for every width; the baselines train one network per width.
Training writes this map and evaluation and export read it, so both treat every method alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from exporters.files import json_text, write_text
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import NetConfig, checkpoint
from sfsc_deploy.switchable.channels import normalize_width

NETWORKS = "networks.json"
CHECKPOINT = "checkpoint.safetensors"  # the checkpoint file of one trained network's folder


def write_networks(run_dir: Path, method: str, networks: dict[float, Path]) -> Path:
    data = {
        "method": method,
        "networks": [
            {"width": w, "checkpoint": str(p.relative_to(run_dir))} for w, p in sorted(networks.items())
        ],
    }
    return write_text(run_dir / NETWORKS, json_text(data))


def read_networks(path: str | Path) -> tuple[str, dict[float, Path]]:
    """(method, width -> checkpoint) from a run directory, or a single checkpoint file."""
    path = Path(path)
    if path.is_file():
        header = checkpoint.read_header(path)
        training = header.get("extra", {}).get("training") if isinstance(header.get("extra"), dict) else None
        method = training.get("method", "switchable") if isinstance(training, dict) else "switchable"
        method = method if isinstance(method, str) else "switchable"
        return method, {w: path for w in NetConfig.from_dict(header["config"]).all_widths}
    manifest = path / NETWORKS
    if not manifest.exists():
        if (path / CHECKPOINT).exists():
            return read_networks(path / CHECKPOINT)
        raise SfscError(
            f"{path} is neither a checkpoint nor a training run directory (no "
            f"{NETWORKS}); pass the --out of `sfsc-deploy train` or a .safetensors file"
        )
    damaged = f"{manifest} is damaged; re-run `sfsc-deploy train` or pass one network's checkpoint"
    try:
        data = json.loads(manifest.read_text())
        method, entries = data["method"], data["networks"]
        if not isinstance(method, str) or not isinstance(entries, list) or not entries:
            raise TypeError
        networks = {}
        for entry in entries:
            width, rel = entry["width"], entry["checkpoint"]
            if isinstance(width, bool) or not isinstance(width, int | float) or not isinstance(rel, str):
                raise TypeError
            target = (path / rel).resolve()
            if not target.is_relative_to(path.resolve()):  # a hostile entry never leaves the run
                raise SfscError(f"{manifest} points a network outside the run ({rel!r}); {damaged}")
            networks[normalize_width(width)] = target
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise SfscError(damaged) from None
    return method, networks
