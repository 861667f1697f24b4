"""Device choice, seeding, progress bars and environment facts: one function for each."""
from __future__ import annotations

import os
import platform
import random
import subprocess
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ConfigError

_DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def get_device(spec: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else must be available or we say so."""
    if not isinstance(spec, (str, torch.device)):
        raise ConfigError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {spec!r}.")
    if str(spec) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"device {spec!r} is not a device name; use one of {_DEVICE_KINDS} (or 'cuda:N').") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {spec!r} was asked for but MPS is not available here; use device='auto' or 'cpu'.")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Random choices that must not depend on call
    order (poisoned indices, trigger placement) use their own explicit generators instead."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))


def progress(iterable=None, enabled: bool = True, **kwargs):
    """A tqdm.auto bar (a widget in Jupyter, text elsewhere) that a parameter can switch off."""
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, leave=False, **kwargs)


def library_versions() -> dict:
    import sklearn
    import torchvision

    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "vablib": __version__,
    }


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit of the vablib checkout (None outside a git checkout)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_freed_memory_kept = False


def reuse_freed_memory(device="cpu") -> bool:
    """Make glibc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves every block over 32 MB (one activation of a full-width ResNet-18 at
    batch 128 on 32×32 images) with fresh mmap pages and unmaps it when freed, so each training
    step page-faults its activations in again: a fifth or more of the CPU time of a full-width step
    measured here. Afterwards the process keeps its peak memory. The trainers call it with their
    device; a no-op for other devices and off glibc Linux. Returns whether the setting is in effect."""
    global _freed_memory_kept
    if (_freed_memory_kept or torch.device(device).type != "cpu" or platform.system() != "Linux"
            or platform.libc_ver()[0] != "glibc"):
        return _freed_memory_kept
    import ctypes

    libc = ctypes.CDLL(None)
    _freed_memory_kept = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
                              and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))  # mallopt takes a C int
    return _freed_memory_kept


THREADS_ENV = "VABLIB_THREADS"  # set by `python -m vablib sweep` for the kernels of each point


def set_cpu_threads(n: int | None = None) -> int:
    """Use `n` threads, else $VABLIB_THREADS (a sweep's share of the cores for each point), else
    all cores (two threads give ~1.8x over one on the 2-core dev machines)."""
    if n is None and os.environ.get(THREADS_ENV):
        text = os.environ[THREADS_ENV]
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"${THREADS_ENV} must be a positive number of threads, got {text!r}.")
        n = int(text)
    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
