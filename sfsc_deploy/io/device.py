"""Where PyTorch work runs (``--device``) and in which precision training autocasts (``--amp``).

One resolver for every command that runs the PyTorch model (``train``, ``eval``, ``extract``,
``slice --calibrate``). ``auto`` is CUDA when ``torch.cuda.is_available()``, else the CPU. Only the
spelling is checked without torch (``check_device``, for ``TrainConfig`` and the command line, which
start torch-free); ``resolve_device`` asks torch whether the device exists. Either answers a bad
value with one line naming the fix.

Mixed precision is for training only: ``torch.autocast`` around the network's forward passes, the
losses, per-task gradients, Gram matrix and projection in float32 (``train.trainer``). ``fp16``
needs loss scaling (``torch.amp.GradScaler``); ``bf16`` has float32's range and needs none. Whether
this torch can autocast a dtype on a device is asked of torch itself (``check_amp``): the CPU
autocasts both in current torch, so the fp16 path with its scaler runs in the CPU tests too.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sfsc_deploy.errors import SfscError

if TYPE_CHECKING:
    import torch

DEFAULT_DEVICE = "auto"
DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"
AMP_MODES = ("off", "bf16", "fp16")
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)")


def check_device(name: str) -> str:
    """The device's spelling, checked without torch: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    text = name.strip().lower() if isinstance(name, str) else ""
    if not _DEVICE.fullmatch(text):
        raise SfscError(f"--device {name!r} is not a device; use one of {DEVICE_CHOICES}")
    return text


def resolve_device(name: str = DEFAULT_DEVICE) -> torch.device:
    """The ``torch.device`` for ``name``; ``cuda`` without a usable GPU is one line, not a crash later."""
    import torch

    text = check_device(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SfscError(
            f"--device {text}: PyTorch sees no CUDA GPU here (torch {torch.__version__}, {build}); "
            f"use --device cpu or --device auto"
        )
    device = torch.device(text)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise SfscError(
            f"--device {text}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
            f"pick one of them"
        )
    return device


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of an ``--amp`` mode (None for ``off``)."""
    import torch

    if amp not in AMP_MODES:
        raise SfscError(f"--amp {amp!r} is not known; choose one of: {', '.join(AMP_MODES)}")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def check_amp(device: torch.device, amp: str) -> None:
    """Refuse, before any work, an ``--amp`` mode this torch cannot autocast on ``device``."""
    import torch

    dtype = amp_dtype(amp)
    if dtype is None:
        return
    reason = None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        reason = "this GPU has no bfloat16 support; use --amp fp16"
    else:
        try:  # torch warns and silently disables autocast for a dtype it cannot use on a device
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with torch.autocast(device.type, dtype=dtype):
                    pass
        except (RuntimeError, UserWarning) as exc:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            reason += "; use --amp bf16 or --amp off"
    if reason is not None:
        raise SfscError(f"--amp {amp} on {device} is not supported by torch {torch.__version__}: {reason}")


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` on ``device``; a no-op context for ``off``."""
    import torch

    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler | None:
    """Loss scaling for fp16 (its 5-bit exponent underflows small gradients); None otherwise."""
    import torch

    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def memory_format(channels_last: bool) -> torch.memory_format:
    """NHWC (``channels_last``) or the default NCHW layout, for the model's 4-d tensors and its inputs."""
    import torch

    return torch.channels_last if channels_last else torch.contiguous_format


@contextlib.contextmanager
def training_kernels(device: torch.device, channels_last: bool) -> Iterator[None]:
    """The convolution kernels a training step may use.

    On the CPU, oneDNN's NHWC 1×1 stride-2 weight gradient with fewer input channels than its
    channel block (8 on AVX2) writes past its workspace (uxlfoundation/oneDNN#6035, open; torch 2.13:
    heap corruption here, wrong gradients elsewhere) — a narrow width's downsample conv is exactly
    that. So a channels_last step on the CPU runs PyTorch's own kernels: correct, slower, there to
    test the path; NHWC is for CUDA. Every other case is unchanged.
    """
    import torch

    if not (channels_last and device.type == "cpu"):
        yield
        return
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled
