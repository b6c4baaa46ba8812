"""OpenVINO: convert an exported ONNX model (fp32, or the int8 Q/DQ one) to IR, and run the IR.

Optional: ``pip install "sfsc-deploy[openvino]"``; ``openvino`` is imported only when one of these
functions runs, so everything else works without it. The IR is a pair of files, ``<stem>.xml`` (the
graph) and ``<stem>.bin`` (the weights, kept in fp32: ``compress_to_fp16=False``), written
atomically as a pair: a failed conversion leaves neither. The model's sfsc-deploy description (the
ONNX ``metadata_props``, plus the OpenVINO version that converted it) travels *inside* the ``.xml``,
in its ``rt_info`` under ``sfsc_deploy``, so the IR describes itself as an ONNX model does and no
sidecar can go missing. The int8 Q/DQ ONNX converts as it is: OpenVINO's low-precision
transformations run its quantised convolutions in int8.

The runner compiles for one device (``CPU`` by default) with ``INFERENCE_PRECISION_HINT`` f32, so a
CPU that would otherwise run in bf16 (AMX, AVX-512 BF16) still gives fp32 features that pass the
fp32 parity check, and the ``LATENCY`` hint; ``threads`` sets ``INFERENCE_NUM_THREADS``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError
from .files import Inputs, atomic_path, check_overwrite, file_sha256
from .ort_runtime import check_external_data
from .runtime import check_input_dtype

INSTALL = 'pip install "sfsc-deploy[openvino]"'
SECTION = "sfsc_deploy"  # the rt_info section holding the metadata
SUFFIX = ".xml"
# rt_info keys become XML element names: refuse anything else rather than write an unreadable .xml
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_TEXT = re.compile(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$")  # characters XML 1.0 can hold
# virtual devices that pick or combine real ones; EXECUTION_DEVICES then says which really ran
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")


def openvino_unavailable() -> str | None:
    """Why OpenVINO cannot run here, or None when it can."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return f"OpenVINO is not installed; {INSTALL}"
    return None


def require_openvino(purpose: str = "use format openvino"):
    reason = openvino_unavailable()
    if reason:
        raise UserError(f"cannot {purpose}: {reason}")
    import openvino

    return openvino


def cpu_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI (AVX-VNNI, AVX512-VNNI or AMX), None where it cannot be told."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
    except OSError:
        return None
    if flags is None:
        return None
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def weights_path(xml_path: str | os.PathLike) -> Path:
    """The ``.bin`` an IR's ``.xml`` reads its weights from: same folder, same stem."""
    return Path(xml_path).with_suffix(".bin")


def _first_line(exc: BaseException) -> str:
    """OpenVINO's message without its source locations ("Exception from core.cpp:84:", "Check ...")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    text = (said or lines or [type(exc).__name__])[-1]
    return text.split(" Please check")[0][:160]


def _check_metadata(metadata: dict[str, str], source: str) -> None:
    for key, value in metadata.items():
        if not _KEY.match(key) or not isinstance(value, str) or not _TEXT.match(value):
            raise UserError(
                f"{source}: metadata entry {key!r} cannot be stored in OpenVINO rt_info (keys must be "
                "names, values text); fix the metadata and convert again"
            )


def _save_pair(ov: Any, model: Any, xml_path: Path, force: bool, inputs: Inputs) -> None:
    """``ov.save_model`` into a temporary folder beside the output, then both files renamed into
    place (weights first, graph last); any failure removes what this call wrote."""
    bin_path = weights_path(xml_path)
    check_overwrite(xml_path, force, inputs)  # both refused up front, before anything is written
    check_overwrite(bin_path, force, inputs)
    bin_done = False
    try:
        with atomic_path(xml_path, force, inputs) as tmp_xml:
            with atomic_path(bin_path, force, inputs) as tmp_bin:
                # named like atomic_path's temp files, so a killed writer's folder is swept next time
                with tempfile.TemporaryDirectory(
                    prefix=f".{xml_path.name}.{os.getpid()}.", suffix=".tmp", dir=xml_path.parent
                ) as work:
                    ov.save_model(model, str(Path(work) / "model.xml"), compress_to_fp16=False)
                    os.replace(Path(work) / "model.bin", tmp_bin)
                    os.replace(Path(work) / "model.xml", tmp_xml)
            bin_done = True
    except BaseException:
        if bin_done:  # the graph's rename failed after the weights' succeeded
            with contextlib.suppress(OSError):
                bin_path.unlink()
        raise


def to_openvino(
    onnx_model,
    xml_path: str | os.PathLike,
    *,
    force: bool = True,
    inputs: Inputs = (),
) -> dict[str, str]:
    """Convert ``onnx_model`` (an ``onnx.ModelProto`` or an .onnx path) to IR at ``xml_path``
    (+ its ``.bin``) and return the metadata written into the IR's rt_info."""
    import onnx

    from exporters.onnx_export import read_metadata

    ov = require_openvino("convert to OpenVINO IR")
    xml_path = Path(xml_path)
    if xml_path.suffix != SUFFIX:
        raise UserError(f"{xml_path}: an OpenVINO IR is written as NAME.xml (with NAME.bin beside it)")
    source = "the ONNX model" if isinstance(onnx_model, onnx.ModelProto) else str(onnx_model)
    with tempfile.TemporaryDirectory(prefix="sfsc-openvino-") as tmp:
        if isinstance(onnx_model, onnx.ModelProto):
            onnx_path = Path(tmp) / "model.onnx"
            onnx.save(onnx_model, str(onnx_path))
            extra = {}
        else:
            onnx_path = Path(onnx_model)
            if not onnx_path.is_file():
                raise UserError(f"ONNX model {onnx_path} not found; pass the .onnx file written by export")
            check_external_data(onnx_path)  # never let a model file make the converter read ../../x
            extra = {"source_onnx_sha256": file_sha256(onnx_path)}
        try:
            metadata = read_metadata(onnx_path)
        except Exception:
            raise UserError(
                f"{source} is not a readable ONNX model (truncated or corrupt); re-export it"
            ) from None
        metadata = {**metadata, **extra, "format": "openvino", "openvino_version": ov.get_version()}
        _check_metadata(metadata, source)
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as exc:  # OpenVINO raises its own conversion error types
            raise UserError(f"OpenVINO cannot convert {source} ({_first_line(exc)}); re-export it") from None
        for key, value in metadata.items():
            model.set_rt_info(value, [SECTION, key])
        _save_pair(ov, model, xml_path, force, inputs)  # while the source exists: weights may map it
    return metadata


