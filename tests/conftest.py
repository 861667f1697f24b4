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
