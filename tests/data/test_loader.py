"""The training loader: the same batches from the bank or streamed, for any workers and any shard."""

import functools
import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from sfsc_deploy.data import load_dataset
from sfsc_deploy.data.bank import build_bank
from sfsc_deploy.data.images import can_open, read_image
from sfsc_deploy.data.loader import EpochBatches, epoch_loader, image_generator, resolve_workers
from sfsc_deploy.data.records import Record
from sfsc_deploy.data.sampler import PKSampler, RandomSampler
from sfsc_deploy.data.stream import StreamSource
from sfsc_deploy.data.synthetic import SyntheticConfig
from sfsc_deploy.data.transforms import TrainTransform
from sfsc_deploy.errors import SfscError
from sfsc_deploy.train.distributed import World, shard

SIZE = (64, 32)
TRANSFORM = TrainTransform((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), flip=0.5, pad=4, erasing=0.5)


@pytest.fixture(scope="module")
def synthetic_records():
    data = load_dataset(
        "synthetic", synthetic=SyntheticConfig(num_train_ids=6, num_test_ids=2, images_per_id_per_camera=2)
    )
    return data.train


def write_images(folder, ids=4, per_id=3, bad=()):
    """JPEG and PNG files of several sizes (resized to SIZE when read), ``per_id`` per identity."""
    rng = np.random.default_rng(0)
    records = []
    for pid in range(ids):
        for k in range(per_id):
            h, w = [(80, 40), (100, 45), (64, 32)][k % 3]
            path = folder / f"{pid}_{k}.{'png' if k % 2 else 'jpg'}"
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
            records.append(Record(str(path), pid, k))
    return records


