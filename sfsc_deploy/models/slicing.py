"""Physical slicing: a standalone plain model per width, and its on-disk form.

``slice_model`` deep-copies the backbone and head with every switchable layer swapped for its
plain twin (``layer.sliced(width)``), so the sliced model is assembled from the layers'
twins rather than from a second copy of the architecture. On disk a sliced model is
``model.safetensors`` + ``model.json``; ``load_sliced`` rebuilds it from plain layers only.
Method: docs/method.md §2.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from exporters.files import atomic_dir, json_text
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import DEFAULT_DEVICE, resolve_device
from sfsc_deploy.io.headers import SLICED
from sfsc_deploy.models import FeatureNet, NetConfig, SwitchableNet, build_plain
from sfsc_deploy.switchable.layers import Switchable

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


@torch.no_grad()
def distinct_bn_statistics(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every width's BatchNorm its own non-trivial statistics and affine parameters.

    A freshly built network has identical BNs at every width, so a slicer that picked the wrong
    width's BN would still measure zero error; after this it cannot.
    """
    from sfsc_deploy.switchable.layers import SwitchableBatchNorm

    g = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, SwitchableBatchNorm):
            for bn in module.bn.values():
                n = bn.num_features
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=g) * 0.2)


def save_sliced(
    twin: FeatureNet,
    config: NetConfig,
    width: float,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    **info: Any,
) -> Path:
    """Write the sliced model as a directory, atomically; ``info`` (JSON-able) goes in model.json."""
    description = {
        **SLICED.header(),
        "net": config.to_dict(),
        "width": width,
        **info,
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in twin.state_dict().items()}
    with atomic_dir(out_dir, force=force, inputs=inputs) as tmp:
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / DESCRIPTION).write_text(json_text(description))
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
    except (json.JSONDecodeError, UnicodeDecodeError):
        desc = None
    SLICED.check(desc, desc_path)
    try:
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


@dataclass
class SliceResult:
    out_dir: Path
    width: float
    params: int
    macs: int
    max_abs_error: float  # sliced against the switchable network at this width, on random inputs
    calibration_images: int | None  # images whose statistics re-estimated the width's BatchNorm
    unreadable: int = 0  # calibration images that could not be read


def slice_checkpoint(
    checkpoint_path: str | os.PathLike,
    width: float,
    out_dir: str | os.PathLike,
    *,
    calibrate: str | os.PathLike | None = None,
    calibration_images: int = 2048,
    force: bool = False,
    device: str = DEFAULT_DEVICE,
) -> SliceResult:
    """Write the standalone sliced model of one width (re-estimating an untrained width's BatchNorm
    from the image folder ``calibrate`` first, on ``device``), checked against the switchable network
    (slicing, its check and the files on the CPU)."""
    from exporters.files import check_output_dir, file_sha256
    from sfsc_deploy.data.images import load_folder
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.models.calibration import calibrate_bn
    from sfsc_deploy.perf.complexity import count_macs, count_params

    check_output_dir(out_dir, force, inputs=[checkpoint_path, calibrate])
    where = resolve_device(device)  # a bad --device is refused before any work, --calibrate or not
    net = checkpoint.load(checkpoint_path)
    opts = net.config.options
    calibrated, bad = None, 0
    if calibrate is not None:
        images, bad = load_folder(calibrate, opts.input_size, opts.mean, opts.std, limit=calibration_images)
        calibrated = calibrate_bn(net.to(where), width, images)
        net.to("cpu")
    w = net.check_width(width)
    twin = slice_model(net, w)
    x = torch.randn(4, 3, *opts.input_size, generator=torch.Generator().manual_seed(0))
    error = slice_error(net, twin, w, x)
    params, macs = count_params(twin), count_macs(twin, opts.input_size)
    save_sliced(
        twin,
        net.config,
        w,
        out_dir,
        force=force,
        inputs=[checkpoint_path, calibrate],
        family_id=checkpoint.family_id(net),
        source_checkpoint_sha256=file_sha256(checkpoint_path),
        params=params,
        macs=macs,
        max_abs_error_vs_switchable=error,
        calibration_images=calibrated,
    )
    return SliceResult(Path(out_dir), w, params, macs, error, calibrated, bad)
