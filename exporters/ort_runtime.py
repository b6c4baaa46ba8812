"""Run an exported ONNX model with onnxruntime, feeding it the input its metadata says it expects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import UserError
from .runtime import check_input_dtype


def check_external_data(path: Path) -> None:
    """Refuse a model whose external tensor data lies outside its own folder (or is missing):
    a model file must not make the loader read arbitrary files such as ../../etc/passwd."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise UserError(f"{path} is not a readable ONNX model (truncated or corrupt); re-export it") from None
    folder = path.resolve().parent
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not target.is_relative_to(folder):
            raise UserError(
                f"{path} points tensor {tensor.name!r} at {location!r}, outside its folder; refusing to "
                "load it — re-export the model or keep its data file beside it"
            )
        if not target.is_file():
            raise UserError(f"{path} needs its external data file {location!r}; copy it beside the model")


class OrtModel:
    """An onnxruntime session plus the model's own description (its ``metadata_props``): a Runner."""

    runtime = "onnx"
    max_batch = None

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        allow_fallback: bool = False,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"ONNX model {self.path} not found; pass the .onnx file written by export")
        check_external_data(self.path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # onnxruntime falls back to the CPU with only a warning when a provider is missing: an
        # unavailable provider is an error here unless the caller allows the fallback
        asked = providers or ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        usable = [p for p in asked if p in available] or ["CPUExecutionProvider"]

        def missing(running: str) -> UserError:
            return UserError(
                f"onnxruntime cannot run {asked[0]} here (this build offers {', '.join(available)}); "
                f"install the onnxruntime build that has it, or pass --allow-fallback to run on {running}"
            )

        if usable[0] != asked[0] and not allow_fallback:
            raise missing(usable[0])
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=usable)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(exc).strip().splitlines()[0][:160]
            raise UserError(f"onnxruntime cannot load {self.path} ({first}); re-export it") from None
        self.providers = self.session.get_providers()  # what runs it: a provider may fail to start
        if self.providers[0] != asked[0] and not allow_fallback:
            raise missing(self.providers[0])
        try:
            self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError:
            raise UserError(f"{self.path} has damaged metadata (not UTF-8 text); re-export it") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs or inputs[0].type not in ("tensor(uint8)", "tensor(float)"):
            raise UserError(
                f"{self.path} takes {len(inputs)} input(s) ({', '.join(i.type for i in inputs) or 'none'}) "
                f"and gives {len(outputs)} output(s); an sfsc-deploy model takes one uint8 or float image "
                "tensor and gives features — re-export it"
            )
        inp = inputs[0]
        self.input_name = inp.name
        self.input_uint8 = inp.type == "tensor(uint8)"
        # static sizes as ints, dynamic ones as None: checked against the metadata by the caller
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.output_shape = tuple(d if isinstance(d, int) else None for d in outputs[0].shape)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        check_input_dtype(self, images)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})[0]
