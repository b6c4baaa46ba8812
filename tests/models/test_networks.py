import pytest

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models.networks import NETWORKS, read_networks, write_networks


def test_round_trip(tmp_path):
    (tmp_path / "w0.5").mkdir()
    write_networks(
        tmp_path, "bct", {0.5: tmp_path / "w0.5" / "c.safetensors", 1.0: tmp_path / "c.safetensors"}
    )
    method, networks = read_networks(tmp_path)
    assert method == "bct"
    assert networks == {
        0.5: (tmp_path / "w0.5" / "c.safetensors").resolve(),
        1.0: (tmp_path / "c.safetensors").resolve(),
    }


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"method": "sfsc", "networks": [{"width": 1.0, "checkpoint": "../../etc/passwd"}]}',
            "outside the run",
        ),
        ('{"method": "sfsc", "networks": [{"width": 1.0, "checkpoint": "/etc/passwd"}]}', "outside the run"),
        ("{oops", "is damaged"),
        ('{"method": "sfsc"}', "is damaged"),
        ('{"method": 3, "networks": [{"width": 1.0, "checkpoint": "c"}]}', "is damaged"),
        ('{"method": "sfsc", "networks": [{"width": "x", "checkpoint": "c"}]}', "is damaged"),
        ('{"method": "sfsc", "networks": [{"width": 7, "checkpoint": "c"}]}', "outside (0, 1]"),
        ('{"method": "sfsc", "networks": [{"width": true, "checkpoint": "c"}]}', "is damaged"),
        ('{"method": "sfsc", "networks": []}', "is damaged"),
        ("[]", "is damaged"),
    ],
)
def test_a_damaged_or_hostile_map_is_one_line(tmp_path, content, message):
    """A run's network map never sends a reader outside the run, and damage is named, not a crash."""
    (tmp_path / NETWORKS).write_text(content)
    with pytest.raises(SfscError, match=message.replace("(", r"\(").replace("]", r"\]")):
        read_networks(tmp_path)
