"""Pure trigger functions: a uint8 batch N×H×W×C in, a uint8 batch of the same shape out.

Each works on a whole batch at once (NumPy broadcasting or one torch call), for any image size and
channel count. The pattern builders make the fixed parts of a trigger (a patch, a blend image, a
warping field) from explicit generators, so a seed always gives the same trigger.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- patterns

PATCH_STYLES = ("random", "white", "black", "checkerboard")


def make_patch(size: int, channels: int, style: str = "random", seed: int = 0) -> np.ndarray:
    """A size×size×C uint8 patch: fixed random colours (seeded), white, black or a black/white
    checkerboard (top-left white)."""
    if style == "random":
        return np.random.default_rng(seed).integers(0, 256, (size, size, channels), dtype=np.uint8)
    if style == "white":
        return np.full((size, size, channels), 255, np.uint8)
    if style == "black":
        return np.zeros((size, size, channels), np.uint8)
    if style == "checkerboard":
        board = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0).astype(np.uint8) * 255
        return np.repeat(board[:, :, None], channels, axis=2)
    raise ValueError(f"unknown patch style {style!r}; choose one of {PATCH_STYLES}.")


def patch_origin(location, image_hw: tuple[int, int], size: int, margin: int = 1) -> tuple[int, int]:
    """Top-left (row, col) of a patch: an explicit [row, col] (negative values count from the
    bottom/right edge, like Python indices) or a corner name such as 'bottom_right'."""
    h, w = image_hw
    if isinstance(location, str):
        vertical, horizontal = location.split("_")
        row = margin if vertical == "top" else h - size - margin
        col = margin if horizontal == "left" else w - size - margin
        return row, col
    row, col = (int(v) for v in location)
    return (row % h if row < 0 else row), (col % w if col < 0 else col)


def smooth_pattern(image_hw: tuple[int, int], channels: int, seed: int = 0, cells: int = 4) -> np.ndarray:
    """A smooth, fixed colour image (a cells×cells random field upsampled bicubically, stretched to
    0..255): a stand-in for the reference's cartoon image that, like it, survives small shifts."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, cells, cells, generator=g)
    field = F.interpolate(coarse, size=image_hw, mode="bicubic", align_corners=True)[0]
    lo, hi = field.amin(dim=(1, 2), keepdim=True), field.amax(dim=(1, 2), keepdim=True)
    field = (field - lo) / (hi - lo).clamp_min(1e-8) * 255
    return field.round().to(torch.uint8).permute(1, 2, 0).numpy()


def noise_pattern(image_hw: tuple[int, int], channels: int, seed: int = 0) -> np.ndarray:
    """Uniform random noise image (Chen et al.'s 'random pattern' blend key)."""
    return np.random.default_rng(seed).integers(0, 256, (*image_hw, channels), dtype=np.uint8)


# ---------------------------------------------------------------- trigger functions

def paste_patch(x: np.ndarray, patch: np.ndarray, row: int, col: int) -> np.ndarray:
    """BadNets: overwrite the pixels at [row:row+p, col:col+p] with `patch` (p×p×C) in every image."""
    out = x.copy()
    ph, pw = patch.shape[:2]
    out[:, row:row + ph, col:col + pw, :] = patch
    return out


def paste_corners(x: np.ndarray, patch: np.ndarray, margin: int = 0, amplitude: float = 1.0) -> np.ndarray:
    """Label-consistent trigger: the patch in all four corners (mirrored so it is symmetric).
    amplitude < 1 blends the patch in: x + amplitude·(patch − x)."""
    out = x.astype(np.float32)
    h, w = x.shape[1:3]
    p = patch.shape[0]
    for flip_r in (False, True):
        for flip_c in (False, True):
            piece = patch[::-1] if flip_r else patch
            piece = piece[:, ::-1] if flip_c else piece
            r = h - p - margin if flip_r else margin
            c = w - p - margin if flip_c else margin
            region = out[:, r:r + p, c:c + p, :]
            out[:, r:r + p, c:c + p, :] = region + amplitude * (piece.astype(np.float32) - region)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def blend(x: np.ndarray, pattern: np.ndarray, alpha: float) -> np.ndarray:
    """Blended: (1 − α)·x + α·pattern, rounded to uint8."""
    out = (1.0 - alpha) * x.astype(np.float32) + alpha * pattern.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def sinusoid(width: int, delta: float, frequency: float) -> np.ndarray:
    """The SIG signal δ·sin(2π j f / m) over the columns j = 0..m−1 (signed, float)."""
    j = np.arange(width, dtype=np.float64)
    return delta * np.sin(2 * np.pi * j * frequency / width)


def add_sinusoid(x: np.ndarray, delta: float, frequency: float) -> np.ndarray:
    """SIG: add the signed horizontal sinusoid to every row and channel, then clip to 0..255.

    The reference code stores the signal in a uint8 array before adding, so its negative half wraps
    around to values near 255; here the addition is signed and clipped, as the SIG paper defines it."""
    signal = sinusoid(x.shape[2], delta, frequency)[None, None, :, None]
    return np.clip(np.round(x.astype(np.float64) + signal), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- WaNet warping

def identity_grid(h: int, w: int) -> torch.Tensor:
    """1×H×W×2 sampling grid (x, y in [−1, 1]) that leaves an image unchanged (align_corners=True)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack((xs, ys), dim=2)[None]


def wanet_grid(h: int, w: int, k: int, s: float, grid_rescale: float, generator: torch.Generator) -> torch.Tensor:
    """WaNet's fixed warping grid: a k×k random field in [−1, 1], normalised by its mean absolute
    value, upsampled bicubically, scaled by s / size, added to the identity grid, times grid_rescale."""
    field = torch.rand(1, 2, k, k, generator=generator) * 2 - 1
    field = field / field.abs().mean()
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    scale = torch.tensor([1.0 / w, 1.0 / h])  # the reference divides both by the (square) image size
    return ((identity_grid(h, w) + s * field * scale) * grid_rescale).clamp(-1, 1)


def warp(x: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """Resample a uint8 batch through a 1×H×W×2 or N×H×W×2 grid (bilinear), back to uint8."""
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    if grid.shape[0] == 1 and len(t) != 1:
        grid = grid.expand(len(t), -1, -1, -1)
    out = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def noise_grids(grid: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """WaNet's noise mode: the fixed grid plus a fresh uniform perturbation of up to half a pixel per sample."""
    _, h, w, _ = grid.shape
    jitter = (torch.rand(n, h, w, 2, generator=generator) * 2 - 1) * torch.tensor([1.0 / w, 1.0 / h])
    return (grid + jitter).clamp(-1, 1)
