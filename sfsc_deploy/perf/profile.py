"""Profile a device: export every trained width, time each here, and write the device's table."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from exporters.files import check_overwrite, file_sha256
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.perf.bench import artifact_target, bench_targets, device_description
from sfsc_deploy.perf.device_table import DeviceTable
from sfsc_deploy.perf.results import BenchSettings

PROFILE_RUNTIMES = ("onnx", "openvino")  # tier formats that run on this machine's CPU


def profile_device(
    checkpoint_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: BenchSettings,
    *,
    export_dir: str | os.PathLike | None = None,
    images=None,
    progress: bool = True,
    force: bool = False,
    runtime: str = "onnx",
) -> DeviceTable:
    """Export every trained width (fp32, in the tier format ``runtime``: onnx runs on onnxruntime,
    openvino on OpenVINO; reused from ``export_dir`` when it holds this checkpoint's export),
    benchmark each here, and write the device's latency table."""
    from sfsc_deploy.deploy.export import MANIFEST, ExportSettings, Manifest, default_images, export_tiers
    from sfsc_deploy.deploy.tiers import Tier

    if runtime not in PROFILE_RUNTIMES:
        raise SfscError(f"--runtime {runtime!r} must be one of {', '.join(PROFILE_RUNTIMES)}")
    if runtime == "openvino":
        from exporters.openvino_runtime import require_openvino

        require_openvino("profile with --runtime openvino")
    check_overwrite(out_path, force, inputs=[checkpoint_path, export_dir])
    net = checkpoint.load(checkpoint_path)
    sha = file_sha256(checkpoint_path)
    widths = net.config.all_widths
    with tempfile.TemporaryDirectory(prefix="sfsc-profile-") as tmp:
        folder = Path(export_dir) if export_dir else Path(tmp) / "export"
        manifest = Manifest.load(folder) if (folder / MANIFEST).exists() else None
        if manifest is None or manifest.checkpoint_sha256 != sha:
            if images is None:
                from sfsc_deploy.data import load_dataset

                images = default_images(load_dataset("synthetic"), net.config.options.input_size, 8, 8)
            tiers = [Tier("profile", w, format=runtime) for w in widths]
            manifest = export_tiers(
                checkpoint_path, tiers, folder, images, settings=ExportSettings(progress=progress), force=True
            )
        files = {
            a.width: folder / a.file
            for a in manifest.artifacts
            if a.format == runtime and a.precision == "fp32"
        }
        missing = [w for w in widths if w not in files]
        if missing:
            raise SfscError(
                f"{folder} has no fp32 {runtime} export for widths {missing}; drop --export-dir (or pass "
                "another) to re-export"
            )
        results = bench_targets(
            [artifact_target(files[w], settings.provider, settings.allow_fallback) for w in widths],
            settings,
            progress,
        )
    table = DeviceTable(
        device=device_description(),
        checkpoint=str(checkpoint_path),
        checkpoint_sha256=sha,
        family_id=checkpoint.family_id(net),
        settings=settings,
        entries=results,
    )
    table.save(out_path, force=force, inputs=[checkpoint_path, export_dir])
    return table
