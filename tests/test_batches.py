import numpy as np
import torch

from vablib.batches import BatchIterator, Normalizer, random_crop_flip, to_device_uint8


def _reference_crop_flip(x: np.ndarray, seed: int, pad: int) -> np.ndarray:
    """Per-sample reference: draws in the same order as random_crop_flip, then pad/crop/flip one
    image at a time with NumPy."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g).numpy()
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g).numpy()
    flips = (torch.rand(b, generator=g) < 0.5).numpy()
    out = np.empty_like(x)
    for i in range(b):
        padded = np.pad(x[i], ((0, 0), (pad, pad), (pad, pad)))
        crop = padded[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


def test_crop_flip_matches_per_sample_reference():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 3, 12, 10), dtype=np.uint8)
    got = random_crop_flip(torch.from_numpy(x), torch.Generator().manual_seed(7), pad=4)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got.numpy(), _reference_crop_flip(x, 7, 4))


def test_crop_flip_changes_images_and_keeps_zero_padding_range():
    x = torch.full((32, 1, 8, 8), 200, dtype=torch.uint8)
    got = random_crop_flip(x, torch.Generator().manual_seed(0), pad=2)
    assert (got == 0).any() and (got == 200).any()  # some crops show the zero padding


def test_normalizer_and_channels_last():
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 4, 4).contiguous()
    norm = Normalizer.for_dataset("cifar10", 3, "cpu", channels_last=True)
    y = norm(x)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y[1, :, 0, 0], (1 - norm.mean.flatten()) / norm.std.flatten())
    assert Normalizer.for_dataset("digits", 1, "cpu")(x[:, :1]).abs().max().item() == 1.0


def _iterator(n=50, seed=3, **kw):
    rng = np.random.default_rng(0)
    images = to_device_uint8(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), "cpu")
    labels = torch.arange(n)
    return BatchIterator(images, labels, Normalizer.for_dataset("x", 3, "cpu"), batch_size=16, seed=seed, **kw)


def test_iterator_covers_every_sample_once_per_epoch():
    it = _iterator(augment=True)
    assert len(it) == 4
    seen = torch.cat([idx for _, _, idx in it])
    assert sorted(seen.tolist()) == list(range(50))
    x, y, idx = next(iter(it))
    assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32 and torch.equal(y, idx)


def test_iterator_is_deterministic_under_a_seed_and_differs_across_seeds():
    a = [x for x, _, _ in _iterator(seed=5, augment=True)]
    b = [x for x, _, _ in _iterator(seed=5, augment=True)]
    c = [x for x, _, _ in _iterator(seed=6, augment=True)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_iterator_subset_and_drop_last():
    it = _iterator(indices=torch.arange(10, 45), drop_last=True, shuffle=False)
    batches = [idx for _, _, idx in it]
    assert len(it) == len(batches) == 2 and batches[0].tolist() == list(range(10, 26))
