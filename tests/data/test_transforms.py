import torch

from exporters.graph import normalize_images as normalize
from sfsc_deploy.data.transforms import TrainTransform, resize

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def images(n=6):
    return torch.randint(0, 256, (n, 3, 16, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_normalize_matches_the_formula():
    x = images()
    out = normalize(x, MEAN, STD)
    assert torch.allclose(out[:, 1], (x[:, 1].float() / 255 - 0.4) / 0.25)


def test_flip_only_flips():
    x = images()
    out = TrainTransform(MEAN, STD, flip=1.0, pad=0, erasing=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, normalize(x.flip(-1), MEAN, STD))


def test_pad_and_crop_keeps_shape_and_content_shifted():
    x = images()
    out = TrainTransform(MEAN, STD, flip=0.0, pad=2, erasing=0.0)(x, torch.Generator().manual_seed(1))
    assert out.shape == (6, 3, 16, 8)
    shifted = 0
    for i in range(6):  # each output is a 16x8 window of the zero-padded image
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        offsets = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.allclose(out[i], normalize(padded[None, :, dy : dy + 16, dx : dx + 8], MEAN, STD)[0])
        ]
        assert offsets
        shifted += offsets[0] != (2, 2)
    assert shifted > 0  # crops really move


def test_same_generator_same_output_and_erasing_changes_pixels():
    x = images()
    t = TrainTransform(MEAN, STD, erasing=1.0)
    a = t(x, torch.Generator().manual_seed(5))
    b = t(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    plain = TrainTransform(MEAN, STD, erasing=0.0)(x, torch.Generator().manual_seed(5))
    assert not torch.equal(a, plain)


def test_resize_to_size():
    assert resize(images(), (8, 4)).shape == (6, 3, 8, 4)
    assert resize(images(), (8, 4)).dtype == torch.uint8


def test_one_generator_per_image_makes_each_image_independent_of_the_others():
    x = images()
    t = TrainTransform(MEAN, STD, flip=0.5, pad=2, erasing=0.5)
    gens = lambda: [torch.Generator().manual_seed(10 + i) for i in range(6)]  # noqa: E731
    batch = t(x, gens())
    alone = torch.cat([t(x[i : i + 1], [g]) for i, g in enumerate(gens())])
    assert torch.equal(batch, alone)
    assert torch.equal(t(x[2:4], gens()[2:4]), batch[2:4])  # any subset: the same rows
    assert not torch.equal(batch, t(x, torch.Generator().manual_seed(10)))
