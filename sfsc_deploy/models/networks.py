"""Which network serves each width: ``networks.json`` in a training run directory.

SFSC trains one switchable network for every width; the baselines train one network per width.
Training writes this map and evaluation and export read it, so both treat every method alike.
"""

from __future__ import annotations

import json
from pathlib import Path

from exporters.files import write_text
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import NetConfig, checkpoint

NETWORKS = "networks.json"
CHECKPOINT = "checkpoint.safetensors"  # the checkpoint file of one trained network's folder


def write_networks(run_dir: Path, method: str, networks: dict[float, Path]) -> Path:
    data = {
        "method": method,
        "networks": [
            {"width": w, "checkpoint": str(p.relative_to(run_dir))} for w, p in sorted(networks.items())
        ],
    }
    return write_text(run_dir / NETWORKS, json.dumps(data, indent=2) + "\n")


def read_networks(path: str | Path) -> tuple[str, dict[float, Path]]:
    """(method, width -> checkpoint) from a run directory, or a single checkpoint file."""
    path = Path(path)
    if path.is_file():
        header = checkpoint.read_header(path)
        method = (header.get("extra", {}).get("training") or {}).get("method", "switchable")
        return method, {w: path for w in NetConfig.from_dict(header["config"]).all_widths}
    manifest = path / NETWORKS
    if not manifest.exists():
        if (path / CHECKPOINT).exists():
            return read_networks(path / CHECKPOINT)
        raise SfscError(
            f"{path} is neither a checkpoint nor a training run directory (no "
            f"{NETWORKS}); pass the --out of `sfsc-deploy train` or a .safetensors file"
        )
    data = json.loads(manifest.read_text())
    return data["method"], {float(n["width"]): path / n["checkpoint"] for n in data["networks"]}
