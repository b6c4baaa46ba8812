"""Device, mixed precision and memory layout of training (TrainConfig.device / amp / channels_last).

There is no GPU here: every CUDA path is the same code with another device, exercised on the CPU
(bf16 and fp16 autocast, the fp16 GradScaler, channels_last).
"""

import copy
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.errors import SfscError
from sfsc_deploy.io.device import check_amp
from sfsc_deploy.models import build, checkpoint
from sfsc_deploy.models.networks import CHECKPOINT
from sfsc_deploy.train import TrainConfig
from sfsc_deploy.train import trainer as trainer_module
from sfsc_deploy.train.aggregation import aggregate, project_coefficients
from sfsc_deploy.train.schedule import lr_factor
from sfsc_deploy.train.state import METADATA_KEY
from sfsc_deploy.train.tasks import StepContext, switchable_tasks
from sfsc_deploy.train.trainer import LOG, STATE, Trainer, _optimizer
from tests.train.conftest import TINY_OPTIONS
from tests.train.test_trainer import CFG, run

WIDTHS = [0.25, 0.5, 1.0]


def cpu_autocasts_fp16() -> bool:
    try:
        check_amp(torch.device("cpu"), "fp16")
    except SfscError:
        return False
    return True


# torch ≥ 2.4 autocasts float16 on the CPU in the versions tested; an older one is refused in one line
needs_cpu_fp16 = pytest.mark.skipif(not cpu_autocasts_fp16(), reason="this torch has no CPU fp16 autocast")


def make_trainer(data, tmp_path, arch="resnet18", **overrides):
    torch.manual_seed(0)
    net = build(arch, WIDTHS, 16, data.num_classes, **vars(TINY_OPTIONS)).train()
    cfg = TrainConfig(**{**CFG, **overrides})
    bank = build_bank(data.train, TINY_OPTIONS.input_size, progress=False)
    return Trainer(net, switchable_tasks(cfg, WIDTHS), cfg, bank, tmp_path, progress=False)


