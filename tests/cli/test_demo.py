import json

import pytest

from sfsc_deploy.demo import DemoConfig, run_demo


def test_quick_demo_runs_the_whole_pipeline(readme_run):
    """The README's first command (``sfsc-deploy demo``, run quick), read from the shared run."""
    (demo,) = readme_run.of("demo")
    assert demo.returncode == 0, demo.stderr[-1500:]
    out = readme_run.folder / "sfsc-demo"
    report = (out / "report.md").read_text()
    for section in ("Compatibility matrix", "Exported tiers and latency", "Verification"):
        assert section in report
    manifest = json.loads((out / "deploy" / "manifest.json").read_text())
    assert [a["tier"] for a in manifest["artifacts"]] == ["cloud", "edge", "mobile", "camera"]
    assert manifest["artifacts"][-1]["precision"] == "int8"
    for png in ("eval/compat_matrix.png", "bench/latency_vs_width.png", "bench/accuracy_vs_latency.png"):
        assert (out / png).stat().st_size > 1000
    verdicts = [json.loads(p.read_text())["passed"] for p in sorted((out / "verify").glob("*.json"))]
    assert len(verdicts) == 4 and all(verdicts)
    assert "report.md" in demo.stdout


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    from sfsc_deploy.errors import SfscError

    with pytest.raises(SfscError, match="not empty"):
        run_demo(DemoConfig(tmp_path, quick=True))
    assert (tmp_path / "keep.txt").read_text() == "mine"
