"""Physical slicing: a standalone plain model per width, and its on-disk form.

``slice_model`` deep-copies the backbone and head with every switchable layer swapped for its
plain twin (``layer.sliced(width)``), so the sliced model is assembled from the layers'
twins rather than from a second copy of the architecture. On disk a sliced model is
``model.safetensors`` + ``model.json``; ``load_sliced`` rebuilds it from plain layers only.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from exporters.files import atomic_dir
from sfsc_deploy import __version__
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import FeatureNet, NetConfig, SwitchableNet, build_plain
from sfsc_deploy.switchable.layers import Switchable

FORMAT = "sfsc-deploy/sliced"
WEIGHTS, DESCRIPTION = "model.safetensors", "model.json"


def slice_model(net: SwitchableNet, width: float) -> FeatureNet:
    """The width-γ sub-model as plain torch.nn layers, in eval mode, with no classifier."""
    w = net.check_width(width)
    memo: dict[int, Any] = {id(m): m.sliced(w) for m in net.modules() if isinstance(m, Switchable)}
    twin = FeatureNet(copy.deepcopy(net.backbone, memo), copy.deepcopy(net.head, memo))
    return twin.eval()


@torch.no_grad()
def slice_error(net: SwitchableNet, twin: torch.nn.Module, width: float, x: torch.Tensor) -> float:
    """max |sliced(x) − switchable-at-width(x)| in eval mode."""
    was_training = net.training
    net.eval()
    try:
        with net.at_width(width):
            ref = net(x)
        return float((twin.eval()(x) - ref).abs().max())
    finally:
        net.train(was_training)


def save_sliced(
    twin: FeatureNet,
    config: NetConfig,
    width: float,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    **info: Any,
) -> Path:
    """Write the sliced model as a directory, atomically; ``info`` (JSON-able) goes in model.json."""
    description = {
        "format": FORMAT,
        "format_version": 1,
        "tool_version": __version__,
        "net": config.to_dict(),
        "width": width,
        **info,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in twin.state_dict().items()}
    with atomic_dir(out_dir, force=force) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / DESCRIPTION).write_text(json.dumps(description, indent=2) + "\n")
    return Path(out_dir)


def load_sliced(path: str | os.PathLike) -> tuple[FeatureNet, dict[str, Any]]:
    """Rebuild a sliced model from its directory (or its model.json) without switchable code."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    desc_path, weights_path = folder / DESCRIPTION, folder / WEIGHTS
    if not desc_path.exists() or not weights_path.exists():
        raise SfscError(
            f"{folder} is not a sliced model (needs {DESCRIPTION} and {WEIGHTS}); "
            f"create one with `sfsc-deploy slice`"
        )
    try:
        desc = json.loads(desc_path.read_text())
        assert desc["format"] == FORMAT
        config = NetConfig.from_dict(desc["net"])
        width = float(desc["width"])
    except Exception:
        raise SfscError(
            f"{desc_path} is not a valid sliced-model description; re-run `sfsc-deploy slice`"
        ) from None
    model = build_plain(config, width)
    try:
        model.load_state_dict(load_file(str(weights_path)), strict=True)
    except Exception as exc:
        raise SfscError(
            f"{weights_path} does not match {desc_path} "
            f"({str(exc).splitlines()[0][:120]}); re-run `sfsc-deploy slice`"
        ) from None
    return model.eval(), desc
