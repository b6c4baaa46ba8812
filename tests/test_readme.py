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
