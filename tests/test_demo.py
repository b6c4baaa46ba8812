import json

from sfsc_deploy.cli import main
from sfsc_deploy.demo import DemoConfig, run_demo


def test_quick_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    try:
        main(["demo", "--quick", "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
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
    assert "report.md" in capsys.readouterr().out


def test_demo_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    import pytest

    from sfsc_deploy.errors import SfscError

    with pytest.raises(SfscError, match="not empty"):
        run_demo(DemoConfig(tmp_path, quick=True))
    assert (tmp_path / "keep.txt").read_text() == "mine"
