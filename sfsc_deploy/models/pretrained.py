"""ImageNet weights for the backbone: a torchvision or timm file mapped into the switchable network.

What is copied, and how the widths share it:

- every shared conv of the backbone gets the pretrained tensor whole; narrow widths then use its
  leading slice, as they use any shared weight;
- every width's BatchNorm starts from the leading slice of the pretrained BatchNorm: weight, bias,
  running mean and running variance (the pretrained ``num_batches_tracked`` counters are not
  needed and are listed as unused);
- the ImageNet classifier (``fc`` in ResNet and ShuffleNetV2, ``classifier`` in MobileNetV2) is
  **not used**: the re-id embedding head, its neck and the identity classifier are new, so they
  keep their fresh initialisation. Its keys are listed in the report, never silently dropped.

Layouts: torchvision's key names (``resnet18``, ``resnet50``, ``mobilenet_v2``,
``shufflenet_v2_x1_0``) and timm's (``resnet18``, ``resnet50``, ``mobilenetv2_100``; timm has
no ShuffleNetV2). timm's ResNets use torchvision's names, so a timm ResNet file is read (and
reported) as the torchvision layout; naming ``timm`` explicitly maps it the same way. The layout
is detected from the key names unless given.

Only the architecture at base width 1.0 (``ArchOptions.width_mult``) has the ImageNet shapes;
any other multiplier is one error. A key the backbone needs that the file lacks, a key the file
has that nothing uses (other than the classifier and the batch counters), a tensor of another
shape, dtype, or with NaN/inf are each one error naming the key(s). Files are read as safetensors
or with ``torch.load(..., weights_only=True)``: a pickle holding anything but tensors is refused,
never unpickled.

ShuffleNetV2 here splits a unit's input into channels ``≡ 0, 3`` and ``≡ 1, 2 (mod 4)`` instead of
two halves (``models/shufflenet_v2.py``, so that narrow widths nest); with the same weights its
units after each stage's first therefore compute a different function from torchvision's, and the
ImageNet weights are a starting point to fine-tune from, not the ImageNet model itself. ResNet and
MobileNetV2 at full width compute exactly what the pretrained model's backbone computes.

This module imports torch only when weights are read or applied, so ``TrainConfig`` (torch-free)
can check an ``--init`` value with :func:`parse_init`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfsc_deploy.errors import SfscError

if TYPE_CHECKING:
    import torch

    from sfsc_deploy.models.config import ArchOptions
    from sfsc_deploy.models.net import SwitchableNet

LAYOUTS = ("torchvision", "timm")
# --init SCHEME:PATH -> the layout it names (None: detected from the key names)
INIT_SCHEMES = {"imagenet": None, "imagenet-torchvision": "torchvision", "imagenet-timm": "timm"}
INIT_HELP = "imagenet:PATH (layout detected), imagenet-torchvision:PATH or imagenet-timm:PATH"
BN_COPIED = ("weight", "bias", "running_mean", "running_var")
BN_COUNTER = "num_batches_tracked"
LISTED = 10  # keys named in one error line; the exception carries all of them

# layouts each architecture has ImageNet weights in
SUPPORTED = {
    "resnet18": ("torchvision", "timm"),
    "resnet50": ("torchvision", "timm"),
    "mobilenet_v2": ("torchvision", "timm"),
    "shufflenet_v2": ("torchvision",),
}
# the ImageNet classifier's keys: present or not, never used
CLASSIFIER = {
    ("resnet18", "torchvision"): ("fc.weight", "fc.bias"),
    ("resnet18", "timm"): ("fc.weight", "fc.bias"),
    ("resnet50", "torchvision"): ("fc.weight", "fc.bias"),
    ("resnet50", "timm"): ("fc.weight", "fc.bias"),
    ("mobilenet_v2", "torchvision"): ("classifier.1.weight", "classifier.1.bias"),
    ("mobilenet_v2", "timm"): ("classifier.weight", "classifier.bias"),
    ("shufflenet_v2", "torchvision"): ("fc.weight", "fc.bias"),
}
# (arch, layout, keys that are all present, keys that are all absent): how a file is recognised.
# The ResNet row is torchvision's and timm's alike; a bottleneck's conv3 tells ResNet-50 from -18.
SIGNATURES = (
    ("resnet50", "torchvision", ("conv1.weight", "layer1.0.conv3.weight"), ()),
    ("resnet18", "torchvision", ("conv1.weight", "layer1.0.conv2.weight"), ("layer1.0.conv3.weight",)),
    ("mobilenet_v2", "torchvision", ("features.0.0.weight", "features.1.conv.0.0.weight"), ()),
    ("mobilenet_v2", "timm", ("conv_stem.weight", "blocks.0.0.conv_dw.weight"), ()),
    ("shufflenet_v2", "torchvision", ("conv1.0.weight", "stage2.0.branch1.0.weight"), ()),
)


class PretrainedKeysError(SfscError):
    """The file's keys do not fit the backbone; ``missing`` and ``unknown`` hold every one of them."""

    def __init__(self, message: str, missing: list[str], unknown: list[str]) -> None:
        super().__init__(message)
        self.missing, self.unknown = missing, unknown


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did."""

    source: str  # the file, or "<state dict>" for tensors passed in memory
    arch: str
    layout: str  # "torchvision" or "timm"
    detected: bool  # the layout was detected from the key names (False: it was given)
    loaded: int  # pretrained tensors copied into the network (each into every width's BatchNorm)
    unused: tuple[str, ...]  # the file's keys not used: the ImageNet classifier, BN batch counters

    @property
    def classifier(self) -> tuple[str, ...]:
        """The ImageNet classifier's keys found in the file (not used: the re-id head is new)."""
        return tuple(k for k in self.unused if not k.endswith(f".{BN_COUNTER}"))

    def summary(self) -> str:
        counters = len(self.unused) - len(self.classifier)
        dropped = [f"ImageNet classifier {', '.join(self.classifier)}"] if self.classifier else []
        dropped += [f"{counters} BatchNorm batch counters"] if counters else []
        how = "detected" if self.detected else "given"
        return (
            f"backbone from {self.source} ({self.arch}, {self.layout} layout {how}): "
            f"{self.loaded} tensors loaded" + (f"; not used: {'; '.join(dropped)}" if dropped else "")
        )


