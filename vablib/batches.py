"""A batched data path that stays on the device.

The images move to the device once, as uint8 N×C×H×W (≈150 MB for all of CIFAR-10). Shuffling,
random crop with zero padding, horizontal flip and normalisation act on a whole batch at once:
no PIL, no DataLoader workers. Random draws come from an explicit CPU torch.Generator, so a seed
gives the same batches on CPU and CUDA.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Per-channel statistics used for normalisation; other datasets use 0.5/0.5.
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "gtsrb": ((0.3403, 0.3121, 0.3214), (0.2724, 0.2608, 0.2669)),
}


def to_device_uint8(x_nhwc: np.ndarray, device) -> torch.Tensor:
    """N×H×W×C uint8 numpy → N×C×H×W uint8 tensor on the device (never float).

    The copy into a fresh tensor gives canonical strides: for one channel, `.contiguous()` would
    keep the permuted strides (1024, 1, 32, 1), which crash oneDNN's conv backward on CPU for some
    batch sizes (seen with torch 2.14.1)."""
    nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc)).permute(0, 3, 1, 2)
    return torch.empty(nchw.shape, dtype=torch.uint8).copy_(nchw).to(device)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Per-image random crop (zero padding `pad`) and horizontal flip of a uint8 or float batch
    B×C×H×W, done with one gather. Offsets and flips are drawn on the CPU from `generator`."""
    b, c, h, w = x.shape
    if pad > 0:
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # B,1,H,1
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # B,1,1,W
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        do_flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(do_flip, x.flip(3), x)
    return x


@dataclass
class Normalizer:
    """uint8 batch → float batch (x/255 − mean)/std, optionally channels_last."""

    mean: torch.Tensor
    std: torch.Tensor
    channels_last: bool = False

    @classmethod
    def for_dataset(cls, name: str, channels: int, device, channels_last: bool = False) -> "Normalizer":
        mean, std = NORMALIZATION.get(name, ((0.5,) * channels, (0.5,) * channels))
        if len(mean) != channels:
            mean, std = (0.5,) * channels, (0.5,) * channels
        shape = (1, channels, 1, 1)
        return cls(torch.tensor(mean, device=device).view(shape), torch.tensor(std, device=device).view(shape), channels_last)

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = (x_uint8.float() / 255.0 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class BatchIterator:
    """Iterates an on-device uint8 image tensor in batches of (float images, labels, indices).

    augment=True applies crop-with-padding and flip per batch. For several views of one batch
    (AttentionMix, suppression) iterate `raw()` and call `view(raw)` once per view."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, normalizer: Normalizer, batch_size: int = 128,
                 shuffle: bool = True, augment: bool = False, pad: int = 4, drop_last: bool = False,
                 seed: int = 0, indices: torch.Tensor | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"images must be a uint8 N×C×H×W tensor, got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels, self.normalize = images, labels, normalizer
        self.batch_size, self.shuffle, self.augment, self.pad, self.drop_last = batch_size, shuffle, augment, pad, drop_last
        self.indices = torch.arange(len(images)) if indices is None else torch.as_tensor(indices).cpu()
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor:
        if self.shuffle:
            return self.indices[torch.randperm(len(self.indices), generator=self.generator)]
        return self.indices

    def view(self, x_uint8: torch.Tensor) -> torch.Tensor:
        if self.augment:
            x_uint8 = random_crop_flip(x_uint8, self.generator, pad=self.pad)
        return self.normalize(x_uint8)

    def raw(self):
        """Yields (uint8 images, labels, indices) per batch."""
        order = self.order().to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            yield self.images[idx], self.labels[idx], idx

    def __iter__(self):
        for raw, y, idx in self.raw():
            yield self.view(raw), y, idx

    def endless(self):
        """`raw()` batches without end, reshuffled at every pass (to pair a smaller set's batches
        with a larger one's)."""
        while True:
            yield from self.raw()
