"""The one device resolver and the mixed-precision helpers (sfsc_deploy.io.device)."""

import warnings

import pytest
import torch

from sfsc_deploy.errors import SfscError
from sfsc_deploy.io import device as dev


@pytest.mark.parametrize(
    "name, expected", [("auto", "auto"), (" CPU ", "cpu"), ("cuda", "cuda"), ("Cuda:12", "cuda:12")]
)
def test_device_spellings(name, expected):
    assert dev.check_device(name) == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:-1", "cuda:0,1", "cpu:0", "mps", "", None, 0])
def test_a_malformed_device_is_one_line(name):
    with pytest.raises(SfscError, match=r"--device .* is not a device; use one of auto \| cpu \| cuda"):
        dev.check_device(name)


def test_auto_picks_cuda_only_when_torch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto") == torch.device("cpu")
    assert dev.resolve_device() == torch.device("cpu")  # auto is the default
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("auto") == torch.device("cuda")
    assert dev.resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(SfscError, match=f"--device {name}: PyTorch sees no CUDA GPU here.*--device cpu"):
            dev.resolve_device(name)


def test_a_gpu_index_this_machine_lacks_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert dev.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(SfscError, match="--device cuda:2: this machine has 2 CUDA GPU.*cuda:0 to cuda:1"):
        dev.resolve_device("cuda:2")


def test_amp_on_the_cpu_and_the_fp16_scaler():
    cpu = torch.device("cpu")
    for amp in dev.AMP_MODES:
        dev.check_amp(cpu, amp)  # this torch autocasts both dtypes on the CPU
    assert dev.grad_scaler(cpu, "off") is None and dev.grad_scaler(cpu, "bf16") is None
    assert isinstance(dev.grad_scaler(cpu, "fp16"), torch.amp.GradScaler)
    with dev.autocast(cpu, "off"):
        assert not torch.is_autocast_enabled("cpu")
    for amp, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with dev.autocast(cpu, amp):
            assert torch.is_autocast_enabled("cpu")
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    with pytest.raises(SfscError, match="--amp 'fp8' is not known; choose one of: off, bf16, fp16"):
        dev.check_amp(cpu, "fp8")


def test_an_autocast_torch_cannot_do_is_one_line_not_a_silent_fp32_run(monkeypatch):
    """torch warns and disables autocast for a dtype a device lacks; that must not train in fp32."""
    real = torch.autocast

    class Unsupported(real):
        def __init__(self, *args, **kwargs):
            warnings.warn("In CPU autocast, but the target dtype is not supported.", stacklevel=2)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", Unsupported)
    with pytest.raises(SfscError, match="--amp fp16 on cpu is not supported by torch .*target dtype"):
        dev.check_amp(torch.device("cpu"), "fp16")
    dev.check_amp(torch.device("cpu"), "off")


def test_bf16_on_a_gpu_without_it_names_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(SfscError, match="no bfloat16 support; use --amp fp16"):
        dev.check_amp(torch.device("cuda"), "bf16")


def test_channels_last_training_on_the_cpu_avoids_onednn_and_restores_it():
    cpu = torch.device("cpu")
    assert torch.backends.mkldnn.enabled
    with dev.training_kernels(cpu, channels_last=False):
        assert torch.backends.mkldnn.enabled
    with dev.training_kernels(torch.device("cuda"), channels_last=True):
        assert torch.backends.mkldnn.enabled
    with pytest.raises(KeyError), dev.training_kernels(cpu, channels_last=True):
        assert not torch.backends.mkldnn.enabled
        raise KeyError
    assert torch.backends.mkldnn.enabled
    assert dev.memory_format(True) == torch.channels_last
    assert dev.memory_format(False) == torch.contiguous_format
