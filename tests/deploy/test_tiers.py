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
        # types are exact: a string is not a bool, a bool is not a number
        (
            '[[tier]]\nname = "a"\nwidth = 0.5\nnormalize = "false"\n',
            "normalize must be true or false, got str",
        ),
        (
            '[[tier]]\nname = "a"\nwidth = 0.5\nbake_preprocess = "no"\n',
            "bake_preprocess must be true or false",
        ),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nnormalize = 1\n', "normalize must be true or false, got int"),
        ('[[tier]]\nname = "a"\nwidth = true\n', "width must be a number, got bool"),
        ('[[tier]]\nname = "a"\nwidth = "0.5"\n', "width must be a number"),
        ('[[tier]]\nname = "a"\nwidth = nan\n', "width must be finite"),
        ("[[tier]]\nname = 7\nwidth = 0.5\n", "name must be a string"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nthreads = 2.5\n', "threads must be an integer"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nthreads = -1\n', "threads must be in"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nbatch = [1, "8", 32]\n', "three integers"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nbatch = 4\n', "batch must be a list"),
        ('[[tier]]\nname = "a"\nwidth = 0.5\nlatency_budget_ms = inf\n', "latency_budget_ms must be finite"),
        ("tier = [1, 2]\n", "not a table"),
    ],
)
def test_bad_tier_files_are_one_line(tmp_path, text, message):
    with pytest.raises(SfscError, match=message):
        load_tiers(write(tmp_path, text))


def test_a_directory_in_place_of_the_file(tmp_path):
    with pytest.raises(SfscError, match="is a directory"):
        load_tiers(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        load_tiers(tmp_path / "none.toml")


def test_tier_round_trips_to_dict():
    t = Tier("edge", 0.75, batch=[1, 4, 8])
    assert t.batch == (1, 4, 8)
    assert Tier(**t.to_dict()) == t


def test_openvino_tiers_take_fp32_and_int8_and_refuse_fp16(tmp_path):
    text = (
        '[[tier]]\nname = "nuc"\nwidth = 0.5\nformat = "openvino"\n\n'
        '[[tier]]\nname = "cam"\nwidth = 0.25\nformat = "openvino"\nprecision = "int8"\n'
        "bake_preprocess = true\n"
    )
    nuc, cam = load_tiers(write(tmp_path, text))
    assert (nuc.format, nuc.precision) == ("openvino", "fp32")
    assert (cam.format, cam.precision, cam.bake_preprocess) == ("openvino", "int8", True)
    assert Tier(**cam.to_dict()) == cam
    bad = '[[tier]]\nname = "a"\nwidth = 0.5\nformat = "openvino"\nprecision = "fp16"\n'
    with pytest.raises(SfscError, match="tier 'a': fp16 is for GPUs; .* for OpenVINO on CPU") as exc:
        load_tiers(write(tmp_path, bad))
    assert "\n" not in str(exc.value)
    with pytest.raises(SfscError, match="format 'OpenVINO' is not one of onnx, openvino, tensorrt"):
        Tier("a", 0.5, format="OpenVINO")
