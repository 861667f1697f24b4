from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parent.parent
CIFAR_SUBSET = ROOT.parent / "shared" / "data" / "cifar10_subset.npz"


@pytest.fixture(scope="session")
def digits():
    from vablib.data import load_digits

    return load_digits()


@pytest.fixture
def cifar_subset_path():
    if not CIFAR_SUBSET.exists():
        pytest.skip(f"the real CIFAR-10 subset is not at {CIFAR_SUBSET} (it lives outside the repository)")
    return CIFAR_SUBSET


@pytest.fixture
def tiny_arrays():
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 4, 40).astype(np.int64),
        "x_test": rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 4, 12).astype(np.int64),
    }


def make_badnets_like(ds, n_train=300, n_test=100, rate=0.1, target=0, size=3, seed=0):
    """A small BadNets-style poisoned set built here, so the V&B tests do not depend on the
    attacks module: a white size×size patch near the bottom-right corner, relabelled to target."""
    import types

    rng = np.random.default_rng(seed)
    x, y_clean = ds.x_train[:n_train].copy(), ds.y_train[:n_train].copy()
    idx = rng.choice(n_train, int(rate * n_train), replace=False)
    y = y_clean.copy()
    x[idx, -size - 1:-1, -size - 1:-1, :] = 255
    y[idx] = target
    mask = np.zeros(n_train, bool)
    mask[idx] = True
    x_test, y_test = ds.x_test[:n_test], ds.y_test[:n_test]
    keep = y_test != target
    x_bd = x_test[keep].copy()
    x_bd[:, -size - 1:-1, -size - 1:-1, :] = 255
    return types.SimpleNamespace(
        x_train=x, y_train=y, y_train_clean=y_clean, poison_mask=mask, noise_mask=np.zeros(n_train, bool),
        x_test=x_test, y_test=y_test, x_bd_test=x_bd, y_bd_target=np.full(int(keep.sum()), target),
        y_bd_true=y_test[keep], classes=ds.classes, dataset_name=ds.name, num_classes=ds.num_classes,
        manifest={"fingerprint": ds.fingerprint(), "attack": "badnets-test"})


@pytest.fixture(scope="session")
def poisoned_digits(digits):
    return make_badnets_like(digits)
