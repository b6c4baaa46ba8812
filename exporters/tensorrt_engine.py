"""TensorRT 10 and 11: build a strongly typed engine from an exported ONNX, save it with a JSON
sidecar, run it by name.

TensorRT 11 removed weakly typed networks and implicit quantisation (``BuilderFlag.FP16/INT8``,
calibrators). Every engine here is strongly typed on both versions, so the ONNX decides the types:
fp32 from the fp32 ONNX (TF32 cleared: fp32 means fp32), fp16 from ``exporters.half.to_fp16``,
int8 from the explicit Q/DQ model of ``exporters.quantize``. The attributes this module uses are
checked against the Python bindings of each supported version by ``tests/exporters/test_tensorrt_api.py``.

Optional: ``pip install "sfsc-deploy[tensorrt]"`` on a machine with an NVIDIA GPU. Device memory and
streams are torch's CUDA tensors and streams, so no pycuda/cuda-python dependency is needed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporters.onnx_export import INPUT, OUTPUT, read_metadata

from .errors import UserError
from .files import atomic_path, file_sha256, json_text, write_text
from .runtime import check_input_dtype

PRECISIONS = ("fp32", "fp16", "int8")
SUPPORTED_MAJOR = (10, 11)  # the tensorrt extra's bound in pyproject.toml
SIDECAR_SUFFIX = ".json"


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt
    except ImportError:
        return (
            'TensorRT is not installed; pip install "sfsc-deploy[tensorrt]" on a machine with an NVIDIA GPU'
        )
    major = int(str(tensorrt.__version__).split(".")[0])
    if major not in SUPPORTED_MAJOR:
        return f"TensorRT {tensorrt.__version__} is not supported; install TensorRT 10 or 11"
    import torch

    if not torch.cuda.is_available():
        return "TensorRT needs an NVIDIA GPU and CUDA-enabled torch; none is available here"
    return None


def require_tensorrt():
    reason = tensorrt_unavailable()
    if reason:
        raise UserError(f"cannot use --format tensorrt: {reason}")
    import tensorrt as trt

    return trt


@dataclass(frozen=True)
class EngineOptions:
    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 8, 32)  # optimisation profile min / opt / max
    workspace_mb: int = 1024
    timing_cache: str | None = None  # reused and updated across builds when given

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        lo, opt, hi = self.batch
        if not 1 <= lo <= opt <= hi:
            raise UserError(f"batch range {self.batch} must satisfy 1 <= min <= opt <= max")


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def check_source(metadata: dict[str, str], precision: str, path: Path) -> None:
    """A strongly typed build takes its types from the ONNX: it must already be in ``precision``."""
    declared = metadata.get("precision")
    if declared != precision:
        raise UserError(
            f"{path} is a {declared or 'undeclared'}-precision ONNX, the engine is asked for {precision}; "
            f"TensorRT builds strongly typed engines, so export the {precision} ONNX first "
            "(sfsc-deploy export does this per tier)"
        )


def _device() -> tuple[str, str]:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


def build_engine(
    onnx_path: str | os.PathLike, engine_path: str | os.PathLike, options: EngineOptions
) -> dict[str, Any]:
    """Parse, build, serialise; return (and write beside the engine) the sidecar description."""
    trt = require_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    metadata = read_metadata(onnx_path)
    check_source(metadata, options.precision, onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    # TF32 is on by default on Ampere and newer and rounds fp32 maths to a 10-bit mantissa (measured
    # 1.6e-4 to 7.8e-4 max abs rel, over the fp32 limit): the float layers of every engine stay fp32
    config.clear_flag(trt.BuilderFlag.TF32)
    shape = tuple(network.get_input(0).shape)[1:]
    profile = builder.create_optimization_profile()
    lo, opt, hi = options.batch
    profile.set_shape(INPUT, (lo, *shape), (opt, *shape), (hi, *shape))
    if config.add_optimization_profile(profile) < 0:
        raise UserError(f"TensorRT refused the batch profile {options.batch} for {onnx_path}")
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.exists() else b"")
    if not config.set_timing_cache(cache, False):
        raise UserError(f"the timing cache {cache_path} does not fit this TensorRT or GPU; delete it")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path}; see its log above")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    gpu, capability = _device()
    sidecar = {
        **metadata,
        "format": "tensorrt",
        "tensorrt_version": trt.__version__,
        "gpu": gpu,  # for the reader; compatibility is the version and compute capability
        "compute_capability": capability,
        "precision": options.precision,
        "batch_profile": list(options.batch),
        "workspace_mb": options.workspace_mb,
        "tf32": False,
        "source_onnx_sha256": file_sha256(onnx_path),
    }
    write_text(sidecar_path(engine_path), json_text(sidecar))
    return sidecar


def engine_mismatch(sidecar: dict[str, Any], version: str, capability: str) -> str | None:
    """Why an engine cannot run here: it is bound to its TensorRT version and compute capability."""
    if sidecar.get("tensorrt_version") != version:
        return f"was built with TensorRT {sidecar.get('tensorrt_version')}, this is TensorRT {version}"
    if sidecar.get("compute_capability") != capability:
        return (
            f"was built for compute capability {sidecar.get('compute_capability')} "
            f"({sidecar.get('gpu')}), this GPU has {capability}"
        )
    return None


class TrtModel:
    """Executes a serialised engine by tensor name (``images`` in, ``features`` out): a Runner."""

    runtime = "tensorrt"
    providers = ["tensorrt"]

    def __init__(self, engine_path: str | os.PathLike) -> None:
        trt = require_tensorrt()
        import torch

        self.path = Path(engine_path)
        side = sidecar_path(self.path)
        if not self.path.is_file() or not side.is_file():
            raise UserError(f"{self.path} needs its sidecar {side.name}; re-export the engine")
        try:
            self.metadata = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{side} is damaged; re-export the engine") from None
        why = engine_mismatch(self.metadata, trt.__version__, _device()[1])
        if why:
            raise UserError(f"{self.path} {why}; rebuild the engine on the target machine")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UserError(f"TensorRT cannot deserialise {self.path}; rebuild it with this TensorRT version")
        self.context = self.engine.create_execution_context()
        self.input_uint8 = self.engine.get_tensor_dtype(INPUT) == trt.DataType.UINT8
        self.max_batch = int(self.metadata["batch_profile"][2])
        self.min_batch = int(self.metadata["batch_profile"][0])
        self.input_shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(INPUT))
        self.output_shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(OUTPUT))
        numpy_type = np.dtype(trt.nptype(self.engine.get_tensor_dtype(OUTPUT)))
        self.output_dtype = torch.from_numpy(np.zeros(0, numpy_type)).dtype
        self.stream = torch.cuda.Stream()  # not the default stream: other CUDA work never serialises on it
        self._torch = torch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        torch = self._torch
        check_input_dtype(self, images)
        if not self.min_batch <= len(images) <= self.max_batch:
            raise UserError(
                f"{self.path.name} was built for batches of {self.min_batch} to {self.max_batch}, "
                f"got {len(images)}; rebuild it with a wider batch range in the tier"
            )
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(np.ascontiguousarray(images)).cuda(non_blocking=True)
            if not self.context.set_input_shape(INPUT, tuple(x.shape)):
                raise UserError(f"{self.path.name} refused input shape {tuple(x.shape)}")
            out = torch.empty(
                tuple(self.context.get_tensor_shape(OUTPUT)), dtype=self.output_dtype, device="cuda"
            )
            for name, tensor in ((INPUT, x), (OUTPUT, out)):
                if not self.context.set_tensor_address(name, int(tensor.data_ptr())):
                    raise UserError(f"TensorRT refused the address of {name!r} for {self.path.name}")
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise UserError(f"TensorRT failed to execute {self.path}")
            result = out.float().cpu()  # ordered on self.stream; .cpu() waits for it
        self.stream.synchronize()
        return result.numpy()
