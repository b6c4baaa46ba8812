"""Everything that defines a training run, as one dataclass (saved beside the checkpoint)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import AMP_MODES, DEFAULT_DEVICE, check_device
from sfsc_deploy.io.schema import check_types
from sfsc_deploy.losses.names import COMPAT_LOSSES, KL_VARIANTS, ORI_LOSSES
from sfsc_deploy.models.pretrained import parse_init

SWITCHABLE_METHODS = COMPAT_LOSSES  # one switchable network, named by its sub-models' compatible loss
SEPARATE_METHODS = ("unified", "bct", "asym")
METHODS = SWITCHABLE_METHODS + SEPARATE_METHODS
SAMPLERS = ("pk", "random")
AGGREGATIONS = ("sum", "project")  # how the per-task gradients become one update (train.aggregation)
# where and in which precision a run computes, and how its batches are made (the data pipeline),
# not what it learns: a run resumes with other values
RUNTIME_OPTIONS = ("device", "amp", "channels_last", "workers", "stream", "bank_budget_gb")


def needs_identity_pairs(loss: str) -> bool:
    """Losses that need two images of one identity within a batch, so need P×K batches.

    Only the triplet loss: the asymmetric contrastive loss pairs each sub-model feature with the
    full model's feature of the *same image*, so every batch has its positives.
    """
    return loss == "softmax+triplet"


@dataclass
class TrainConfig:
    """Defaults follow docs/method.md §6's calibration point (Adam 3.5e-4, wd 5e-4, LS 0.1, batch 64)."""

    method: str = "sfsc"
    loss: str = "softmax"
    aggregation: str | None = None  # None: project for sfsc, sum for every other method
    # SFSC's loss: the paper's (KL on α, λ 0.2, constant) with the classifier's learned logit offset,
    # chosen on validation identities: benchmarks/results/sfsc_validation.md (docs/evidential_head.md)
    kl: str = "paper"
    kl_weight: float = 0.2
    kl_anneal_epochs: int = 0  # λ ramps up linearly over these epochs (either KL); 0: constant
    evidence_clamp: float = 10.0
    # the learned offset (models.net.SharedClassifier); False is the loss whose uncertainty is pinned
    # near 0.5 because the logits have zero batch mean per class
    evidence_offset: bool = True
    offset_init: float | None = 0.0  # where the offset starts; None: −ln C (u ≈ 1, slow first epoch)
    offset_lr: float = 0.05  # the offset's own learning rate (no weight decay), scaled by the schedule
    asym_mode: str = "contrastive"
    asym_margin: float = 0.7
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    epochs: int = 12
    batch_ids: int = 16
    batch_k: int = 4
    sampler: str = "pk"  # pk: P ids × K images; random: shuffled batches of P·K (docs/method.md §6's recipe)
    optimizer: str = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # step: fractions of run
    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.0
    val_ids: int = 0
    seed: int = 0
    # the backbone's start: None (random) or imagenet[-torchvision|-timm]:PATH (models.pretrained)
    init: str | None = None
    # BatchNorm statistics over the whole global batch of every process (switchable.sync_bn); per
    # process when False (FastReID's default); one process: no difference
    sync_bn: bool = False
    device: str = DEFAULT_DEVICE  # auto | cpu | cuda | cuda:N (sfsc_deploy.io.device)
    amp: str = "off"  # off | bf16 | fp16: autocast of the forward passes; gradients stay float32
    channels_last: bool = False  # NHWC model and inputs (for CUDA tensor cores; no help on this CPU)
    # the data pipeline (sfsc_deploy.data.loader): batches are the same whatever these are.
    # Worker processes that read and augment batches ahead of the model; None (auto): 0 when the
    # images are preloaded and the device is the CPU, else min(8, CPUs available to this process ÷
    # training processes on this node), at least 1
    workers: int | None = None
    stream: bool = False  # read the training images from disk in the workers instead of preloading
    bank_budget_gb: float = 8.0  # per process: a training set larger than this at the input size streams

    def __post_init__(self) -> None:
        if self.aggregation is None:
            self.aggregation = "project" if self.method == "sfsc" else "sum"
        self.device = check_device(self.device)
        checks = [
            ("method", self.method, METHODS),
            ("loss", self.loss, ORI_LOSSES),
            ("aggregation", self.aggregation, AGGREGATIONS),
            ("kl", self.kl, KL_VARIANTS),
            ("asym_mode", self.asym_mode, ("contrastive", "regression")),
            ("optimizer", self.optimizer, ("adam", "sgd")),
            ("schedule", self.schedule, ("cosine", "step")),
            ("sampler", self.sampler, SAMPLERS),
            ("amp", self.amp, AMP_MODES),
        ]
        for name, value, valid in checks:
            if value not in valid:
                raise SfscError(
                    f"--{name.replace('_', '-')} {value!r} is not known; choose one of: {', '.join(valid)}"
                )
        if self.sampler == "random" and needs_identity_pairs(self.loss):
            raise SfscError(
                "--sampler random gives batches with almost no same-identity pairs, which the "
                "triplet loss needs; use --sampler pk"
            )
        if self.init is not None:
            parse_init(self.init)
        if self.offset_init is not None and not math.isfinite(self.offset_init):
            raise SfscError(f"--offset-init must be a finite number, got {self.offset_init}")
        inf = math.inf
        ranges = [  # (option, value, low, high, low inclusive): refused before any work, never mid-run
            ("lr", self.lr, 0, 10, False),
            ("offset-lr", self.offset_lr, 0, 10, False),
            ("weight-decay", self.weight_decay, 0, 1, True),
            ("momentum", self.momentum, 0, 1, True),
            ("kl-weight", self.kl_weight, 0, 1e3, True),
            ("evidence-clamp", self.evidence_clamp, 0, 88, False),
            ("asym-margin", self.asym_margin, -1, 1, True),
            ("label-smoothing", self.label_smoothing, 0, 0.999, True),
            ("triplet-margin", self.triplet_margin, 0, 10, True),
            ("warmup-epochs", self.warmup_epochs, 0, self.epochs, True),
            ("flip", self.flip, 0, 1, True),
            ("erasing", self.erasing, 0, 1, True),
            ("pad", self.pad, 0, 1024, True),
            ("kl-anneal-epochs", self.kl_anneal_epochs, 0, inf, True),
            ("val-ids", self.val_ids, 0, inf, True),
            ("epochs", self.epochs, 1, 100_000, True),
            ("batch-ids", self.batch_ids, 2, 100_000, True),
            ("batch-k", self.batch_k, 1, 100_000, True),
            ("bank-budget-gb", self.bank_budget_gb, 0, 1e6, True),
        ]
        if self.workers is not None:
            ranges.append(("workers", self.workers, 0, 256, True))
        for name, value, low, high, closed in ranges:
            ok = isinstance(value, int | float) and math.isfinite(value) and value <= high
            ok = ok and (value >= low if closed else value > low)
            if not ok:
                bound = f"[{low}, {high}]" if closed else f"({low}, {high}]"
                raise SfscError(f"--{name} must be a finite number in {bound}, got {value}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)):
            raise SfscError(f"--workers must be a whole number in [0, 256], got {self.workers}")
        if not all(isinstance(m, int | float) and 0 < m < 1 for m in self.milestones):
            raise SfscError(f"milestones must be fractions of the run in (0, 1), got {self.milestones}")

    @property
    def switchable(self) -> bool:
        return self.method in SWITCHABLE_METHODS

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``init`` and ``sync_bn`` only when set and the ``RUNTIME_OPTIONS`` only when not
        their defaults, so runs and benchmark specs saved before they existed compare equal to one
        started without them."""
        data = asdict(self)
        if data["init"] is None:
            del data["init"]
        if not data["sync_bn"]:
            del data["sync_bn"]
        defaults = {f.name: f.default for f in fields(self) if f.name in RUNTIME_OPTIONS}
        for name, default in defaults.items():
            if data[name] == default:
                del data[name]
        return data

    def learning_options(self) -> dict[str, Any]:
        """What decides the run's recipe: every option but ``RUNTIME_OPTIONS`` (what resuming compares)."""
        return {k: v for k, v in self.to_dict().items() if k not in RUNTIME_OPTIONS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Keys missing from an older run take today's defaults; unknown keys mean a newer tool wrote it."""
        if not isinstance(data, dict):
            raise SfscError(f"training options must be a table, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise SfscError(
                f"training options {', '.join(unknown)} are unknown to this sfsc-deploy; "
                f"upgrade it to use this run"
            )
        check_types(data, cls, "training options")
        return cls(**data)