def read_openvino_metadata(model: Any, source: str) -> dict[str, str]:
    """The sfsc-deploy description in an ``openvino.Model``'s rt_info; refused when missing or damaged."""
    fix = "convert the ONNX model again with sfsc-deploy (an openvino tier of `export`)"
    if not model.has_rt_info([SECTION]):
        raise UserError(f"{source} carries no sfsc-deploy metadata (rt_info {SECTION!r}); {fix}")
    try:
        entries = model.get_rt_info([SECTION]).astype(dict)
        metadata = {str(k): v.astype(str) for k, v in entries.items()}
    except Exception:
        raise UserError(f"{source} has damaged sfsc-deploy metadata (rt_info {SECTION!r}); {fix}") from None
    if not metadata:
        raise UserError(f"{source} has empty sfsc-deploy metadata (rt_info {SECTION!r}); {fix}")
    return metadata


def _dims(partial_shape: Any) -> tuple[int | None, ...]:
    if partial_shape.rank.is_dynamic:
        return ()
    return tuple(None if d.is_dynamic else d.get_length() for d in partial_shape)


class OvModel:
    """An OpenVINO IR compiled for one device, plus its own description (rt_info): a Runner."""

    runtime = "openvino"
    max_batch = None

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, device: str = "CPU") -> None:
        self.path = Path(path)
        ov = require_openvino(f"run {self.path.name}")
        if not self.path.is_file():
            raise UserError(f"OpenVINO model {self.path} not found; pass the .xml file written by export")
        weights = weights_path(self.path)
        if not weights.is_file():
            raise UserError(
                f"{self.path} needs its weights file {weights.name} beside it; copy it there or re-export"
            )
        core = ov.Core()
        available = list(core.available_devices)
        known = (
            device in available
            or any(d.startswith(f"{device}.") for d in available)
            or device.split(":")[0] in _VIRTUAL
        )
        if not known:
            raise UserError(
                f"OpenVINO has no device {device!r} here (available: {', '.join(available) or 'none'}); "
                "pass one of those"
            )
        try:
            model = core.read_model(model=str(self.path), weights=str(weights))
        except Exception as exc:
            raise UserError(
                f"{self.path} is not a readable OpenVINO IR ({_first_line(exc)}); re-export it"
            ) from None
        self.metadata = read_openvino_metadata(model, str(self.path))
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise UserError(
                f"{self.path} takes {len(model.inputs)} input(s) and gives {len(model.outputs)} output(s); "
                "an sfsc-deploy model takes one uint8 or float image tensor and gives features — re-export it"
            )
        kind = model.inputs[0].get_element_type()
        if kind not in (ov.Type.u8, ov.Type.f32):
            raise UserError(
                f"{self.path} takes {kind} input; an sfsc-deploy model takes one uint8 or float image "
                "tensor — re-export it"
            )
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(int(threads))
        try:
            supported = set(core.get_property(device, "SUPPORTED_PROPERTIES"))
        except Exception:  # a virtual device answers for the devices it picks
            supported = set(config)
        config = {k: v for k, v in config.items() if k in supported}
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise UserError(
                f"OpenVINO cannot compile {self.path} for {device} ({_first_line(exc)}); re-export it"
            ) from None
        try:
            ran = [str(d) for d in self.compiled.get_property("EXECUTION_DEVICES")]
        except Exception:
            ran = []
        self.device = device
        self.providers = ran or [device]  # what runs it (AUTO resolves to a real device)
        self.input_uint8 = kind == ov.Type.u8
        self.input_shape = _dims(self.compiled.input(0).get_partial_shape())
        self.output_shape = _dims(self.compiled.output(0).get_partial_shape())
        self._output = self.compiled.output(0)
        self._request = self.compiled.create_infer_request()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        check_input_dtype(self, images)
        shape = self.input_shape
        fits = images.ndim == len(shape) and all(
            s is None or s == g for s, g in zip(shape, images.shape, strict=True)
        )
        if not fits:
            shown = ["N" if s is None else s for s in shape]
            raise UserError(f"{self.path.name} takes input of shape {shown}, got {list(images.shape)}")
        result = self._request.infer({0: np.ascontiguousarray(images)})
        return np.array(result[self._output], dtype=np.float32)  # a copy: the next call reuses the buffer
