"""Evaluate a training run (or one checkpoint) on a dataset's query/gallery: the N×N matrix.

Works the same for SFSC (one network serving every width) and the baselines (one network per
width), through the run directory's ``networks.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from exporters.files import check_overwrite
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.records import ReidSplits
from sfsc_deploy.errors import SfscError
from sfsc_deploy.evaluation.features import extract_features
from sfsc_deploy.evaluation.matrix import CompatibilityMatrix, compatibility_matrix
from sfsc_deploy.evaluation.report import matrix_report_paths, write_matrix_report
from sfsc_deploy.io.device import DEFAULT_DEVICE, resolve_device
from sfsc_deploy.models import checkpoint
from sfsc_deploy.models.networks import read_networks
from sfsc_deploy.train import distributed


def evaluate_run(
    model_path: str | Path,
    splits: ReidSplits,
    out_dir: str | Path | None = None,
    *,
    batch_size: int = 256,
    flip: bool = False,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    force: bool = True,
    device: str = DEFAULT_DEVICE,
) -> CompatibilityMatrix:
    """``force=False`` refuses to replace an earlier report in ``out_dir`` (checked before any work).

    The networks run on ``device`` (``auto``: CUDA when available); features come back to the CPU.
    Started by torchrun (WORLD_SIZE > 1 in the environment), or in a process group already joined,
    every process runs this with the same arguments: each extracts its shard of the images (NCCL on
    CUDA, each rank on ``cuda:LOCAL_RANK``; gloo on the CPU), every rank returns the whole matrix, and
    rank 0 alone writes the report.
    """
    if out_dir is not None:
        for path in matrix_report_paths(out_dir).values():
            check_overwrite(path, force, inputs=[model_path])
    resolve_device(device)  # a wrong --device is one line before any process group is joined
    with distributed.joined(device) as world:
        return _evaluate_run(
            model_path,
            splits,
            out_dir,
            batch_size=batch_size,
            flip=flip,
            progress=progress and world.main,
            extra=extra,
            force=force,
            device=resolve_device(distributed.device_name(device, world)),
            main=world.main,
        )


def _evaluate_run(
    model_path: str | Path,
    splits: ReidSplits,
    out_dir: str | Path | None,
    *,
    batch_size: int,
    flip: bool,
    progress: bool,
    extra: dict[str, Any] | None,
    force: bool,
    device: torch.device,
    main: bool,
) -> CompatibilityMatrix:
    method, networks = read_networks(model_path)
    loaded = {path: checkpoint.load(path, device) for path in sorted(set(networks.values()))}
    options = {
        (n.config.options.input_size, n.config.options.mean, n.config.options.std) for n in loaded.values()
    }
    if len(options) != 1:
        raise SfscError(
            f"the networks of {model_path} use different input sizes or normalisation; "
            f"evaluate them separately"
        )
    size, mean, std = options.pop()
    query = build_bank(splits.query, size, split="query", progress=progress)
    gallery = build_bank(splits.gallery, size, split="gallery", progress=progress)
    qf: dict[float, torch.Tensor] = {}
    gf: dict[float, torch.Tensor] = {}
    for width, path in sorted(networks.items()):
        net = loaded[path]
        with net.at_width(width):
            kwargs = {"batch_size": batch_size, "flip": flip, "progress": progress}
            qf[width] = extract_features(
                net, query.images, mean, std, description=f"query {width:g}", **kwargs
            )
            gf[width] = extract_features(
                net, gallery.images, mean, std, description=f"gallery {width:g}", **kwargs
            )
    matrix = compatibility_matrix(qf, gf, query.pids, gallery.pids, query.camids, gallery.camids)
    if out_dir is not None and main:  # rank 0 writes
        info = {
            "method": method,
            "model": str(model_path),
            "dataset": splits.name,
            "num_query": len(query),
            "num_gallery": len(gallery),
            **(extra or {}),
        }
        write_matrix_report(
            matrix, out_dir, title=f"{method} on {splits.name}", extra=info, force=force, inputs=[model_path]
        )
    return matrix
