"""Checkpoints: one safetensors file (never a pickle) with the full description in its header.

The header's ``sfsc_deploy`` entry holds the network config (enough to rebuild it), the
family id and a sha256 of every tensor, so a damaged file is refused instead of silently
producing wrong features.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from exporters.files import write_bytes
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.hashing import tensor_digest
from sfsc_deploy.io.headers import CHECKPOINT
from sfsc_deploy.models import NetConfig, SwitchableNet, build_from_config
from sfsc_deploy.switchable.layers import SwitchableConv2d, SwitchableLinear

if TYPE_CHECKING:
    from sfsc_deploy.models.pretrained import PretrainedInit

METADATA_KEY = "sfsc_deploy"
# a training-only tensor added after format 1 was fixed; older checkpoints lack it
TRAINING_ONLY_DEFAULT = "classifier.evidence_offset"


def family_id(net: SwitchableNet) -> str:
    """Hash of the shared conv/linear weights: every sub-model of one family shares them.

    BatchNorm is per width and the classifier is never deployed, so neither is included:
    re-calibrating a width's BN keeps the family, any change to shared weights changes it.
    """
    shared = {
        f"{name}.{pname}": p
        for name, module in net.named_modules()
        if isinstance(module, SwitchableConv2d | SwitchableLinear)
        for pname, p in module.named_parameters(recurse=False)
    }
    return tensor_digest(shared)[:16]


def save(net: SwitchableNet, path: str | os.PathLike, *, force: bool = True, **metadata: Any) -> Path:
    """Write ``net`` atomically; extra keyword ``metadata`` (JSON-able) is kept under ``extra``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    header = {
        **CHECKPOINT.header(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": net.config.to_dict(),
        "family_id": family_id(net),
        "content_sha256": tensor_digest(tensors),
        "extra": metadata,
    }
    header["header_sha256"] = header_digest(header)
    data = st_save(tensors, metadata={METADATA_KEY: json.dumps(header)})
    return write_bytes(path, data, force=force)


def _sniff_foreign(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK\x03\x04"):
        return " It looks like a torch.save() zip/pickle file, which sfsc-deploy never unpickles"
    if head[:1] == b"\x80":
        return " It looks like a Python pickle, which sfsc-deploy never loads (it can run code)"
    return ""


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's metadata, validated, without loading the tensors."""
    path = Path(path)
    if not path.exists():
        raise SfscError(
            f"checkpoint {path} not found; check the path or create one with "
            f"`sfsc-deploy init` / `sfsc-deploy train`"
        )
    if path.is_dir():
        raise SfscError(f"{path} is a directory, not a checkpoint file; pass the .safetensors file")
    if path.stat().st_size < 8:
        raise SfscError(f"checkpoint {path} is empty or truncated; re-create or re-download it")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises several types for bad headers
        raise SfscError(
            f"{path} is not a readable safetensors checkpoint (truncated, corrupt or another "
            f"format: {str(exc).splitlines()[0][:120]}).{_sniff_foreign(path)}; "
            f"re-create it with sfsc-deploy or convert it to safetensors"
        ) from None
    if METADATA_KEY not in meta:
        raise SfscError(
            f"{path} is a safetensors file but not an sfsc-deploy checkpoint (no "
            f"'{METADATA_KEY}' metadata); create one with `sfsc-deploy init` or `train`"
        )
    try:
        header = json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError:
        raise SfscError(f"{path} has damaged sfsc-deploy metadata; re-create the checkpoint") from None
    header = dict(CHECKPOINT.check(header, path))
    for key, kind in (("content_sha256", str), ("family_id", str), ("config", dict), ("extra", dict)):
        if not isinstance(header.get(key), kind):
            raise SfscError(f"{path} has a damaged header ({key} missing or mistyped); re-create it")
    # format 2 on: the header is covered too (a flipped byte in the stored mean would otherwise
    # change every feature and still pass); format 1 files predate the header digest
    if header["format_version"] >= 2 and header.get("header_sha256") != header_digest(header):
        raise SfscError(
            f"{path} is corrupt: header checksum mismatch (its metadata changed after it was "
            f"written); re-create or re-download it"
        )
    return header


def header_digest(header: dict[str, Any]) -> str:
    """sha256 of the header's canonical JSON, without the digest itself."""
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def read_config(path: str | os.PathLike, header: dict[str, Any] | None = None) -> NetConfig:
    """The network config of a checkpoint, without loading its tensors."""
    header = header or read_header(path)
    try:
        return NetConfig.from_dict(header["config"])
    except Exception as exc:  # missing or mistyped fields, values out of bounds
        raise SfscError(
            f"{path} has an invalid network config ({str(exc).splitlines()[0][:160]}); re-create it"
        ) from None


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> SwitchableNet:
    """Rebuild the switchable network from a checkpoint, verifying every tensor's hash."""
    path = Path(path)
    header = read_header(path)
    config = read_config(path, header)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception:
        raise SfscError(
            f"{path} is truncated or corrupt (tensor data unreadable); re-create or re-download it"
        ) from None
    if tensor_digest(tensors) != header["content_sha256"]:
        raise SfscError(
            f"{path} is corrupt: tensor checksum mismatch (the file changed after it "
            f"was written); re-create or re-download it"
        )
    net = build_from_config(config)
    # checkpoints written before the evidential logit offset existed keep its initial value
    tensors.setdefault(TRAINING_ONLY_DEFAULT, net.state_dict()[TRAINING_ONLY_DEFAULT])
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise SfscError(
            f"{path} does not match its own config ({str(exc).splitlines()[0]}); "
            f"it was edited or written by an incompatible version"
        ) from None
    net.eval()
    return net.to(device)


def create(
    config: NetConfig,
    path: str | os.PathLike,
    *,
    seed: int = 0,
    force: bool = False,
    init: str | PretrainedInit | None = None,
) -> SwitchableNet:
    """Write a freshly initialised network (seeded), to try the pipeline before training.

    Its BatchNorm statistics are estimated from random images at every width, so its eval-mode
    features neither vanish nor explode and every width exports and passes parity. With ``init``
    (``imagenet:PATH``, models.pretrained) the backbone is ImageNet's instead, its BatchNorms
    (statistics too) the leading slices of ImageNet's at every width; the head stays fresh.
    """
    from exporters.files import check_overwrite
    from sfsc_deploy.models.calibration import fresh_statistics
    from sfsc_deploy.models.pretrained import PretrainedInit

    init = PretrainedInit(init) if isinstance(init, str) else init
    if init is not None:
        init.check(config.arch, config.options)
    check_overwrite(path, force)
    torch.manual_seed(seed)
    net = build_from_config(config)
    if init is None:
        fresh_statistics(net, seed=seed)
    else:
        init.apply(net)
    extra = {"init": init.spec} if init is not None else {}
    save(net.eval(), path, force=force, initialised_only=True, seed=seed, **extra)
    return net
