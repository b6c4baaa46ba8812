import numpy as np
import pytest
from PIL import Image

from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.records import Record
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.errors import SfscError


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    rng = np.random.default_rng(0)
    records = []
    for i in range(3):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)).save(path)
        records.append(Record(str(path), i, 1))
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    records.append(Record(str(tmp_path / "bad.jpg"), 9, 1))
    bank = build_bank(records, (32, 16), split="gallery", progress=False)
    assert len(bank) == 3 and bank.images.shape == (3, 3, 32, 16)
    assert bank.pids.tolist() == [0, 1, 2]
    assert "skipped 1 unreadable" in capsys.readouterr().err


def test_empty_split_is_an_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    with pytest.raises(SfscError, match="split 'query' has no readable images"):
        build_bank([Record(str(tmp_path / "bad.jpg"), 1, 1)], (32, 16), split="query", progress=False)


def test_synthetic_records_are_rendered_at_the_model_size():
    splits = load_dataset("synthetic", synthetic=SyntheticConfig(num_train_ids=4, num_test_ids=2))
    bank = build_bank(splits.query, (64, 32), progress=False)
    assert bank.images.shape[1:] == (3, 64, 32) and len(bank) == len(splits.query)


def test_load_dataset_errors(tmp_path):
    with pytest.raises(SfscError, match="not found"):
        load_dataset(str(tmp_path / "missing"))
    with pytest.raises(SfscError, match="unknown --format"):
        load_dataset(str(tmp_path), "coco")
