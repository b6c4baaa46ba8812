"""Performance commands: time models (bench), tabulate this device (profile), pick a width (plan)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sfsc_deploy.cli.options import (
    BatchesOpt,
    CpusOpt,
    FallbackOpt,
    ForceOpt,
    ItersOpt,
    ProviderOpt,
    SecondsOpt,
    ThreadsOpt,
    WarmupOpt,
    app,
    ints,
    out,
)
from sfsc_deploy.errors import SfscError
from sfsc_deploy.perf.results import PERCENTILES, BenchSettings


def _settings(batches, threads, warmup, iters, seconds, provider, cpus, allow_fallback) -> BenchSettings:
    return BenchSettings(
        ints(batches, "--batches"),
        ints(threads, "--threads"),
        warmup,
        iters,
        seconds,
        provider,
        allow_fallback,
        ints(cpus, "--cpus") if cpus else None,
    )


@app.command()
def bench(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for bench.json/.md and the plots.")],
    models: Annotated[
        list[Path] | None, typer.Argument(help="Exported .onnx / .xml (OpenVINO) / .engine files.")
    ] = None,
    checkpoint_path: Annotated[
        Path | None, typer.Option("--checkpoint", help="Also time the PyTorch sliced model (baseline).")
    ] = None,
    widths: Annotated[str | None, typer.Option(help="Widths of --checkpoint to time (default: all).")] = None,
    batches: BatchesOpt = "1,8,32",
    threads: ThreadsOpt = "1",
    warmup: WarmupOpt = 10,
    iters: ItersOpt = 100,
    seconds: SecondsOpt = None,
    provider: ProviderOpt = "CPUExecutionProvider",
    allow_fallback: FallbackOpt = False,
    cpus: CpusOpt = None,
    eval_path: Annotated[
        Path | None, typer.Option("--eval", help="compat_matrix.json: adds the accuracy-vs-latency plot.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Latency (mean, std, percentiles), throughput, memory, size, params and MACs per model."""
    from sfsc_deploy.evaluation.report import load_matrix_report
    from sfsc_deploy.models import checkpoint
    from sfsc_deploy.perf.bench import open_target, torch_target
    from sfsc_deploy.perf.report import bench_report
    from sfsc_deploy.perf.results import results_markdown

    settings = _settings(batches, threads, warmup, iters, seconds, provider, cpus, allow_fallback)
    matrix = load_matrix_report(eval_path) if eval_path else None
    targets = [open_target(m, provider, allow_fallback) for m in models or []]
    if checkpoint_path is not None:
        net = checkpoint.load(checkpoint_path)
        chosen = [float(w) for w in widths.split(",")] if widths else net.config.all_widths
        targets += [torch_target(net, net.check_width(w), str(checkpoint_path)) for w in chosen]
    if not targets:
        raise SfscError("nothing to benchmark; pass exported models and/or --checkpoint")
    inputs = [*(models or []), checkpoint_path, eval_path]
    report = bench_report(targets, settings, out_dir, matrix=matrix, force=force, inputs=inputs)
    out.print(results_markdown(report.results))
    out.print(f"wrote {', '.join(str(p) for p in report.files)}")


@app.command()
def profile(
    checkpoint_path: Annotated[Path, typer.Option("--checkpoint", help="Trained checkpoint.")],
    out_path: Annotated[Path, typer.Option("--out", help="Device latency table to write (JSON).")],
    export_dir: Annotated[
        Path | None, typer.Option(help="Reuse (or keep) the per-width exports in this folder.")
    ] = None,
    runtime: Annotated[
        str, typer.Option(help="onnx (onnxruntime) | openvino (OpenVINO IR): what to export and time.")
    ] = "onnx",
    batches: BatchesOpt = "1,8",
    threads: ThreadsOpt = "1",
    warmup: WarmupOpt = 10,
    iters: ItersOpt = 50,
    seconds: SecondsOpt = None,
    provider: ProviderOpt = "CPUExecutionProvider",
    allow_fallback: FallbackOpt = False,
    cpus: CpusOpt = None,
    force: ForceOpt = False,
) -> None:
    """Benchmark every trained width on this machine and write its latency table for `plan`."""
    from sfsc_deploy.perf.profile import profile_device

    settings = _settings(batches, threads, warmup, iters, seconds, provider, cpus, allow_fallback)
    table = profile_device(
        checkpoint_path, out_path, settings, export_dir=export_dir, force=force, runtime=runtime
    )
    grid = Table("width", "batch", "threads", "p50 ms", "p99 ms", "img/s", title=table.device["cpu"])
    for e in table.entries:
        grid.add_row(
            f"{e.width:g}",
            str(e.batch),
            str(e.threads),
            f"{e.latency_ms.median:.3f}",
            f"{e.latency_ms.p99:.3f}",
            f"{e.throughput:.1f}",
        )
    out.print(grid)
    out.print(f"wrote {out_path}")


@app.command()
def plan(
    table_path: Annotated[Path, typer.Option("--table", help="Device table from `profile`.")],
    budget_ms: Annotated[float, typer.Option(help="Latency budget per batch in ms.")],
    percentile: Annotated[float, typer.Option(help=f"{' | '.join(map(str, PERCENTILES))} (100 = max).")] = 99,
    batch: Annotated[int, typer.Option(help="Batch size the device runs.")] = 1,
    threads: Annotated[int | None, typer.Option(help="Threads (default: the fewest profiled).")] = None,
    eval_path: Annotated[
        Path | None, typer.Option("--eval", help="compat_matrix.json: report the expected accuracy.")
    ] = None,
) -> None:
    """The widest trained width whose latency meets the budget on the profiled device (exit 1: none)."""
    from sfsc_deploy.evaluation.report import load_matrix_report
    from sfsc_deploy.perf.device_table import load_table, plan_width

    matrix = load_matrix_report(eval_path) if eval_path else None
    result = plan_width(
        load_table(table_path), budget_ms, percentile=percentile, batch=batch, threads=threads, matrix=matrix
    )
    grid = Table("width", f"p{percentile:g} ms", "fits")
    for c in result.candidates:
        grid.add_row(f"{c.width:g}", f"{c.latency_ms:.3f}", "yes" if c.fits else "no")
    out.print(grid)
    out.print(result.message())
    if result.width is None:
        raise typer.Exit(1)
