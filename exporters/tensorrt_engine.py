"""TensorRT 10: build an engine from the exported ONNX, save it with a JSON sidecar, run it by name.

Optional: ``pip install "sfsc-deploy[tensorrt]"`` on a machine with an NVIDIA GPU. Device memory is
handled through torch's CUDA tensors, so no pycuda/cuda-python dependency is needed.
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

PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_SUFFIX = ".json"


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return (
            'TensorRT is not installed; pip install "sfsc-deploy[tensorrt]" on a machine with an NVIDIA GPU'
        )
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


def _calibrator(trt: Any, images: np.ndarray, batch: int, cache: Path | None):
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        """Feeds graph-ready calibration inputs from GPU memory, one batch per call."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data = torch.from_numpy(np.ascontiguousarray(images))
            self.batch, self.index, self.current = batch, 0, None

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index + self.batch > len(self.data):
                return None
            self.current = self.data[self.index : self.index + self.batch].cuda().contiguous()
            self.index += self.batch
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.exists() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                with atomic_path(cache) as tmp:
                    tmp.write_bytes(bytes(data))

    return Calibrator()


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    options: EngineOptions,
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Parse, build, serialise; return (and write beside the engine) the sidecar description."""
    trt = require_tensorrt()
    import torch

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors[:200]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    shape = tuple(network.get_input(0).shape)[1:]
    profile = builder.create_optimization_profile()
    lo, opt, hi = options.batch
    profile.set_shape(INPUT, (lo, *shape), (opt, *shape), (hi, *shape))
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        if calibration is None or len(calibration) < opt:
            raise UserError(f"int8 TensorRT needs at least {opt} calibration images; pass --data")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, calibration, opt, None)
        config.set_calibration_profile(profile)
    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path and cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT failed to build an engine from {onnx_path}; see its log above")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    major, minor = torch.cuda.get_device_capability()
    sidecar = {
        **read_metadata(onnx_path),
        "format": "tensorrt",
        "tensorrt_version": trt.__version__,
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": f"{major}.{minor}",
        "precision": options.precision,
        "batch_profile": list(options.batch),
        "workspace_mb": options.workspace_mb,
        "source_onnx_sha256": file_sha256(onnx_path),
    }
    write_text(sidecar_path(engine_path), json_text(sidecar))
    return sidecar


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
        self.metadata = json.loads(side.read_text())
        if self.metadata.get("gpu") != torch.cuda.get_device_name():
            raise UserError(
                f"{self.path} was built for {self.metadata.get('gpu')}, this GPU is "
                f"{torch.cuda.get_device_name()}; rebuild the engine on the target device"
            )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise UserError(f"TensorRT cannot deserialise {self.path}; rebuild it with this TensorRT version")
        self.context = self.engine.create_execution_context()
        self.input_uint8 = self.engine.get_tensor_dtype(INPUT) == trt.DataType.UINT8
        self.max_batch = int(self.metadata["batch_profile"][2])
        self.input_shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(INPUT))
        self.output_shape = tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(OUTPUT))
        self._torch = torch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(images)).cuda()
        self.context.set_input_shape(INPUT, tuple(x.shape))
        out_shape = tuple(self.context.get_tensor_shape(OUTPUT))
        out = torch.empty(out_shape, dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(INPUT, int(x.data_ptr()))
        self.context.set_tensor_address(OUTPUT, int(out.data_ptr()))
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise UserError(f"TensorRT failed to execute {self.path}")
        stream.synchronize()
        return out.cpu().numpy()
