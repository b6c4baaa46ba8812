"""``--init imagenet:PATH`` on ``init`` and ``train``: the backbone starts from ImageNet weights."""

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from sfsc_deploy.models import checkpoint
from tests.cli.test_cli import run
from tests.models.test_pretrained import assert_mapped, imagenet_state, network

SMALL = ["--arch", "shufflenet_v2", "--widths", "0.25,0.5", "--input-size", "64x32", "--feature-dim", "16"]


@pytest.fixture
def weights(tmp_path):
    """A torchvision shufflenet_v2_x1_0 state dict (random values) as safetensors, and its tensors."""
    state = imagenet_state("shufflenet_v2", "torchvision", network("shufflenet_v2"))
    path = tmp_path / "shufflenet_v2_x1_0.safetensors"
    save_file(state, str(path))
    return path, state


def test_init_writes_a_checkpoint_with_the_imagenet_backbone(weights, tmp_path, capsys):
    path, state = weights
    ck = tmp_path / "ck.safetensors"
    code, out, err = run(
        capsys, "init", *SMALL, "--num-classes", "5", "--init", f"imagenet:{path}", "--out", str(ck)
    )
    assert code == 0, err
    assert "torchvision layout detected): 280 tensors loaded" in out
    assert "not used: ImageNet classifier fc.bias, fc.weight; 56 BatchNorm batch counters" in out
    net = checkpoint.load(ck)
    assert_mapped("shufflenet_v2", "torchvision", net, state)
    header = checkpoint.read_header(ck)
    assert header["extra"]["init"] == f"imagenet:{path}"
    assert header["family_id"] == checkpoint.family_id(net)  # computed as for any network


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--width-mult", "0.5"], "ImageNet weights need the base width multiplier 1.0"),
        (
            ["--arch", "resnet18"],
            "looks like ImageNet shufflenet_v2 weights (torchvision layout), not resnet18",
        ),
    ],
)
def test_init_refuses_what_the_weights_do_not_fit(weights, tmp_path, capsys, extra, message):
    path, _ = weights
    ck = tmp_path / "ck.safetensors"
    code, _, err = run(capsys, "init", *SMALL, *extra, "--init", f"imagenet:{path}", "--out", str(ck))
    assert code == 2 and message in err and err.strip().count("\n") == 0
    assert not ck.exists()


def test_train_refuses_bad_init_values_up_front(tmp_path, capsys):
    pickled = tmp_path / "model.pth"
    torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, pickled)
    cases = [
        ("coco:x.pth", "use imagenet:PATH (layout detected)"),
        (f"imagenet:{tmp_path / 'nowhere.pth'}", "not found"),
        (f"imagenet:{pickled}", "not a flat state dict: 'epoch' (int) is not tensors"),
    ]
    for spec, message in cases:
        out = tmp_path / "r"
        code, _, err = run(capsys, "train", *SMALL, "--init", spec, "--out", str(out))
        assert code == 2 and message in err and err.strip().count("\n") == 0, err
        assert not out.exists()


def _people(root):
    """A tiny identity-per-folder dataset: 8 identities, 2 cameras, 2 images each."""
    for pid in range(8):
        folder = root / f"id{pid:02d}"
        folder.mkdir(parents=True)
        for cam in (1, 2):
            for k in range(2):
                colour = ((pid * 37) % 256, (cam * 80) % 256, (k * 120 + pid * 11) % 256)
                Image.new("RGB", (32, 64), colour).save(folder / f"img_c{cam}_{k}.jpg")
    return root


@pytest.mark.slow
def test_train_from_imagenet_weights_then_resume_refuses_another_init(weights, tmp_path, capsys):
    path, state = weights
    data, run_dir = _people(tmp_path / "people"), tmp_path / "run"
    args = ["train", "--data", str(data), *SMALL, "--epochs", "1", "--batch-ids", "4", "--batch-k", "2"]
    args += ["--no-plots", "--out", str(run_dir)]
    code, out, err = run(capsys, *args, "--init", f"imagenet:{path}")
    assert code == 0, err
    assert "backbone from" in out and "280 tensors loaded" in out
    header = checkpoint.read_header(run_dir / "checkpoint.safetensors")
    assert header["extra"]["training"]["config"]["init"] == f"imagenet:{path}"
    # two Adam steps of lr 3.5e-4 from the ImageNet tensors, not from a random start
    net = checkpoint.load(run_dir / "checkpoint.safetensors")
    moved = (net.backbone.stem[0].weight - state["conv1.0.weight"]).abs().max()
    assert 0 < moved < 0.01
    # another init is another run; the same one resumes without reading the file again
    code, _, err = run(capsys, *args, "--init", f"imagenet-torchvision:{path}", "--resume")
    assert code == 2 and f"init: imagenet:{path} → imagenet-torchvision:{path}" in err
    code, _, err = run(capsys, *args, "--resume")
    assert code == 2 and f"init: imagenet:{path} → None" in err
    path.unlink()
    code, _, err = run(capsys, *args, "--init", f"imagenet:{path}", "--resume")
    assert code == 0, err
