"""Export sliced sub-models per platform tier, prove each against PyTorch, and write a manifest.

Everything goes into a temporary directory that replaces ``out_dir`` only when every artifact
passed its parity check, so a failed export never leaves a file that looks deployable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from exporters.files import atomic_dir, check_output_dir, file_sha256, json_text
from exporters.metadata import ModelInfo
from exporters.parity import Parity
from sfsc_deploy import __version__
from sfsc_deploy.deploy.settings import CALIBRATION_IMAGES, PARITY_IMAGES, ExportSettings
from sfsc_deploy.deploy.tiers import Tier
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.headers import MANIFEST as MANIFEST_FORMAT
from sfsc_deploy.models import checkpoint
from sfsc_deploy.retrieval.extractors import TorchExtractor, open_extractor

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ExportImages:
    """Graph-independent uint8 images: ``calibration`` for int8, ``parity`` for every check."""

    calibration: torch.Tensor
    parity: torch.Tensor
    source: str


@dataclass(frozen=True)
class Companion:
    """A file an artifact cannot run without, beside it: an OpenVINO IR's ``.bin`` weights, a
    TensorRT engine's sidecar and source ONNX."""

    file: str
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Companion:
        name = str(data["file"])
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"companion file {name!r} is not a file name in the export folder")
        return cls(name, str(data["sha256"]), int(data["bytes"]))


