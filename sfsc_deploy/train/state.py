"""Resumable training state without pickle: optimiser tensors in safetensors, the rest in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from exporters.files import write_bytes
from sfsc_deploy.errors import SfscError

METADATA_KEY = "sfsc_deploy_train_state"


def save_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer, info: dict[str, Any]) -> None:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    meta = {"param_groups": state["param_groups"], "scalars": scalars, "info": info}
    write_bytes(path, st_save(tensors, metadata={METADATA_KEY: json.dumps(meta)}))


def load_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimiser in place; return the saved ``info``."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})[METADATA_KEY])
        tensors = load_file(str(path))
    except Exception:
        raise SfscError(
            f"cannot resume: {path} is missing or damaged; start a new run without --resume"
        ) from None
    entries: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        entries.setdefault(int(idx), {})[name] = value
    for idx, extra in meta["scalars"].items():
        entries.setdefault(int(idx), {}).update(extra)
    optimizer.load_state_dict({"state": entries, "param_groups": meta["param_groups"]})
    return meta["info"]
