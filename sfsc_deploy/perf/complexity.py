"""Parameter and MAC counts per width, measured on the physically sliced model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sfsc_deploy.models import SwitchableNet
from sfsc_deploy.models.slicing import slice_model


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, input_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one image (torch's FlopCounterMode counts 2 FLOPs per MAC)."""
    param = next(module.parameters())
    x = torch.zeros(1, 3, *input_size, dtype=param.dtype, device=param.device)
    with FlopCounterMode(display=False) as counter:
        module.eval()(x)
    return counter.get_total_flops() // 2


@dataclass
class WidthStats:
    width: float
    channels: int  # channels of the backbone's last feature map
    params: int
    macs: int
    param_ratio: float
    mac_ratio: float
    calibrated: bool

    def to_dict(self) -> dict:
        return asdict(self)


def width_report(net: SwitchableNet) -> list[WidthStats]:
    """Per width: what the deployed (sliced) model really costs, and its ratio to the full model."""
    out_ch = net.backbone.out_channels
    rows = []
    for w in net.widths:
        twin = slice_model(net, w)
        rows.append(
            (
                w,
                out_ch.at(w, net.config.options.divisor),
                count_params(twin),
                count_macs(twin, net.config.options.input_size),
            )
        )
    _, _, full_params, full_macs = rows[-1]
    return [
        WidthStats(w, ch, p, m, p / full_params, m / full_macs, w in net.calibrated_widths)
        for w, ch, p, m in rows
    ]


@dataclass
class NetworkDescription:
    """What `sfsc-deploy info` shows: the checkpoint's network and what each width costs."""

    checkpoint: str
    arch: str
    widths: list[float]
    calibrated_widths: list[float]
    family_id: str
    feature_dim: int
    num_classes: int
    input_size: list[int]
    options: dict
    per_width: list[WidthStats]

    def to_dict(self) -> dict:
        return {**asdict(self), "per_width": [r.to_dict() for r in self.per_width]}


def describe(checkpoint_path) -> NetworkDescription:
    from sfsc_deploy.models import checkpoint

    header = checkpoint.read_header(checkpoint_path)
    net = checkpoint.load(checkpoint_path)
    cfg = net.config
    return NetworkDescription(
        checkpoint=str(checkpoint_path),
        arch=cfg.arch,
        widths=net.widths,
        calibrated_widths=net.calibrated_widths,
        family_id=header["family_id"],
        feature_dim=cfg.feature_dim,
        num_classes=cfg.num_classes,
        input_size=list(cfg.options.input_size),
        options=cfg.to_dict()["options"],
        per_width=width_report(net),
    )