@dataclass
class Artifact:
    """One exported file of the manifest: what it is, its hash, the parity it passed, and the
    files it needs beside it (``companions``)."""

    file: str
    tier: str
    width: float
    format: str
    precision: str
    sha256: str
    bytes: int
    info: ModelInfo
    parity: Parity
    parity_images_from: str
    tier_settings: Tier
    companions: list[Companion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "tier": self.tier,
            "width": self.width,
            "format": self.format,
            "precision": self.precision,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "info": self.info.to_dict(),
            "parity": {**self.parity.to_dict(), "images_from": self.parity_images_from},
            "tier_settings": self.tier_settings.to_dict(),
            "companions": [c.to_dict() for c in self.companions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        info = dict(data["info"])
        for key in ("input_size", "mean", "std"):
            info[key] = tuple(info[key])
        parity = dict(data["parity"])
        source = parity.pop("images_from", "")
        return cls(
            file=str(data["file"]),
            tier=str(data["tier"]),
            width=float(data["width"]),
            format=str(data["format"]),
            precision=str(data["precision"]),
            sha256=str(data["sha256"]),
            bytes=int(data["bytes"]),
            info=ModelInfo(**info),
            parity=Parity.from_dict(parity),
            parity_images_from=source,
            tier_settings=Tier(**data["tier_settings"]),
            companions=[Companion.from_dict(c) for c in data.get("companions", [])],  # older manifests: none
        )


@dataclass
class Manifest:
    """``manifest.json`` of an export folder: the source checkpoint and every artifact."""

    checkpoint: str
    checkpoint_sha256: str
    family_id: str
    arch: str
    feature_dim: int
    artifacts: list[Artifact]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {
            **MANIFEST_FORMAT.header(),
            "created": self.created,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "family_id": self.family_id,
            "arch": self.arch,
            "feature_dim": self.feature_dim,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Manifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise SfscError(f"{folder} holds no {MANIFEST}; pass the --out of `sfsc-deploy export`")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        MANIFEST_FORMAT.check(data, path)
        try:
            return cls(
                checkpoint=str(data["checkpoint"]),
                checkpoint_sha256=str(data["checkpoint_sha256"]),
                family_id=str(data["family_id"]),
                arch=str(data["arch"]),
                feature_dim=int(data["feature_dim"]),
                artifacts=[Artifact.from_dict(a) for a in data["artifacts"]],
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SfscError(f"{path} is damaged ({exc}); {MANIFEST_FORMAT.fix}") from None

    def files(self, folder: str | os.PathLike) -> list[Path]:
        """The artifact of every tier: what a runtime opens (an IR's .xml, not its .bin)."""
        return [Path(folder) / a.file for a in self.artifacts]

    def all_files(self, folder: str | os.PathLike) -> list[Path]:
        """Every file the export consists of: the artifacts and their companions."""
        return [Path(folder) / n for a in self.artifacts for n in (a.file, *(c.file for c in a.companions))]


def default_images(
    splits, size: tuple[int, int], calibration: int = CALIBRATION_IMAGES, parity: int = PARITY_IMAGES
) -> ExportImages:
    """Training images for int8 calibration and, disjoint from them, for every parity check."""
    from sfsc_deploy.data.sample import sample_images

    if calibration < 1 or parity < 1:
        raise SfscError("--calibration-images and --parity-images must be >= 1")

    return ExportImages(
        calibration=sample_images(splits, size, calibration, seed=0),
        parity=sample_images(splits, size, parity, seed=0, skip=calibration),
        source=splits.name,
    )


def _export_one(
    net,
    tier: Tier,
    folder: Path,
    images: ExportImages,
    settings: ExportSettings,
    source_sha: str,
    console: Console,
) -> Artifact:
    from exporters.graph import DeployGraph, graph_inputs
    from exporters.onnx_export import OnnxOptions, save_onnx, to_onnx
    from exporters.parity import compare

    if tier.width not in net.config.all_widths:
        raise SfscError(
            f"tier {tier.name!r}: width {tier.width:g} has no BatchNorm in this checkpoint "
            f"(widths {', '.join(f'{w:g}' for w in net.config.all_widths)}); pick one or calibrate it"
        )
    if tier.format == "tensorrt":
        from exporters.tensorrt_engine import require_tensorrt

        require_tensorrt()  # fail before any work, with the reason
    reference = TorchExtractor(net, tier.width, normalize=tier.normalize)
    opts = net.config.options
    info = ModelInfo(
        **{**reference.info.to_dict(), "bake_preprocess": tier.bake_preprocess, "precision": tier.precision}
    )
    from sfsc_deploy.perf.complexity import count_macs, count_params

    twin = reference.graph.model
    meta = {
        **info.metadata(),
        "params": count_params(twin),
        "macs": count_macs(twin, tuple(opts.input_size)),
        "arch": net.config.arch,
        "tier": tier.name,
        "source_checkpoint_sha256": source_sha,
        "tool_version": __version__,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    graph = DeployGraph(
        reference.graph.model,
        opts.mean,
        opts.std,
        normalize=tier.normalize,
        bake_preprocess=tier.bake_preprocess,
    )
    fp32 = to_onnx(
        graph,
        tuple(opts.input_size),
        {**meta, "precision": "fp32"},
        OnnxOptions(opset=settings.opset, simplify=settings.simplify),
    )

    def inputs(x: torch.Tensor) -> np.ndarray:
        return graph_inputs(x, opts.mean, opts.std, bake_preprocess=tier.bake_preprocess).numpy()

    stem = f"{tier.name}_w{tier.width:g}_{tier.precision}"
    expected = reference.features(images.parity)
    companions: list[Path] = []  # files the artifact needs beside it (an IR's weights, a sidecar)
    # one model per precision for every runtime: the int8 Q/DQ model, the fp16 model (TensorRT)
    model = fp32
    if tier.precision == "int8":
        from exporters.quantize import Int8Options, quantize_int8

        calibration = inputs(images.calibration)
        model = quantize_int8(fp32, calibration, Int8Options(method=settings.int8_calibration)).model
    elif tier.precision == "fp16":
        from exporters.half import to_fp16

        model = to_fp16(fp32)
    if tier.format == "onnx":
        path = save_onnx(model, folder / f"{stem}.onnx")
    elif tier.format == "openvino":  # OpenVINO converts the very ONNX the onnx tier would ship
        from exporters.openvino_runtime import to_openvino, weights_path

        path = folder / f"{stem}.xml"
        to_openvino(model, path)
        companions.append(weights_path(path))
    else:
        from exporters.tensorrt_engine import EngineOptions, build_engine, sidecar_path

        onnx_path = save_onnx(model, folder / f"{stem}.source.onnx")
        # the engine's source is checked against PyTorch first (here, on the CPU), then the engine
        source = compare(expected, open_extractor(onnx_path).features(images.parity), tier.precision)
        console.print(f"[bold]{tier.name}[/] source ONNX (onnxruntime): {source.summary()}")
        if not source.passed:
            raise SfscError(f"tier {tier.name!r}: its ONNX source failed parity: {_parity_hint(source)}")
        path = folder / f"{stem}.engine"
        build_engine(
            onnx_path,
            path,
            EngineOptions(tier.precision, tier.batch, settings.workspace_mb, settings.timing_cache),
        )
        companions += [sidecar_path(path), onnx_path]
    produced = open_extractor(path).features(images.parity)
    parity = compare(expected, produced, tier.precision)
    console.print(
        f"[bold]{tier.name}[/] width {tier.width:g} {tier.format} {tier.precision}: {parity.summary()}"
    )
    if not parity.passed:
        raise SfscError(
            f"tier {tier.name!r} failed its {tier.precision} parity check: {_parity_hint(parity)}"
        )
    if tier.precision == "int8":
        from exporters.onnx_export import read_metadata
        from exporters.parity import calibration_gap

        gap = calibration_gap(parity.mean_cosine, read_metadata(model))
        if gap:
            raise SfscError(f"tier {tier.name!r} failed its int8 parity check: {gap}; nothing was written")
    return Artifact(
        file=path.name,
        tier=tier.name,
        width=tier.width,
        format=tier.format,
        precision=tier.precision,
        sha256=file_sha256(path),
        bytes=path.stat().st_size,
        info=replace(info, source=path.name),
        parity=parity,
        parity_images_from=images.source,
        tier_settings=tier,
        companions=[Companion(c.name, file_sha256(c), c.stat().st_size) for c in companions],
    )


def _parity_hint(parity) -> str:
    """What went wrong and what to do, true for the case at hand."""
    if parity.degenerate:
        return (
            f"{parity.degenerate}; nothing was written — train the model, or re-estimate its BatchNorm "
            f"(`sfsc-deploy slice --calibrate IMAGES`)"
        )
    figures = f"min cos {parity.min_cosine:.5f}, max abs {parity.max_abs:.2e}; nothing was written"
    if parity.precision == "int8":
        return f"{figures} — give it more --calibration-images, or use fp32 for this tier"
    if parity.precision == "fp16":
        return f"{figures} — use fp32 for this tier"
    return (
        f"{figures} — the fp32 graph disagrees with PyTorch, which is a bug: report it with the "
        f"checkpoint and the tier (--debug shows the details)"
    )


def _require_runtimes(tiers: list[Tier]) -> None:
    """A tier whose runtime is missing here fails the export before any tier is built."""
    formats = {t.format for t in tiers}
    if "openvino" in formats:
        from exporters.openvino_runtime import require_openvino

        require_openvino()
    if "tensorrt" in formats:
        from exporters.tensorrt_engine import require_tensorrt

        require_tensorrt()


def export_tiers(
    checkpoint_path: str | os.PathLike,
    tiers: list[Tier],
    out_dir: str | os.PathLike,
    images: ExportImages,
    *,
    settings: ExportSettings | None = None,
    force: bool = False,
    console: Console | None = None,
) -> Manifest:
    """Export every tier into ``out_dir`` (all or nothing) and return the manifest written there."""
    settings = settings or ExportSettings()
    console = console or Console(stderr=True, quiet=not settings.progress)
    if not tiers:
        raise SfscError("no tiers to export; pass --width or a --tiers file with at least one tier")
    _require_runtimes(tiers)
    check_output_dir(out_dir, force, inputs=[checkpoint_path])
    net = checkpoint.load(checkpoint_path)
    source_sha = file_sha256(checkpoint_path)
    with atomic_dir(out_dir, force=force, inputs=[checkpoint_path]) as tmp:
        manifest = Manifest(
            checkpoint=str(checkpoint_path),
            checkpoint_sha256=source_sha,
            family_id=checkpoint.family_id(net),
            arch=net.config.arch,
            feature_dim=net.config.feature_dim,
            artifacts=[_export_one(net, t, tmp, images, settings, source_sha, console) for t in tiers],
        )
        (tmp / MANIFEST).write_text(json_text(manifest.to_dict()))
    return manifest
