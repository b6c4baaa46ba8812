"""Retrieval commands: index a split's features (extract), check an artifact against a gallery (verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from exporters.parity import TOLERANCES, tolerance_for
from sfsc_deploy.cli.options import (
    DataOpt,
    DeviceOpt,
    ForceOpt,
    FormatOpt,
    GalleryBlockOpt,
    IndexOpt,
    KOpt,
    NlistOpt,
    NprobeOpt,
    NprocOpt,
    PqBitsOpt,
    PqMOpt,
    QueryBlockOpt,
    RecallQueriesOpt,
    SearchSeedOpt,
    SynthSeedOpt,
    TrainSizeOpt,
    app,
    dataset,
    given,
    is_main_process,
    out,
    relaunch,
    search_settings,
    with_default,
)
from sfsc_deploy.retrieval.gallery import DTYPES, SPLITS
from sfsc_deploy.retrieval.shards import ShardSettings
from sfsc_deploy.retrieval.verify import RANKINGS, VerifySettings


def _per_precision(field: str) -> str:
    return ", ".join(f"{p} {getattr(t, field):g}" for p, t in TOLERANCES.items())


@app.command()
def extract(
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Gallery to write: a .npz file, or a folder of memory-mappable shards (any other name, "
            "or with --shard-size). Run again onto an unfinished folder to resume it.",
        ),
    ],
    model: Annotated[
        Path | None, typer.Option(help="Exported artifact (.onnx, .xml OpenVINO IR, or .engine).")
    ] = None,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Or a checkpoint (PyTorch).")
    ] = None,
    width: Annotated[float | None, typer.Option(help="Width of --checkpoint (default 1.0).")] = None,
    data: DataOpt = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    split: Annotated[str, typer.Option(help=" | ".join(SPLITS))] = SPLITS[0],
    dtype: Annotated[str, typer.Option(help=f"{' | '.join(DTYPES)} features in the file.")] = DTYPES[0],
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    threads: Annotated[
        int | None, typer.Option(help="Runtime threads (onnxruntime intra-op, OpenVINO inference).")
    ] = None,
    device: DeviceOpt = None,
    force: ForceOpt = False,
    nproc: NprocOpt = 1,
    shard_size: Annotated[
        int | None,
        typer.Option(
            help=with_default("Images per shard file of a gallery folder.", ShardSettings, "shard_size"),
            min=1,
        ),
    ] = None,
) -> None:
    """Features of one split (gallery by default) with ids, cameras, paths and the model's identity."""
    from exporters.files import check_overwrite
    from sfsc_deploy.io.device import DEFAULT_DEVICE, resolve_device
    from sfsc_deploy.retrieval.extractors import open_extractor
    from sfsc_deploy.retrieval.gallery import extract_gallery, save_gallery
    from sfsc_deploy.retrieval.shards import check_gallery_folder, extract_shards, is_gallery_folder
    from sfsc_deploy.train import distributed

    if nproc > 1:
        relaunch("extract", nproc)
        return  # rank 0 wrote the gallery and printed it
    inputs = [model, checkpoint_path, data]
    sharded = is_gallery_folder(out_path, shard_size)
    if sharded:
        check_gallery_folder(out_path, inputs)
    else:
        check_overwrite(out_path, force, inputs)
    torch_device = checkpoint_path is not None or device is not None
    if torch_device:  # a wrong --device is one line before any process group is joined
        resolve_device(device or DEFAULT_DEVICE)
    # under torchrun or --nproc: join the group (NCCL for a checkpoint on CUDA, else gloo), each rank
    # on its own GPU; an artifact runs where its runtime runs it
    with distributed.joined((device or DEFAULT_DEVICE) if torch_device else "cpu") as world:
        where = distributed.device_name(device or DEFAULT_DEVICE, world) if torch_device else None
        extractor = open_extractor(
            model, checkpoint=checkpoint_path, width=width, threads=threads, device=where
        )
        if sharded:  # every rank writes its own shards, rank 0 the manifest
            written = extract_shards(
                extractor,
                dataset(data, fmt, synthetic_seed),
                split,
                out_path,
                dtype=dtype,
                batch_size=batch_size,
                force=force,
                inputs=inputs,
                progress=True,
                **given(shard_size=shard_size),
            )
        else:
            gallery = extract_gallery(
                extractor,
                dataset(data, fmt, synthetic_seed),
                split,
                dtype=dtype,
                batch_size=batch_size,
                progress=True,
            )
    if not is_main_process():  # rank 0 writes and reports
        return
    info = extractor.info
    if sharded:
        kept = f", {written.kept} kept from an earlier run" if written.kept else ""
        out.print(
            f"wrote {out_path}: {written.count} × {written.dim} {dtype} features in {written.shards} "
            f"shards{kept} ({info.runtime}, width {info.width:g}, family {info.family_id[:12]})"
        )
        return
    save_gallery(gallery, out_path, force=force, inputs=inputs)
    out.print(
        f"wrote {out_path}: {len(gallery)} × {gallery.features.shape[1]} {dtype} features "
        f"({info.runtime}, width {info.width:g}, family {info.family_id[:12]})"
    )