def close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    """Equal within float rounding: the largest difference against the tensor's own scale (and 1e-6
    for the ~0 running means behind a normalised input)."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= rel * float(a.abs().max()) + 1e-6


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, *TINY_OPTIONS.input_size, generator=g), torch.arange(8) % 4


def reference_step(net, tasks, cfg, x, y, gen):
    """One SFSC step as the trainer did it before device and precision existed: plain float32."""
    offset = net.classifier.evidence_offset
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = _optimizer(cfg, params, offset)
    ctx = StepContext(0, net.classifier.weight, offset)
    rows = []
    for task in tasks:
        net.set_width(task.width)
        out = net(x)
        if ctx.reference_features is None and task.width == 1.0:
            ctx.reference_features = out.features.detach()
        grads = torch.autograd.grad(task.loss(out, y, ctx).loss, params, allow_unused=True)
        pairs = zip(params, grads, strict=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in pairs]))
    net.set_width(1.0)
    grads = torch.stack(rows)
    direction = project_coefficients(grads @ grads.T, gen).sum(dim=0).float() @ grads
    for p, update in zip(params, direction.split([p.numel() for p in params]), strict=True):
        p.grad = update.view_as(p)
    for group in optimizer.param_groups:
        group["lr"] *= lr_factor(cfg, 0, 1)
    optimizer.step()


def test_amp_off_is_the_float32_step_bit_for_bit(small_data, tmp_path):
    """`--amp off` (the default) adds no cast, no autocast, no scaler and no copy in another layout."""
    trainer = make_trainer(small_data, tmp_path, amp="off")
    twin = copy.deepcopy(trainer.net)
    trainer.steps_per_epoch = 1
    x, y = batch()
    trainer._train_step(x, y, 0, torch.Generator().manual_seed(3))
    reference_step(twin, trainer.tasks, trainer.cfg, x, y, torch.Generator().manual_seed(3))
    for (name, a), b in zip(trainer.net.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_bf16_autocasts_the_forward_and_keeps_gradients_and_aggregation_float32(
    small_data, tmp_path, monkeypatch
):
    seen = {}
    real = trainer_module.aggregate

    def spy(grads, method, generator=None):
        result = real(grads, method, generator)
        autocast = torch.is_autocast_enabled("cpu")
        seen.update(grads=grads.dtype, direction=result.direction.dtype, autocast=autocast)
        return result

    monkeypatch.setattr(trainer_module, "aggregate", spy)
    trainer = make_trainer(small_data, tmp_path, amp="bf16")
    plain = make_trainer(small_data, tmp_path / "plain")
    backbone_dtypes = []
    trainer.net.backbone.register_forward_hook(lambda m, i, o: backbone_dtypes.append(o.dtype))
    x, y = batch()
    outputs = trainer._forward(x)
    assert backbone_dtypes == [torch.bfloat16]  # autocast is on inside the forward pass
    assert all(t.dtype == torch.float32 for t in outputs)  # the losses read float32
    record = trainer._train_step(x, y, 0, torch.Generator().manual_seed(0))
    assert seen == {"grads": torch.float32, "direction": torch.float32, "autocast": False}
    assert trainer.grads.dtype == torch.float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in trainer.params)
    reference = plain._train_step(x, y, 0, torch.Generator().manual_seed(0))
    assert record["loss/1"] != reference["loss/1"]  # bf16 really ran
    assert record["loss/1"] == pytest.approx(reference["loss/1"], rel=0.02)


def test_aggregation_inside_an_autocast_region_is_still_float32():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 1000, generator=g)
    grads[1] = -grads[0] + 0.1 * grads[1]  # a conflict, so the projection does something
    outside = aggregate(grads, "project", torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = aggregate(grads, "project", torch.Generator().manual_seed(1))
    assert inside.direction.dtype == torch.float32
    assert torch.equal(inside.direction, outside.direction)
    assert inside.grad_norms == outside.grad_norms and inside.conflicts == outside.conflicts >= 1
    half = aggregate(grads.bfloat16(), "project", torch.Generator().manual_seed(1))
    assert half.direction.dtype == torch.float32  # half-precision gradients are summed in float32


@pytest.mark.parametrize("amp", ["bf16", pytest.param("fp16", marks=needs_cpu_fp16)])
def test_mixed_precision_trains_with_finite_losses(small_data, tmp_path, amp):
    result = run(small_data, tmp_path, amp=amp, epochs=1, plots=False)
    lines = [json.loads(x) for x in (result.out_dir / LOG).read_text().splitlines()]
    assert len(lines) >= 3
    for line in lines:
        assert all(torch.isfinite(torch.tensor(line[f"loss/{w:g}"])) for w in WIDTHS)
        assert ("grad_scale" in line) == (amp == "fp16")
    header = checkpoint.read_header(result.networks[1.0])
    assert header["extra"]["training"]["config"]["amp"] == amp
    net = checkpoint.load(result.networks[1.0])
    assert all(t.dtype == torch.float32 for t in net.state_dict().values() if t.is_floating_point())


@needs_cpu_fp16
def test_fp16_skips_a_step_whose_scaled_gradients_overflow_and_lowers_the_scale(small_data, tmp_path):
    trainer = make_trainer(small_data, tmp_path, amp="fp16")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # loss × 2^127 overflows float32
    before = copy.deepcopy(trainer.net.state_dict())
    x, y = batch()
    record = trainer._train_step(x, y, 0, torch.Generator().manual_seed(0))
    assert record["grad_scale"] == 2.0**127
    assert trainer.scaler.get_scale() == 2.0**126
    for name, value in trainer.net.state_dict().items():
        if "running" not in name and "num_batches" not in name:  # BN statistics move in any forward
            assert torch.equal(value, before[name]), name
    trainer.scaler = torch.amp.GradScaler("cpu")
    record = trainer._train_step(x, y, 0, torch.Generator().manual_seed(0))
    moved = trainer.net.state_dict()["classifier.weight"]
    assert not torch.equal(moved, before["classifier.weight"])
    assert record["grad_norm/1"] > 0 and torch.isfinite(torch.tensor(record["grad_norm/1"]))


@needs_cpu_fp16
def test_fp16_gradient_norms_are_logged_unscaled(small_data, tmp_path):
    plain = make_trainer(small_data, tmp_path / "plain")
    scaled = make_trainer(small_data, tmp_path / "scaled", amp="fp16")
    x, y = batch()
    a = plain._train_step(x, y, 0, torch.Generator().manual_seed(0))
    b = scaled._train_step(x, y, 0, torch.Generator().manual_seed(0))
    assert b["grad_scale"] == 65536.0
    for w in WIDTHS:  # fp16 forward passes: near, not equal, and not 65536 times larger
        assert b[f"grad_norm/{w:g}"] == pytest.approx(a[f"grad_norm/{w:g}"], rel=0.05)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2", "shufflenet_v2"])
def test_channels_last_gives_the_default_layouts_outputs_and_step(small_data, tmp_path, arch):
    # SGD: Adam's first step is ±lr wherever a gradient is nonzero, so it would amplify rounding
    default = make_trainer(small_data, tmp_path / "nchw", arch, optimizer="sgd")
    nhwc = make_trainer(small_data, tmp_path / "nhwc", arch, optimizer="sgd", channels_last=True)
    conv = next(p for p in nhwc.net.parameters() if p.ndim == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x, y = batch()
    for w in WIDTHS:
        default.net.set_width(w)
        nhwc.net.set_width(w)
        a, b = default._forward(x), nhwc._forward(x.contiguous(memory_format=torch.channels_last))
        for ta, tb in zip(a, b, strict=True):  # train-mode BN over 8 images amplifies rounding
            assert close(ta, tb, 1e-3), w
        with torch.no_grad():
            assert close(default.net.eval()(x), nhwc.net.eval()(x), 1e-4), w
        default.net.train()
        nhwc.net.train()
    ra = default._train_step(x, y, 0, torch.Generator().manual_seed(0))
    rb = nhwc._train_step(x, y, 0, torch.Generator().manual_seed(0))
    assert rb["grad_norm/0.25"] == pytest.approx(ra["grad_norm/0.25"], rel=1e-3)
    for (name, a), b in zip(default.net.state_dict().items(), nhwc.net.state_dict().values(), strict=True):
        assert close(a.float(), b.float(), 1e-3), name
    assert torch.backends.mkldnn.enabled  # restored after the step (see io.device.training_kernels)


def run_first_epoch(data, tmp_path, monkeypatch, **overrides) -> None:
    """A two-epoch run stopped after its first epoch's checkpoint."""
    original = Trainer._save

    def stop_after_first_epoch(self, epoch, val):
        original(self, epoch, val)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path, plots=False, **overrides)
    monkeypatch.setattr(Trainer, "_save", original)


