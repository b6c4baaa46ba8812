from pathlib import Path

import pytest

from sfsc_deploy.deploy.tiers import DEFAULT_TIERS, Tier, load_tiers
from sfsc_deploy.errors import SfscError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_tiers_load_with_the_default_widths():
    tiers = load_tiers(EXAMPLES / "tiers.toml")
    assert {t.name: t.width for t in tiers} == {"cloud": 1.0, "edge": 0.75, "mobile": 0.5, "camera": 0.25}
    assert {t.name: t.width for t in tiers} == {t.name: t.width for t in DEFAULT_TIERS}
    camera = tiers[-1]
    assert camera.precision == "int8" and camera.bake_preprocess and camera.batch == (1, 1, 4)
    assert tiers[1].latency_budget_ms == 20.0
    gpu = load_tiers(EXAMPLES / "tiers_gpu.toml")
    assert gpu[0].format == "tensorrt" and gpu[0].precision == "fp16"


def write(tmp_path, text):
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[tier]\nname=", "not valid TOML"),
        ("x = 1\n", "no \\[\\[tier\\]\\]"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\ncolour = "red"\n', "unknown keys"),
        ('[[tier]]\nname = "a"\n', "needs a name and a width"),
        ('[[tier]]\nname = "a"\nwidth = 1.5\n', "outside"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nformat = "tflite"\n', "format"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nprecision = "fp16"\n', "fp16 is for GPUs"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nbatch = [8, 1, 4]\n', "batch"),
        ('[[tier]]\nname = "a b"\nwidth = 0.5\n', "name"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\n[[tier]]\nname = "a"\nwidth = 1.0\n', "unique"),
    ],
)
def test_bad_tier_files_are_one_line(tmp_path, text, message):
    with pytest.raises(SfscError, match=message):
        load_tiers(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        load_tiers(tmp_path / "none.toml")


def test_tier_round_trips_to_dict():
    t = Tier("edge", 0.75, batch=[1, 4, 8])
    assert t.batch == (1, 4, 8)
    assert Tier(**t.to_dict()) == t