@app.command()
def verify(
    model: Annotated[
        Path, typer.Option(help="Exported artifact (.onnx, .xml OpenVINO IR, or .engine) to check.")
    ],
    gallery_path: Annotated[
        Path, typer.Option("--gallery", help="Gallery from `extract` (.npz file or gallery folder).")
    ],
    data: Annotated[
        str, typer.Option("--data", help="'synthetic' or a dataset folder: its query split.")
    ] = "synthetic",
    fmt: FormatOpt = None,
    synthetic_seed: SynthSeedOpt = 0,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Source checkpoint: the PyTorch reference.")
    ] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON.")] = None,
    max_map_drop: Annotated[
        float | None,
        typer.Option(help=f"mAP points the artifact may lose (default {_per_precision('max_map_drop')})."),
    ] = None,
    max_rank1_drop: Annotated[
        float | None,
        typer.Option(help=f"Rank-1 points it may lose (default {_per_precision('max_rank1_drop')})."),
    ] = None,
    min_top1_agreement: Annotated[
        float | None,
        typer.Option(
            help=f"Share of identical nearest neighbours (default {_per_precision('min_top1_agreement')})."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Runtime threads (onnxruntime intra-op, OpenVINO inference).")
    ] = None,
    ranking: Annotated[
        str | None,
        typer.Option(
            help=with_default(
                f"{' | '.join(RANKINGS)}: rank every gallery item (full, the benchmark protocol) or judge "
                "retrieval from each query's top-k lists (lower bounds; any gallery size); auto: full "
                "while the gallery and its score matrix fit 1 GiB and --index is exact.",
                VerifySettings,
                "ranking",
            )
        ),
    ] = None,
    min_recall: Annotated[
        float | None,
        typer.Option(
            help=with_default(
                "An approximate --index's recall@k against exact search below this fails.",
                VerifySettings,
                "min_recall",
            )
        ),
    ] = None,
    k: KOpt = None,
    index: IndexOpt = None,
    nlist: NlistOpt = None,
    nprobe: NprobeOpt = None,
    pq_m: PqMOpt = None,
    pq_bits: PqBitsOpt = None,
    train_size: TrainSizeOpt = None,
    recall_queries: RecallQueriesOpt = None,
    seed: SearchSeedOpt = None,
    query_block: QueryBlockOpt = None,
    gallery_block: GalleryBlockOpt = None,
    force: ForceOpt = False,
) -> None:
    """Check an artifact against a gallery and its PyTorch reference; exit 0 on pass, 1 on fail."""
    from exporters.files import check_overwrite, json_text, write_text
    from sfsc_deploy.retrieval.verify import verify_artifact

    tolerance = {
        "max_map_drop": max_map_drop,
        "max_rank1_drop": max_rank1_drop,
        "min_top1_agreement": min_top1_agreement,
    }
    tolerance_for("fp32", **tolerance)  # impossible values are refused before anything is read
    searching = search_settings(locals())
    settings = VerifySettings(**given(ranking=ranking, min_recall=min_recall), search=searching).check()
    inputs = [model, gallery_path, checkpoint_path, data]
    if out_path is not None:
        check_overwrite(out_path, force, inputs)
    report = verify_artifact(
        model,
        gallery_path,
        dataset(data, fmt, synthetic_seed),
        checkpoint=checkpoint_path,
        tolerance=tolerance,
        threads=threads,
        progress=True,
        settings=settings,
    )
    table = Table(
        "check", "value", "limit", "result", title=f"verify {model.name} against {gallery_path.name}"
    )
    for c in report.checks:
        table.add_row(c.name, c.value, c.limit, "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    out.print(table)
    out.print(report.summary())
    if out_path is not None:
        text = json_text(report.to_dict())
        write_text(out_path, text, force=force, inputs=inputs)
    verdict = report.verdict.upper()
    if report.verdict == "no verdict":
        verdict += " (too few queries to judge retrieval; use a larger query set)"
    out.print(f"verify: {verdict}", markup=False)
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def search(
    gallery_path: Annotated[
        Path, typer.Option("--gallery", help="Gallery from `extract` (.npz file or gallery folder).")
    ],
    queries_path: Annotated[
        Path,
        typer.Option(
            "--queries",
            help="Query features: `extract --split query` output (.npz or folder), or a bare .npy [Q, D].",
        ),
    ],
    out_path: Annotated[
        Path, typer.Option("--out", help="Ranked gallery items per query: .json or .csv (by suffix).")
    ],
    k: KOpt = None,
    index: IndexOpt = None,
    nlist: NlistOpt = None,
    nprobe: NprobeOpt = None,
    pq_m: PqMOpt = None,
    pq_bits: PqBitsOpt = None,
    train_size: TrainSizeOpt = None,
    recall_queries: RecallQueriesOpt = None,
    seed: SearchSeedOpt = None,
    query_block: QueryBlockOpt = None,
    gallery_block: GalleryBlockOpt = None,
    force: ForceOpt = False,
) -> None:
    """Top-k gallery items per query (exact, or a faiss index with its recall@k); metrics when labelled."""
    from exporters.files import check_overwrite, write_text
    from sfsc_deploy.errors import SfscError
    from sfsc_deploy.retrieval.search import (
        check_comparable,
        evaluate_topk,
        open_features,
        results_text,
    )
    from sfsc_deploy.retrieval.search import search as run_search

    settings = search_settings(locals())
    suffix = out_path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise SfscError(f"--out {out_path} must end in .json or .csv")
    inputs = [gallery_path, queries_path]
    check_overwrite(out_path, force, inputs)
    gallery = open_features(gallery_path)
    queries = open_features(queries_path)
    check_comparable(queries, gallery, names=(f"queries {queries_path}", f"gallery {gallery_path}"))
    if settings.index != "exact":
        from sfsc_deploy.retrieval.search import import_faiss

        import_faiss()  # missing faiss is one line before any work
    topk = run_search(queries, gallery, settings, progress=True)
    metrics = evaluate_topk(topk, queries, gallery)
    text = results_text(topk, queries, gallery, suffix, metrics, sources=(queries_path, gallery_path))
    write_text(out_path, text, force=force, inputs=inputs)
    out.print(f"searched {len(queries)} queries × {len(gallery)} gallery items: {topk.describe()}")
    if metrics is not None:
        minp = "unavailable (a last match lies beyond k)" if metrics.mINP is None else f"{metrics.mINP:.2f}"
        cmc = "  ".join(f"R{r} {v:.2f}" for r, v in sorted(metrics.cmc.items()))
        if topk.k >= len(gallery):
            how = "k covers the gallery: equal to the full ranking's"
        else:
            how = "lower bounds of the full ranking's, equal where no true match lies beyond k"
        if not topk.exact:
            how += f"; from {topk.method} lists, recall@{topk.k} {topk.recall:.4f}"
        out.print(
            f"ranking: {metrics.ranking} ({how}): mAP {metrics.mAP:.2f}  "
            f"{cmc}  mINP {minp}  ({metrics.num_queries} queries)",
            markup=False,
        )
    out.print(f"wrote {out_path}", markup=False)
