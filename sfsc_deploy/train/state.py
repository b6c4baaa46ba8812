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


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore the optimiser in place; return the saved ``info`` (epoch, step, config).

    Any damage (unreadable file, malformed description, tensors that do not fit the parameters)
    is one error here, not a crash at the first optimiser step.
    """
    path = Path(path)
    damaged = SfscError(f"cannot resume: {path} is missing or damaged; start a new run without --resume")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})[METADATA_KEY])
        tensors = load_file(str(path))
        entries: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            idx, name = key.split(".", 1)
            entries.setdefault(int(idx), {})[name] = value
        for idx, extra in meta["scalars"].items():
            entries.setdefault(int(idx), {}).update(extra)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        for idx, entry in entries.items():
            for value in entry.values():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[idx].shape:
                    raise damaged
        optimizer.load_state_dict({"state": entries, "param_groups": meta["param_groups"]})
        info = meta["info"]
        if not (_is_count(info["epoch"]) and _is_count(info["step"]) and isinstance(info["config"], dict)):
            raise damaged
    except SfscError:
        raise
    except Exception:  # a user's file: whatever is wrong in it is the same answer
        raise damaged from None
    return info