def parse_init(spec: str) -> tuple[str | None, str]:
    """``imagenet[-torchvision|-timm]:PATH`` -> (layout or None for detection, path). Torch-free."""
    scheme, sep, path = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or scheme not in INIT_SCHEMES or not path.strip():
        raise SfscError(f"--init {spec!r} is not a weights source; use {INIT_HELP}")
    return INIT_SCHEMES[scheme], path


def check_options(arch: str, options: ArchOptions, layout: str | None = None) -> None:
    """Refuse what no ImageNet file can fit, before any file is read or any work is done."""
    if arch not in SUPPORTED:
        raise SfscError(f"no ImageNet weights are mapped for {arch!r}; supported: {', '.join(SUPPORTED)}")
    if options.width_mult != 1.0:
        raise SfscError(
            f"ImageNet weights need the base width multiplier 1.0 (their shapes are the standard "
            f"{arch}'s), got width_mult {options.width_mult:g}; drop --width-mult or drop --init"
        )
    if layout is not None and layout not in LAYOUTS:
        raise SfscError(f"unknown weights layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if layout is not None and layout not in SUPPORTED[arch]:
        raise SfscError(
            f"{layout} has no {arch} weights; use the {' or '.join(SUPPORTED[arch])} layout "
            f"(torchvision's shufflenet_v2_x1_0 for shufflenet_v2)"
        )


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` dict from a safetensors file or a ``torch.save`` state dict.

    A torch file is loaded with ``weights_only=True``: tensors and plain containers only, so a
    pickle that would build other objects (or run code) is refused, never executed.
    """
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise SfscError(f"ImageNet weights {path} not found; check the path given to --init")
    if path.is_dir():
        raise SfscError(f"{path} is a directory; --init needs a .safetensors or .pth file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises several types for damaged files
            raise SfscError(
                f"{path} is a damaged safetensors file ({str(exc).splitlines()[0][:120]}); download it again"
            ) from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ... for a foreign file
        raise SfscError(
            f"{path} is neither a safetensors file nor a torch file of plain tensors "
            f"({str(exc).splitlines()[0][:120]}); sfsc-deploy loads torch files only with "
            f"weights_only=True and never unpickles other objects: save the model's state_dict() "
            f"or convert the file to safetensors"
        ) from None
    return _flat_tensors(data, str(path))


def _flat_tensors(data: Any, source: str) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(data, Mapping):
        raise SfscError(f"{source} holds a {type(data).__name__}, not a state dict of named tensors")
    others = [f"{k!r} ({type(v).__name__})" for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if others or not all(isinstance(k, str) for k in data):
        raise SfscError(
            f"{source} is not a flat state dict: {', '.join(others[:LISTED]) or 'non-string keys'} "
            f"{'is' if len(others) == 1 else 'are'} not tensors; save the model's state_dict() alone "
            f"(e.g. checkpoint['state_dict'])"
        )
    return dict(data)


def detect_layout(keys: set[str], arch: str, source: str = "the weights") -> str:
    """The layout of ``keys`` for ``arch``; a file of another architecture is named as such."""
    matches = [(a, lay) for a, lay, have, lack in SIGNATURES if set(have) <= keys and not set(lack) & keys]
    for a, lay in matches:
        if a == arch:
            return lay
    if matches:
        other, lay = matches[0]
        raise SfscError(
            f"{source} looks like ImageNet {other} weights ({lay} layout), not {arch}; "
            f"train with --arch {other} or pass {arch} weights"
        )
    first = ", ".join(sorted(keys)[:5]) or "none"
    expected = " or ".join(f"{lay}'s {have[0]!r}" for a, lay, have, _ in SIGNATURES if a == arch)
    raise SfscError(
        f"cannot tell the layout of {source}: it has no {expected} key (its first keys: {first}); "
        f"is it an ImageNet {arch} state dict? Name the layout with {INIT_HELP} if it is"
    )


# ----------------------------------------------------------------------------------- name maps
def _resnet(path: str, layout: str) -> str:
    """torchvision and timm alike: only the stem is named otherwise here."""
    return {"stem.0": "conv1", "stem.1": "bn1"}.get(path, path)


_TIMM_DS = {("0", "0"): "conv_dw", ("0", "1"): "bn1", ("1",): "conv_pw", ("2",): "bn2"}
_TIMM_IR = {
    ("0", "0"): "conv_pw",
    ("0", "1"): "bn1",
    ("1", "0"): "conv_dw",
    ("1", "1"): "bn2",
    ("2",): "conv_pwl",
    ("3",): "bn3",
}


def _mobilenet_v2(path: str, layout: str) -> str:
    """``features.i[.block].…``: torchvision calls the block ``conv``; timm has stem, stages, head."""
    from sfsc_deploy.models.mobilenet_v2 import SETTINGS

    _, index, *rest = path.split(".")
    i = int(index)
    if layout == "torchvision":
        return ".".join(["features", index, *(["conv", *rest[1:]] if rest[0] == "block" else rest)])
    blocks = [(stage, j, t) for stage, (t, _, n, _) in enumerate(SETTINGS) for j in range(n)]
    if i == 0:
        return {"0": "conv_stem", "1": "bn1"}[rest[0]]
    if i == len(blocks) + 1:
        return {"0": "conv_head", "1": "bn2"}[rest[0]]
    stage, j, expand = blocks[i - 1]
    return f"blocks.{stage}.{j}.{(_TIMM_DS if expand == 1 else _TIMM_IR)[tuple(rest[1:])]}"


# here each branch is a sequence of conv_bn pairs; torchvision's is one flat Sequential with ReLUs
_SHUFFLE_BRANCHES = {
    ("branch1", "0", "0"): "branch1.0",
    ("branch1", "0", "1"): "branch1.1",
    ("branch1", "1", "0"): "branch1.2",
    ("branch1", "1", "1"): "branch1.3",
    ("branch2", "0", "0"): "branch2.0",
    ("branch2", "0", "1"): "branch2.1",
    ("branch2", "1", "0"): "branch2.3",
    ("branch2", "1", "1"): "branch2.4",
    ("branch2", "2", "0"): "branch2.5",
    ("branch2", "2", "1"): "branch2.6",
}


def _shufflenet_v2(path: str, layout: str) -> str:
    parts = path.split(".")
    if parts[0] == "stem":
        return f"conv1.{parts[1]}"
    if parts[0] == "conv5":
        return path
    stage, unit, *branch = parts
    return f"{stage}.{unit}.{_SHUFFLE_BRANCHES[tuple(branch)]}"


_NAMES = {
    "resnet18": _resnet,
    "resnet50": _resnet,
    "mobilenet_v2": _mobilenet_v2,
    "shufflenet_v2": _shufflenet_v2,
}


def pretrained_names(net: SwitchableNet, layout: str) -> dict[str, str]:
    """Backbone module path here -> module name in the ``layout`` file, for every conv and BN."""
    from sfsc_deploy.switchable.layers import SwitchableBatchNorm, SwitchableConv2d, SwitchableLinear

    rename = _NAMES[net.config.arch]
    names = {}
    for path, module in net.backbone.named_modules():
        if isinstance(module, SwitchableLinear):  # no backbone has one; a new one must be mapped here
            raise SfscError(f"backbone linear layer {path} has no ImageNet counterpart mapped")
        if isinstance(module, SwitchableConv2d | SwitchableBatchNorm):
            names[path] = rename(path, layout)
    return names


# ------------------------------------------------------------------------------------- loading
def _listed(keys: list[str]) -> str:
    more = f" … and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
    return ", ".join(keys[:LISTED]) + more


def _prefix_hint(keys: set[str], missing: list[str]) -> str:
    """Name a wrapper's prefix (``module.`` of DataParallel, ``model.``) that hides needed keys."""
    heads = {k.split(".", 1)[0] for k in keys}
    if len(heads) == 1 and any(f"{head}.{m}" in keys for head in heads for m in missing):
        return f"; every key starts with '{next(iter(heads))}.': save the inner model's state_dict()"
    return ""


def load_pretrained(
    net: SwitchableNet,
    weights: str | os.PathLike | Mapping[str, torch.Tensor],
    layout: str | None = None,
) -> PretrainedReport:
    """Copy ImageNet weights (a file, or a state dict already read) into ``net``'s backbone, in place.

    ``layout`` is ``"torchvision"``, ``"timm"`` or None to detect it. Every conv gets its tensor,
    every width's BatchNorm the leading slice of its BatchNorm; the embedding head and the
    classifier keep their initialisation (the ImageNet classifier is listed as unused).
    """
    import torch

    from sfsc_deploy.switchable.layers import SwitchableBatchNorm

    arch = net.config.arch
    check_options(arch, net.config.options, layout)
    if isinstance(weights, Mapping):
        source, tensors = "<state dict>", _flat_tensors(weights, "the state dict")
    else:
        source, tensors = str(weights), read_weights(weights)
    detected = layout is None
    layout = layout or detect_layout(set(tensors), arch, source)
    names = pretrained_names(net, layout)
    modules = dict(net.backbone.named_modules())
    # pretrained key -> (module here, its tensor name, the full shape it needs)
    targets: dict[str, tuple[torch.nn.Module, str, tuple[int, ...]]] = {}
    counters = set()
    for path, name in names.items():
        module = modules[path]
        if isinstance(module, SwitchableBatchNorm):
            full = (module.spec.ch.full,)
            for attr in BN_COPIED:
                targets[f"{name}.{attr}"] = (module, attr, full)
            counters.add(f"{name}.{BN_COUNTER}")
        else:
            targets[f"{name}.weight"] = (module, "weight", tuple(module.weight.shape))
            if module.bias is not None:
                targets[f"{name}.bias"] = (module, "bias", tuple(module.bias.shape))
    classifier = set(CLASSIFIER[arch, layout])
    missing = sorted(set(targets) - set(tensors))
    unknown = sorted(set(tensors) - set(targets) - classifier - counters)
    if missing or unknown:
        parts = [f"missing {len(missing)} key(s): {_listed(missing)}"] if missing else []
        parts += [f"unknown {len(unknown)} key(s): {_listed(unknown)}"] if unknown else []
        raise PretrainedKeysError(
            f"{source} does not fit the {arch} backbone ({layout} layout): {'; '.join(parts)}"
            f"{_prefix_hint(set(tensors), missing)}",
            missing,
            unknown,
        )
    wrong = [k for k, (_, _, shape) in targets.items() if tuple(tensors[k].shape) != shape]
    if wrong:
        key = wrong[0]
        others = f" (and {len(wrong) - 1} more key(s))" if len(wrong) > 1 else ""
        raise SfscError(
            f"{source}: {key} has shape {tuple(tensors[key].shape)}, the {arch} backbone at width "
            f"multiplier 1.0 needs {targets[key][2]}{others}; pass the standard {arch}'s ImageNet weights"
        )
    for key in targets:
        t = tensors[key]
        if not t.is_floating_point():
            raise SfscError(
                f"{source}: {key} holds {t.dtype} values, not floating point; the file is not weights"
            )
        if not bool(torch.isfinite(t).all()):
            raise SfscError(f"{source}: {key} holds NaN or inf; the file is damaged, download it again")
    with torch.no_grad():
        for key, (module, attr, _) in targets.items():
            t = tensors[key]
            if isinstance(module, SwitchableBatchNorm):
                for bn in module.bn.values():  # every width, calibrated ones too: the leading slice
                    getattr(bn, attr).copy_(t[: bn.num_features])
            else:
                getattr(module, attr).copy_(t)
    unused = sorted(set(tensors) & classifier) + sorted(set(tensors) & counters)
    return PretrainedReport(source, arch, layout, detected, len(targets), tuple(unused))


class PretrainedInit:
    """An ``--init`` value: checked up front, its file read once, applied to each new network."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.layout, self.path = parse_init(spec)
        self._tensors: dict[str, torch.Tensor] | None = None
        self.report: PretrainedReport | None = None  # of the last apply

    def check(self, arch: str, options: ArchOptions) -> None:
        """Options no ImageNet file fits (width multiplier, layout), before anything is read."""
        check_options(arch, options, self.layout)

    def read(self, arch: str | None = None) -> dict[str, torch.Tensor]:
        """The file's tensors (read once); with ``arch``, also refuse a file of another architecture."""
        if self._tensors is None:
            self._tensors = read_weights(self.path)
        if arch is not None and self.layout is None:
            detect_layout(set(self._tensors), arch, self.path)
        return self._tensors

    def apply(self, net: SwitchableNet) -> PretrainedReport:
        self.report = replace(load_pretrained(net, self.read(), self.layout), source=self.path)
        return self.report
