import pytest
import torch

from sfsc_deploy.data.sampler import PKSampler, RandomSampler
from sfsc_deploy.errors import SfscError


def test_batches_are_p_identities_times_k_images():
    pids = [i // 5 for i in range(50)] + [10, 11]  # ids 10 and 11 have a single image
    sampler = PKSampler(pids, p=4, k=3, seed=0)
    batches = sampler.batches(0)
    assert len(batches) == len(pids) // 12
    for batch in batches:
        ids = [pids[i] for i in batch]
        assert len(batch) == 12 and len(set(ids)) == 4
        assert all(ids.count(pid) == 3 for pid in set(ids))


def test_batches_are_a_function_of_seed_and_epoch():
    pids = torch.arange(60) // 4
    a, b = PKSampler(pids, 4, 4, seed=1), PKSampler(pids, 4, 4, seed=1)
    assert a.batches(3) == b.batches(3)
    assert a.batches(3) != a.batches(4)
    assert a.batches(3) != PKSampler(pids, 4, 4, seed=2).batches(3)


def test_too_few_identities():
    with pytest.raises(SfscError, match="lower --batch-ids"):
        PKSampler([0, 0, 1, 1], p=4, k=2)


def test_random_batches_are_distinct_images_from_one_shuffle():
    sampler = RandomSampler(50, 8, seed=0)
    batches = sampler.batches(0)
    assert len(batches) == len(sampler) == 6 and all(len(b) == 8 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == 48  # without replacement; the last 2 of this epoch's order are dropped
    assert flat != sorted(flat)
    assert sampler.batches(0) == RandomSampler(50, 8, seed=0).batches(0)
    assert sampler.batches(0) != sampler.batches(1)


def test_random_sampler_needs_a_full_batch():
    with pytest.raises(SfscError, match="lower the batch size"):
        RandomSampler(5, 8)
