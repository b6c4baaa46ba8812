"""The README's set-up commands stay true: CI runs its test command, its first screen has both."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _first_screen() -> str:
    return "\n".join((ROOT / "README.md").read_text().splitlines()[:30])


def test_ci_runs_the_readme_test_command():
    screen = _first_screen()
    assert "python -m pytest -q" in screen
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1].strip() == "python -m pytest -q"


def test_first_screen_installs_with_the_pinned_torch():
    screen = _first_screen()
    assert 'pip install torch==2.13.0 ".[dev]"' in screen
    assert "sfsc-deploy" in screen


# --------------------------------------------------------------------------- every README command runs
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from tests.readme_pipeline import readme_commands  # noqa: E402


def test_every_readme_command_runs(readme_run):
    subcommands = {c.split()[1] for c in readme_commands()}
    assert {
        "demo",
        "init",
        "info",
        "slice",
        "train",
        "eval",
        "plot-log",
        "export",
        "extract",
        "verify",
        "search",
        "bench",
        "profile",
        "plan",
    } <= subcommands
    assert [r.command for r in readme_run.runs] == readme_commands()
    for done in readme_run.runs:
        # verify and plan end in a verdict (exit 1 = checked and failed, e.g. a 1-epoch model's int8
        # ranking drifts); anything else must succeed, and no command may hit a usage error (2)
        allowed = (0, 1) if done.subcommand in ("verify", "plan") else (0,)
        assert done.returncode in allowed, f"{done.command}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    folder = readme_run.folder
    assert (folder / "sfsc-demo" / "report.md").exists()
    assert (folder / "deploy" / "manifest.json").exists() and (folder / "verify.json").exists()
    assert (folder / "w025" / "model.json").exists() and (folder / "runs" / "market" / "eval").is_dir()


# ------------------------------------------------------------------ the README's Python and the examples
# (pattern in the README, tiny replacement): each must match, so a README edit cannot skip it silently
PY_TINY = [
    (
        'load_dataset("synthetic")',
        'load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=8, num_test_ids=4))',
    ),
    ("epochs=10", "epochs=1, batch_ids=4, batch_k=2"),
    ("feature_dim=256", "feature_dim=32"),
    ("width_mult=0.5, input_size=(128, 64)", "width_mult=0.25, input_size=(64, 32)"),
]


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README has no Python example"
    return "\n".join(blocks)


@pytest.mark.slow
def test_readme_python_runs(tmp_path, monkeypatch):
    source = readme_python()
    for pattern, tiny in PY_TINY:
        assert pattern in source, f"README Python no longer contains {pattern!r}; update PY_TINY"
        source = source.replace(pattern, tiny)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile("from sfsc_deploy.data import SyntheticConfig\n" + source, "README.md", "exec"), namespace)
    assert (tmp_path / "ck.safetensors").exists()
    assert (tmp_path / "runs" / "sfsc" / "checkpoint.safetensors").exists()
    matrix = namespace["matrix"]
    assert set(matrix.widths) == {0.25, 0.5, 0.75, 1.0}
    assert 0.0 <= matrix.value(0.25, 1.0) <= 100.0
    assert list(namespace["feats"].shape) == [2, 512]


@pytest.mark.slow
def test_slice_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "slice_in_python.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.count("max |sliced - switchable| = ") == 4
    assert (tmp_path / "example.safetensors").exists() and (tmp_path / "example-w025" / "model.json").exists()
