import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from sfsc_deploy.errors import SfscError
from sfsc_deploy.models import checkpoint
from tests.conftest import tiny


@pytest.fixture
def saved(tmp_path):
    net = tiny("mobilenet_v2")
    path = checkpoint.save(net, tmp_path / "ck.safetensors", note="hello", epoch=3)
    return net, path


def test_roundtrip_restores_every_width_and_metadata(saved, images):
    net, path = saved
    loaded = checkpoint.load(path)
    assert loaded.widths == net.widths
    assert loaded.config == net.config
    for w in net.widths:
        with net.at_width(w), loaded.at_width(w), torch.no_grad():
            assert torch.equal(net(images), loaded(images))
    header = checkpoint.read_header(path)
    assert header["extra"] == {"note": "hello", "epoch": 3}
    assert header["family_id"] == checkpoint.family_id(loaded)
    assert header["config"]["options"]["input_size"] == [64, 32]


def test_family_id_tracks_shared_weights_only():
    net = tiny("resnet18")
    fid = checkpoint.family_id(net)
    with torch.no_grad():
        net.backbone.stem[1].bn["0_5"].running_mean.add_(1.0)  # per-width BN
        net.classifier.weight.add_(1.0)  # never deployed
    assert checkpoint.family_id(net) == fid
    with torch.no_grad():
        net.backbone.layer1[0].conv1.weight[0, 0, 0, 0] += 1e-3  # shared weight
    assert checkpoint.family_id(net) != fid


def test_missing_directory_and_empty_files(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        checkpoint.load(tmp_path / "nope.safetensors")
    with pytest.raises(SfscError, match="is a directory"):
        checkpoint.load(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(SfscError, match="empty or truncated"):
        checkpoint.load(tmp_path / "empty")


def test_truncated_file_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SfscError, match="truncated|corrupt"):
        checkpoint.load(cut)


def test_flipped_byte_is_caught_by_the_checksum(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data, after the header
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(SfscError, match="checksum mismatch"):
        checkpoint.load(bad)


def test_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(SfscError, match="not an sfsc-deploy checkpoint"):
        checkpoint.load(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    zipped = tmp_path / "evil.pt"
    torch.save({"state": _Exploit(marker)}, zipped)
    with pytest.raises(SfscError, match="pickle"):
        checkpoint.load(raw)
    with pytest.raises(SfscError, match="torch.save"):
        checkpoint.load(zipped)
    assert not marker.exists()


def test_failed_save_leaves_previous_file_and_no_temp(saved, monkeypatch):
    net, path = saved
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "st_save", boom)
    with pytest.raises(OSError):
        checkpoint.save(net, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_save_without_force_refuses_existing(saved):
    net, path = saved
    with pytest.raises(SfscError, match="--force"):
        checkpoint.save(net, path, force=False)


def _rewrite_header(path, edit) -> None:
    """Rewrite the sfsc-deploy header in place (an attacker or a careless tool would)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        header = json.loads(fh.metadata()[checkpoint.METADATA_KEY])
    edit(header)
    save_file(load_file(str(path)), str(path), metadata={checkpoint.METADATA_KEY: json.dumps(header)})


def test_a_flipped_byte_in_the_header_is_caught(saved):
    _, saved = saved
    """0.485 → 0.985 in the stored normalisation mean changes every feature: refused, not used."""
    data = saved.read_bytes()
    assert data.count(b"0.485") == 1
    saved.write_bytes(data.replace(b"0.485", b"0.985"))
    with pytest.raises(SfscError, match="header checksum mismatch"):
        checkpoint.load(saved)
    with pytest.raises(SfscError, match="header checksum mismatch"):
        checkpoint.read_header(saved)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("feature_dim", 10**10, "feature_dim must be in"),
        ("num_classes", -3, "num_classes in"),
        ("widths", "many", "invalid network config"),
        ("options.input_size", [60000, 30000], "input_size must be"),
        ("options.mean", [float("nan"), 0.4, 0.4], "mean must be finite"),
        ("options.std", [0.0, 0.2, 0.2], "std in"),
        ("options.width_mult", -1, "width_mult must be"),
        ("options", "none", "invalid network config"),
    ],
)
def test_impossible_header_values_are_refused_before_allocating(saved, field, value, message):
    """Even with a matching header digest (recomputed, as a forger would), sizes are bounded first."""
    _, saved = saved

    def edit(header):
        target = header["config"]
        *parents, leaf = field.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
        header["header_sha256"] = checkpoint.header_digest(header)

    _rewrite_header(saved, edit)
    with pytest.raises(SfscError, match=message) as info:
        checkpoint.load(saved)
    assert str(saved) in str(info.value)


def test_format_1_checkpoints_without_a_header_digest_still_load(saved, images):
    _, saved = saved

    def edit(header):
        header["format_version"] = 1
        del header["header_sha256"]

    before = checkpoint.load(saved)
    _rewrite_header(saved, edit)
    after = checkpoint.load(saved)
    assert torch.equal(before.eval()(images), after.eval()(images))