def state_meta(run_dir):
    with safe_open(str(run_dir / STATE), framework="pt") as fh:
        return json.loads(fh.metadata()[METADATA_KEY])


def rewrite_state(run_dir, meta) -> None:
    state = run_dir / STATE
    state.write_bytes(st_save(load_file(str(state)), metadata={METADATA_KEY: json.dumps(meta)}))


@needs_cpu_fp16
def test_checkpoints_are_device_and_layout_independent_and_resume_with_other_runtime_options(
    small_data, tmp_path, monkeypatch
):
    """A run stopped after its first epoch resumes with another device / layout / precision."""
    run_first_epoch(small_data, tmp_path, monkeypatch, channels_last=True, amp="fp16", device="auto")
    ck = tmp_path / "run" / CHECKPOINT
    assert all(t.is_contiguous() for t in load_file(str(ck)).values())  # NCHW on disk, on the CPU
    info = state_meta(tmp_path / "run")["info"]
    assert info["grad_scaler"]["scale"] == 65536.0 and info["config"]["amp"] == "fp16"
    run(small_data, tmp_path, resume=True, device="cpu", plots=False)  # NCHW, float32 now
    log = [json.loads(x) for x in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert {x["epoch"] for x in log} == {0, 1}
    assert ("grad_scale" in log[0]) and ("grad_scale" not in log[-1])
    assert checkpoint.read_header(ck)["extra"]["training"]["epoch"] == 1
    with pytest.raises(SfscError, match="other options"):  # what the run learns may not change
        run(small_data, tmp_path, resume=True, lr=1e-3, amp="bf16", plots=False)


def test_a_run_saved_before_device_and_precision_existed_resumes(small_data, tmp_path, monkeypatch):
    run_first_epoch(small_data, tmp_path, monkeypatch, device="auto")
    meta = state_meta(tmp_path / "run")
    config = meta["info"]["config"]
    assert not {"device", "amp", "channels_last"} & set(config)  # defaults are not even written
    config.update(device="cuda:7", amp="fp16")  # and another machine's values do not matter
    rewrite_state(tmp_path / "run", meta)
    run(small_data, tmp_path, resume=True, plots=False)
    assert checkpoint.read_header(tmp_path / "run" / CHECKPOINT)["extra"]["training"]["epoch"] == 1


@needs_cpu_fp16
def test_fp16_resumes_with_its_loss_scale_and_refuses_a_damaged_one(small_data, tmp_path, monkeypatch):
    run_first_epoch(small_data, tmp_path, monkeypatch, amp="fp16")
    meta = state_meta(tmp_path / "run")
    meta["info"]["grad_scaler"].update(scale=1024.0, _growth_tracker=3)
    rewrite_state(tmp_path / "run", meta)
    before = (tmp_path / "run" / STATE).read_bytes()
    for damaged in ({"scale": "big"}, {"scale": float("inf"), "_growth_tracker": 0}, [], {"scale": 8.0}):
        rewrite_state(tmp_path / "run", {**meta, "info": {**meta["info"], "grad_scaler": damaged}})
        with pytest.raises(SfscError, match="cannot resume: .* is missing or damaged"):
            run(small_data, tmp_path, resume=True, amp="fp16", plots=False)
    (tmp_path / "run" / STATE).write_bytes(before)
    run(small_data, tmp_path, resume=True, amp="fp16", plots=False)
    log = [json.loads(x) for x in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert next(x for x in log if x["epoch"] == 1)["grad_scale"] == 1024.0


def test_runtime_options_are_saved_only_when_set_and_checked_without_torch():
    assert not {"device", "amp", "channels_last"} & set(TrainConfig().to_dict())
    cfg = TrainConfig(device="CUDA:1", amp="bf16", channels_last=True)
    assert cfg.device == "cuda:1"
    saved = cfg.to_dict()
    assert (saved["device"], saved["amp"], saved["channels_last"]) == ("cuda:1", "bf16", True)
    assert TrainConfig.from_dict(saved) == cfg
    assert cfg.learning_options() == TrainConfig().learning_options()
    with pytest.raises(SfscError, match=r"--amp 'fp32' is not known; choose one of: off, bf16, fp16"):
        TrainConfig(amp="fp32")
    with pytest.raises(SfscError, match=r"--device 'gpu' is not a device; use one of auto \| cpu"):
        TrainConfig(device="gpu")
    with pytest.raises(SfscError, match="channels_last must be"):
        TrainConfig.from_dict({"channels_last": "yes"})
