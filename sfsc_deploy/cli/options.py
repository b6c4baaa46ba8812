"""What every command shares: the app, the consoles, option types named the same everywhere, parsers."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any

import typer
from rich.console import Console

from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import DEFAULT_DEVICE, DEVICE_CHOICES

app = typer.Typer(
    name="sfsc-deploy",
    help="Train one switchable re-id network, slice it per platform tier, export and verify. "
    "Add --debug anywhere to see tracebacks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# data options: the same names in every command that reads a dataset
DataOpt = Annotated[str, typer.Option("--data", help="'synthetic' (built in) or a dataset folder.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="market1501 | market1501-heldout | folder (default: detected)."),
]
SynthSeedOpt = Annotated[int, typer.Option(help="Seed of the built-in synthetic dataset.")]

# benchmark options (bench, profile)
BatchesOpt = Annotated[str, typer.Option(help="Comma-separated batch sizes.")]
ThreadsOpt = Annotated[str, typer.Option(help="Comma-separated thread counts.")]
WarmupOpt = Annotated[int, typer.Option(help="Untimed runs before timing.")]
ItersOpt = Annotated[int, typer.Option(help="Timed runs per batch and thread count.")]
SecondsOpt = Annotated[float | None, typer.Option(help="Stop timing a configuration after this long.")]
CpusOpt = Annotated[str | None, typer.Option(help="Pin to these cores, e.g. 0 (emulate a small device).")]
ProviderOpt = Annotated[str, typer.Option(help="onnxruntime execution provider.")]
FallbackOpt = Annotated[
    bool,
    typer.Option(
        help="Run on onnxruntime's fallback (the CPU) when --provider is missing, instead of failing."
    ),
]
# where a command runs its PyTorch model (train takes its default from TrainConfig)
DEVICE_HELP = f"Where the PyTorch model runs: {DEVICE_CHOICES} (auto: CUDA when PyTorch sees a GPU)."
DeviceOpt = Annotated[str | None, typer.Option(help=f"{DEVICE_HELP} [default: {DEFAULT_DEVICE}]")]
ForceOpt = Annotated[
    bool,
    typer.Option(
        help="Replace this command's earlier output (never an input, never files it did not write)."
    ),
]


# --nproc: run the same command line in N processes on this machine (train, eval, extract)
NprocOpt = Annotated[
    int,
    typer.Option(
        help="Processes on this machine (torch's elastic launcher, as torchrun --nproc-per-node): each "
        "extracts 1/N of the images, rank 0 writes; NCCL on CUDA (one GPU each), gloo on the CPU.",
        min=1,
    ),
]
COMMAND_ARGS: list[str] = []  # the command line main() ran (``--nproc`` passes it on to every process)


def without_nproc(args: list[str]) -> list[str]:
    """A command line less its ``--nproc N`` / ``--nproc=N``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def relaunch(command: str, nproc: int) -> None:
    """Run this command line again, less ``--nproc``, in ``nproc`` processes (train.distributed.launch);
    each joins the process group the launcher describes. Refused under torchrun, which already did."""
    from sfsc_deploy.train.distributed import env_world, launch

    if env_world().many:
        raise SfscError("--nproc starts its own processes; drop it when running under torchrun")
    launch(nproc, without_nproc(COMMAND_ARGS[1:] if COMMAND_ARGS[:1] == [command] else COMMAND_ARGS), command)


def is_main_process() -> bool:
    """Rank 0 (or the only process) prints a command's results; the other ranks stay quiet."""
    from sfsc_deploy.train.distributed import env_world

    return env_world().main


def dataset(data: str, fmt: str | None, synthetic_seed: int):
    from sfsc_deploy.data import load_dataset
    from sfsc_deploy.data.synthetic import SyntheticConfig

    return load_dataset(data, fmt, synthetic=SyntheticConfig(seed=synthetic_seed))


def default_of(cls: type, name: str) -> Any:
    """The library's default of a dataclass field: the one place defaults live."""
    for f in fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)


def with_default(text: str, cls: type, name: str) -> str:
    """Help text ending in the library's default; the bracket escaped, or rich's help reads it as markup."""
    return f"{text} \\[default: {default_of(cls, name)}]"


def given(**options: Any) -> dict[str, Any]:
    """Only the options the user set (None means unset), so the library's defaults apply."""
    return {k: v for k, v in options.items() if v is not None}


def input_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SfscError(f"--input-size {text!r} is not HEIGHTxWIDTH; use e.g. 256x128") from None
    return h, w


def ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise SfscError(f"{option} {text!r} must be comma-separated integers such as 1,8,32")
    return values


def si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _search_opt(text: str, name: str, **kw):
    from sfsc_deploy.retrieval.search import SearchSettings

    return typer.Option(help=with_default(text, SearchSettings, name), **kw)


def _index_help() -> str:
    from sfsc_deploy.retrieval.search import INDEX_KINDS

    return f"{' | '.join(INDEX_KINDS)} (flat, ivf, ivfpq: faiss)."


# search options (search, verify): defaults live in retrieval.search.SearchSettings
KOpt = Annotated[int | None, _search_opt("Gallery items per query.", "k")]
IndexOpt = Annotated[str | None, _search_opt(_index_help(), "index")]
NlistOpt = Annotated[int | None, _search_opt("IVF cells (default 4·√N).", "nlist")]
NprobeOpt = Annotated[int | None, _search_opt("IVF cells visited per query.", "nprobe")]
PqMOpt = Annotated[int | None, _search_opt("IVF-PQ sub-quantizers (divides D).", "pq_m")]
PqBitsOpt = Annotated[int | None, _search_opt("Bits per IVF-PQ code.", "pq_bits")]
TrainSizeOpt = Annotated[int | None, _search_opt("Gallery rows that train IVF/PQ.", "train_size")]
RecallQueriesOpt = Annotated[
    int | None, _search_opt("Queries searched exactly to measure an index's recall@k.", "recall_queries")
]
SearchSeedOpt = Annotated[int | None, _search_opt("Seed of the training and recall samples.", "seed")]
QueryBlockOpt = Annotated[int | None, _search_opt("Queries scored at once.", "query_block")]
GalleryBlockOpt = Annotated[int | None, _search_opt("Gallery rows scored at once.", "gallery_block")]


# the parameter names of the search options above, as every command that searches declares them
SEARCH_OPTIONS = (
    "k", "index", "nlist", "nprobe", "pq_m", "pq_bits", "train_size", "recall_queries", "seed",
    "query_block", "gallery_block",
)  # fmt: skip


def search_settings(arguments: dict[str, Any]):
    """``SearchSettings`` from a command's arguments (its ``locals()``): the search options a user set
    (``None``: unset), checked."""
    from sfsc_deploy.retrieval.search import SearchSettings

    return SearchSettings(**given(**{name: arguments[name] for name in SEARCH_OPTIONS})).check()
