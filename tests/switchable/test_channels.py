import pytest

from sfsc_deploy.errors import SfscError
from sfsc_deploy.switchable.channels import Ch, channels_at, parse_widths, width_key


@pytest.mark.parametrize(
    ("width", "full", "divisor", "expected"),
    [
        (0.25, 64, 8, 16),
        (0.5, 64, 8, 32),
        (0.75, 64, 8, 48),
        (1.0, 64, 8, 64),
        (0.25, 16, 8, 8),  # never below the divisor
        (0.1, 16, 8, 8),
        (1.0, 20, 8, 20),  # full width is exact even when C is not a multiple of d
        (0.9, 20, 8, 16),
        (0.3125, 64, 8, 24),  # 2.5 rounds half-up to 3 (banker's rounding would give 16)
        (0.3, 10, 1, 3),  # d=1 is the paper's plain γ·C
        (0.95, 100, 8, 96),
    ],
)
def test_channels_at(width, full, divisor, expected):
    assert channels_at(width, full, divisor) == expected


def test_channels_never_exceed_full():
    for full in range(1, 80):
        for w in (0.1, 0.25, 0.5, 0.75, 0.99, 1.0):
            assert 1 <= channels_at(w, full, 8) <= full


def test_branch_pairs_stay_equal_halves():
    ch = Ch(58, 2)
    assert ch.full == 116
    for w in (0.25, 0.5, 0.75):
        assert ch.at(w, 8) == 2 * channels_at(w, 58, 8)
    assert ch.at(0.25, 8, sliced=False) == 116


def test_parse_widths_sorts_dedupes_and_adds_full():
    assert parse_widths("0.5, 0.25,0.5") == [0.25, 0.5, 1.0]
    assert parse_widths([0.1 + 0.2]) == [0.3, 1.0]


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.25", "abc", "nan"])
def test_parse_widths_rejects_bad_values(bad):
    with pytest.raises(SfscError, match="width"):
        parse_widths(bad)


def test_width_key_is_module_name_safe():
    assert width_key(0.25) == "0_25"
    assert width_key(1.0) == "1"