def truncate(path):
    """A JPEG whose header opens but whose pixels fail to decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert can_open(path) and read_image(path) is None


def items(source, sampler, epoch=1, world=None):
    part = functools.partial(shard, world=world) if world is not None else None
    batches = EpochBatches(source, sampler.batches(epoch), TRANSFORM, seed=3, epoch=epoch, shard=part)
    return [batches[i] for i in range(len(batches))]


def assert_same(a, b):
    assert len(a) == len(b) > 0
    for (xa, ya, _), (xb, yb, _) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_stream_and_bank_give_equal_batches_on_synthetic_data(synthetic_records):
    bank = build_bank(synthetic_records, SIZE, progress=False)
    stream = StreamSource(synthetic_records, SIZE, progress=False)
    assert torch.equal(stream.pids, bank.pids) and stream.paths == bank.paths
    assert torch.equal(stream.load(range(len(stream))), bank.images)  # rendered in any grouping alike
    sampler = PKSampler(bank.pids, 4, 2, seed=3)
    assert_same(items(stream, sampler), items(bank, sampler))
    # the augmentation is really random per image and per epoch
    x = items(bank, sampler)[0][0]
    assert not torch.equal(x, items(bank, sampler, epoch=2)[0][0])


def test_stream_and_bank_give_equal_batches_on_image_files(tmp_path):
    records = write_images(tmp_path)
    bank = build_bank(records, SIZE, progress=False)
    stream = StreamSource(records, SIZE, progress=False)
    assert torch.equal(stream.load(range(len(stream))), bank.images)  # resized exactly alike
    for sampler in (PKSampler(bank.pids, 2, 2, seed=1), RandomSampler(len(bank), 4, seed=1)):
        assert_same(items(stream, sampler), items(bank, sampler))


def test_two_workers_give_the_batches_of_none(tmp_path):
    records = write_images(tmp_path)
    bank = build_bank(records, SIZE, progress=False)
    stream = StreamSource(records, SIZE, progress=False)
    sampler = PKSampler(bank.pids, 2, 2, seed=1)
    batches = EpochBatches(stream, sampler.batches(0), TRANSFORM, seed=3, epoch=0)
    with epoch_loader(batches, 2) as loader:
        with_workers = list(loader)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # workers run one thread: the main process's count must not matter either
    try:
        with epoch_loader(EpochBatches(bank, sampler.batches(0), TRANSFORM, seed=3, epoch=0), 0) as loader:
            without = list(loader)
    finally:
        torch.set_num_threads(threads)
    assert_same(with_workers, without)


def test_a_ranks_shard_is_the_matching_rows_of_the_one_process_batch(synthetic_records):
    bank = build_bank(synthetic_records, SIZE, progress=False)
    for sampler in (PKSampler(bank.pids, 4, 2, seed=3), RandomSampler(len(bank), 8, seed=3)):
        whole = items(bank, sampler)
        for rank in range(2):
            world = World(rank, 2)
            rows = torch.as_tensor(shard(range(8), world))
            expected = [(x[rows], y[rows], f) for x, y, f in whole]
            assert_same(items(bank, sampler, world=world), expected)


def test_workers_are_shut_down_when_an_epoch_fails(tmp_path):
    records = write_images(tmp_path)
    stream = StreamSource(records, SIZE, progress=False)
    batches = EpochBatches(stream, PKSampler(stream.pids, 2, 2).batches(0), TRANSFORM, seed=0, epoch=0)
    with pytest.raises(RuntimeError, match="step failed"), epoch_loader(batches, 2) as loader:
        next(loader)
        assert len(multiprocessing.active_children()) == 2
        raise RuntimeError("step failed")
    assert multiprocessing.active_children() == []


def test_unreadable_header_is_skipped_and_counted_at_construction(tmp_path, capsys):
    records = write_images(tmp_path, ids=2)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    (tmp_path / "empty.png").write_bytes(b"")
    records += [Record(str(tmp_path / "bad.jpg"), 0, 1), Record(str(tmp_path / "empty.png"), 1, 1)]
    stream = StreamSource(records, SIZE, split="train", progress=False)
    assert len(stream) == 6 and stream.pids.tolist() == [0, 0, 0, 1, 1, 1]
    assert "train: skipped 2 unreadable image(s)" in capsys.readouterr().err
    with pytest.raises(SfscError, match="split 'train' has no readable images"):
        StreamSource(records[-2:], SIZE, progress=False)


def test_an_image_that_fails_to_decode_is_replaced_by_one_of_its_identity(tmp_path):
    records = write_images(tmp_path, ids=2, per_id=3)
    truncate(tmp_path / "1_0.jpg")  # index 3: identity 1's first image
    stream = StreamSource(records, SIZE, progress=False)
    assert len(stream) == 6  # its header opens: only decoding finds it
    expected = StreamSource(records, SIZE, progress=False).load([4])  # the next image of identity 1
    assert torch.equal(stream.load([3]), expected) and stream.failed == {3}
    assert torch.equal(stream.load([3, 0]), torch.cat([expected, stream.load([0])]))  # again, alike
    sampler = PKSampler(stream.pids, 2, 3, seed=0)  # every image of both identities in every batch
    batch = EpochBatches(stream, sampler.batches(0), TRANSFORM, seed=0, epoch=0)[0]
    assert batch[2].tolist() == [3]  # handed back with the batch, for the training log


def test_an_identity_with_no_decodable_image_is_one_error(tmp_path):
    records = write_images(tmp_path, ids=2, per_id=2)
    truncate(tmp_path / "0_0.jpg")
    noise = np.random.default_rng(1).integers(0, 255, (80, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "0_1.jpg")  # identity 0's second image, a JPEG too
    records[1] = Record(str(tmp_path / "0_1.jpg"), 0, 1)
    truncate(tmp_path / "0_1.jpg")
    stream = StreamSource(records, SIZE, progress=False)
    with pytest.raises(SfscError, match="every image of identity 0 failed to decode"):
        stream.load([0])


def test_image_generators_differ_by_every_coordinate_and_repeat():
    draws = {
        key: torch.rand(4, generator=image_generator(*key)).tolist()
        for key in [(0, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]
    }
    assert len({tuple(d) for d in draws.values()}) == len(draws)
    assert torch.rand(4, generator=image_generator(0, 0, 0, 1)).tolist() == draws[(0, 0, 0, 1)]


def test_automatic_workers():
    assert resolve_workers(3, preloaded=True, device_type="cpu", local_processes=1) == 3
    assert resolve_workers(None, preloaded=True, device_type="cpu", local_processes=1) == 0
    streamed = resolve_workers(None, preloaded=False, device_type="cpu", local_processes=1)
    assert 1 <= streamed <= 8
    assert resolve_workers(None, preloaded=True, device_type="cuda", local_processes=10_000) == 1
