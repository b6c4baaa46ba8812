"""`train --workers/--stream/--bank-budget-gb` reach TrainConfig as set; bad values are one line."""

import pytest

import sfsc_deploy.train
from sfsc_deploy.train import TrainConfig, TrainResult
from tests.cli import run


@pytest.fixture
def configs(monkeypatch):
    """The TrainConfig each `train` would run with (nothing is trained)."""
    seen: list[TrainConfig] = []

    def fake_train(splits, arch, widths, cfg, out_dir, **kwargs):
        seen.append(cfg)
        return TrainResult(out_dir, cfg.method)

    monkeypatch.setattr(sfsc_deploy.train, "train", fake_train)
    return seen


def test_pipeline_options_reach_the_config(configs, tmp_path, capsys):
    argv = ["train", "--out", str(tmp_path / "r"), "--epochs", "1"]
    code, _, err = run(capsys, *argv, "--workers", "3", "--stream", "--bank-budget-gb", "0.25")
    assert code == 0, err
    assert (configs[-1].workers, configs[-1].stream, configs[-1].bank_budget_gb) == (3, True, 0.25)
    code, _, err = run(capsys, *argv, "--no-stream")
    assert code == 0, err
    default = TrainConfig()  # unset: the library's defaults
    assert (configs[-1].workers, configs[-1].stream, configs[-1].bank_budget_gb) == (
        default.workers,
        False,
        default.bank_budget_gb,
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "-1"], "--workers must be a finite number in [0, 256], got -1"),
        (["--workers", "1000"], "--workers must be a finite number in [0, 256], got 1000"),
        (["--bank-budget-gb", "nan"], "--bank-budget-gb must be a finite number"),
        (["--bank-budget-gb", "-2"], "--bank-budget-gb must be a finite number"),
    ],
)
def test_bad_pipeline_values_are_one_line(configs, tmp_path, capsys, argv, message):
    code, _, err = run(capsys, "train", "--out", str(tmp_path / "r"), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not configs and not (tmp_path / "r").exists()
