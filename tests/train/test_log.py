"""The training log read back, its plots (SFSC Fig. 5 / 6, u per width), plot-log and TensorBoard."""

import json

import numpy as np
import pytest

from sfsc_deploy.cli import main
from sfsc_deploy.errors import SfscError
from sfsc_deploy.train.log import read_log
from sfsc_deploy.train.log_plots import plot_log, smooth
from tests.train.test_trainer import run

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_run_logs_and_plots_what_the_paper_plots(small_data, tmp_path):
    result = run(small_data, tmp_path, method="sfsc")
    log = read_log(result.out_dir)
    assert len(log.step) == len(log.epoch) and list(log.step) == sorted(log.step)
    assert sorted(log.per_width("grad_norm")) == [0.25, 0.5, 1.0]
    # u is what the evidential loss measured, for the narrow widths it trains
    assert sorted(log.per_width("uncertainty")) == [0.25, 0.5]
    assert log.column("evidence_offset") is not None
    for name in ("losses", "grad_norms", "uncertainty", "conflicts"):
        assert (result.out_dir / "plots" / f"{name}.png").read_bytes().startswith(PNG)


def test_plot_log_skips_the_uncertainty_plot_for_a_method_without_one(small_data, tmp_path):
    result = run(small_data, tmp_path, method="bct-s", plots=False)
    assert not (result.out_dir / "plots").exists()
    plots = plot_log(result.out_dir, tmp_path / "figs")
    assert plots.uncertainty is None
    assert sorted(p.name for p in plots.paths) == ["conflicts.png", "grad_norms.png", "losses.png"]


@pytest.mark.slow
def test_plot_log_command_plots_every_network_of_a_baseline_run(small_data, tmp_path, capsys):
    result = run(small_data, tmp_path, method="unified", plots=False)
    with pytest.raises(SystemExit) as exit_:
        main(["plot-log", str(result.out_dir), "--out", str(tmp_path / "figs")])
    assert exit_.value.code in (0, None)
    for width in ("w1", "w0.5", "w0.25"):
        assert (tmp_path / "figs" / width / "grad_norms.png").read_bytes().startswith(PNG)
    assert "w0.25" in capsys.readouterr().out


def test_tensorboard_event_file_holds_the_logged_scalars(small_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run(small_data, tmp_path, method="sfsc", tensorboard=True, plots=False)
    board = EventAccumulator(str(result.out_dir / "tensorboard"))
    board.Reload()
    tags = set(board.Tags()["scalars"])
    assert {"loss/1", "grad_norm/0.25", "uncertainty/0.5", "conflicts", "evidence_offset"} <= tags
    steps = [e.step for e in board.Scalars("loss/1")]
    assert steps == list(read_log(result.out_dir).step)


def test_a_damaged_or_missing_log_is_one_clear_error(tmp_path):
    with pytest.raises(SfscError, match="no training log"):
        read_log(tmp_path)
    (tmp_path / "train_log.jsonl").write_text(
        json.dumps({"epoch": 0, "step": 1, "loss/1": 2.0}) + "\n{oops\n"
    )
    with pytest.raises(SfscError, match="line 2 is not JSON"):
        read_log(tmp_path)


def test_smooth_is_a_trailing_mean_that_ignores_gaps():
    values = np.array([1.0, 3.0, np.nan, 5.0])
    assert np.allclose(smooth(values, 2), [1.0, 2.0, 3.0, 5.0])
