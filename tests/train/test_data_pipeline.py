"""Workers, streaming and the preload budget change how batches are made, never what is learned."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sfsc_deploy.data.images import can_open, read_image
from sfsc_deploy.data.records import Record, ReidSplits
from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from sfsc_deploy.train import TrainConfig, train
from sfsc_deploy.train.trainer import LOG, Trainer
from tests.train.conftest import TINY_OPTIONS

CFG = dict(epochs=2, batch_ids=4, batch_k=2, warmup_epochs=0.5, device="cpu")


def run(data, out, *, resume=False, **overrides):
    cfg = TrainConfig(**{**CFG, **overrides})
    return train(
        data, "resnet18", "0.25,0.5", cfg, out, feature_dim=16, options=TINY_OPTIONS, progress=False,
        plots=False, resume=resume,
    )  # fmt: skip


def weights(result):
    return checkpoint.load(result.networks[1.0]).state_dict()


def assert_equal_weights(a, b):
    a, b = weights(a), weights(b)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_over_the_budget_the_images_stream_and_train_the_same_weights(small_data, tmp_path, capsys):
    preloaded = run(small_data, tmp_path / "bank")
    assert not preloaded.streamed and "streaming" not in capsys.readouterr().err
    streamed = run(small_data, tmp_path / "stream", bank_budget_gb=1e-4, workers=2)
    err = capsys.readouterr().err
    assert streamed.streamed
    assert f"train: streaming {len(small_data.train)} images from disk while training" in err
    assert "> --bank-budget-gb 0.0001" in err
    assert_equal_weights(streamed, preloaded)
    # saved as runtime options: the two runs have the same recipe
    recipes = [
        TrainConfig.from_dict(checkpoint.read_header(r.networks[1.0])["extra"]["training"]["config"])
        for r in (preloaded, streamed)
    ]
    assert recipes[1].workers == 2 and recipes[0].learning_options() == recipes[1].learning_options()


class _Stopped(Exception):
    """The run stops here, as if killed after the epoch's files were written."""


@pytest.mark.slow
def test_a_streamed_run_resumes_preloaded_to_the_same_weights(small_data, tmp_path, monkeypatch, capsys):
    straight = run(small_data, tmp_path / "straight")
    original = Trainer._save

    def die_after_first_epoch(self, epoch, val):
        original(self, epoch, val)
        if epoch == 0:
            raise _Stopped

    monkeypatch.setattr(Trainer, "_save", die_after_first_epoch)
    with pytest.raises(_Stopped):
        run(small_data, tmp_path / "resumed", stream=True, workers=1)
    assert "(--stream)" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "_save", original)
    resumed = run(small_data, tmp_path / "resumed", resume=True)  # preloaded, no workers
    assert not resumed.streamed
    assert_equal_weights(resumed, straight)


def test_images_failing_to_decode_are_replaced_and_counted_in_the_log(tmp_path, capsys):
    rng = np.random.default_rng(0)
    records = []
    for pid, count in enumerate([2, 3, 3, 3]):
        for k in range(count):
            path = tmp_path / "images" / f"{pid}_{k}.jpg"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(path)
            records.append(Record(str(path), pid, k))
    broken = tmp_path / "images" / "0_0.jpg"  # identity 0 has 2 images: every epoch's batches read both
    broken.write_bytes(broken.read_bytes()[:-600])  # the header opens, the pixels fail to decode
    assert can_open(broken) and read_image(broken) is None
    data = ReidSplits("files", records, [], [], num_classes=4)
    run(data, tmp_path / "run", stream=True, workers=0, batch_ids=2, batch_k=2)
    lines = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    counted = [(line["epoch"], line["unreadable"]) for line in lines if "unreadable" in line]
    assert counted == [(0, 1), (1, 1)]  # the last step record of each epoch
    assert lines[-1]["unreadable"] == 1 and "unreadable" not in lines[0]
    err = capsys.readouterr().err
    assert err.count("1 image(s) failed to decode; each was replaced by an image of the same identity") == 1


def test_pipeline_options_are_runtime_options_with_checked_ranges():
    plain = TrainConfig()
    piped = TrainConfig(workers=3, stream=True, bank_budget_gb=0.5)
    assert piped.learning_options() == plain.learning_options()  # a run resumes with other values
    assert piped.to_dict()["workers"] == 3 and "workers" not in plain.to_dict()
    assert TrainConfig.from_dict(piped.to_dict()) == piped
    for bad, message in [
        (dict(workers=-1), r"--workers must be a finite number in \[0, 256\], got -1"),
        (dict(workers=1.5), "--workers must be a whole number"),
        (dict(bank_budget_gb=-1.0), "--bank-budget-gb must be a finite number"),
        (dict(bank_budget_gb=float("nan")), "--bank-budget-gb must be a finite number"),
    ]:
        with pytest.raises(SfscError, match=message):
            TrainConfig(**bad)
    with pytest.raises(SfscError, match="workers must be an integer or null"):
        TrainConfig.from_dict({"workers": "2"})
