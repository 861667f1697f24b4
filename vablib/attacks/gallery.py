"""Looking at an attack: galleries of clean / poisoned / amplified difference, and poison statistics.

Figures are built with `vablib.plots` and returned (never shown); tables are tidy DataFrames."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import plots
from ..data import ImageDataset
from .config import AttackConfig
from .poison import generate

# Tiny budgets so a gallery row of the attacks that train (CL, IAD) takes seconds on a CPU.
PREVIEW_PARAMS = {
    "cl": {"clean_epochs": 2, "clean_width": 0.25, "pgd_steps": 5},
    "iad": {"generator_epochs": 2, "mask_epochs": 1, "generator_width": 0.125, "classifier_width": 0.25},
}


def difference(clean: np.ndarray, poisoned: np.ndarray, amplify: float = 5.0) -> np.ndarray:
    """|poisoned − clean| × amplify, clipped to uint8, so faint triggers become visible."""
    diff = np.abs(poisoned.astype(np.int16) - clean.astype(np.int16)) * float(amplify)
    return np.clip(diff, 0, 255).astype(np.uint8)


def attack_gallery(clean: np.ndarray, poisoned: np.ndarray, amplify: float = 5.0, title: str | None = None,
                   labels=None):
    """Three rows: clean images, the same images poisoned, and their amplified difference."""
    n = len(clean)
    images = np.concatenate([clean, poisoned, difference(clean, poisoned, amplify)])
    top = [str(t) for t in labels] if labels is not None else [""] * n
    titles = top + ["poisoned"] + [""] * (n - 1) + [f"|diff|×{amplify:g}"] + [""] * (n - 1)
    return plots.image_grid(images, titles, ncols=n, suptitle=title)


def overview_gallery(examples: dict, amplify: float = 5.0, per_attack: int = 2):
    """One row per attack: (clean, poisoned, |diff|×amplify) for `per_attack` images.
    `examples` maps attack name → (clean batch, poisoned batch)."""
    images, titles = [], []
    for name, (clean, poisoned) in examples.items():
        k = min(per_attack, len(clean))
        for i in range(k):
            images += [clean[i], poisoned[i], difference(clean[i:i + 1], poisoned[i:i + 1], amplify)[0]]
            titles += [f"{name}: clean" if i == 0 else "clean", "poisoned", f"|diff|×{amplify:g}"]
    return plots.image_grid(np.stack(images), titles, ncols=3 * per_attack)


def poisoned_examples(data, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(clean originals, poisoned images) of the first n poisoned training samples."""
    idx = np.flatnonzero(data.poison_mask)[:n]
    return data.clean_train_images()[idx], data.x_train[idx]


def subset(ds: ImageDataset, n_train: int = 300, n_test: int = 50, seed: int = 0) -> ImageDataset:
    """A small random subset of a dataset (for previews)."""
    rng = np.random.default_rng(seed)
    tr = np.sort(rng.choice(len(ds.y_train), min(n_train, len(ds.y_train)), replace=False))
    te = np.sort(rng.choice(len(ds.y_test), min(n_test, len(ds.y_test)), replace=False))
    return ImageDataset(f"{ds.name}", ds.x_train[tr], ds.y_train[tr], ds.x_test[te], ds.y_test[te], ds.classes)


def preview(ds: ImageDataset, names, n: int = 4, target_label: int = 0, seed: int = 0, device=None,
            n_train: int = 200) -> dict:
    """attack name → (clean, poisoned) for n poisoned samples of each attack, made on a small subset
    with the reference settings, and tiny training budgets for CL and IAD (see PREVIEW_PARAMS):
    good for seeing what a trigger looks like, not for measuring it."""
    small = subset(ds, n_train, seed=seed)
    out = {}
    for name in names:
        cfg = AttackConfig(name, poison_rate=0.5 if AttackConfig(name).clean_label else 0.1,
                           target_label=target_label, attack_params=dict(PREVIEW_PARAMS.get(name, {})))
        out[name] = poisoned_examples(generate(small, cfg, seed, device=device, progress=False), n)
    return out


def poison_table(data) -> pd.DataFrame:
    """Per class: poisoned (by original class), noise/cross samples, and label counts before
    and after poisoning (before = the class's training images)."""
    k = data.num_classes
    return pd.DataFrame({
        "class": list(data.classes),
        "poisoned": np.bincount(data.y_train_clean[data.poison_mask], minlength=k),
        "noise/cross": np.bincount(data.y_train_clean[data.noise_mask], minlength=k),
        "labels before": np.bincount(data.y_train_clean, minlength=k),
        "labels after": np.bincount(data.y_train, minlength=k),
    })


def poison_summary(data) -> dict:
    """Counts and how much the poisoned images differ from the clean ones."""
    clean = data.clean_train_images()[data.poison_mask].astype(np.float64)
    diff = data.x_train[data.poison_mask].astype(np.float64) - clean
    mse = float((diff ** 2).mean()) if diff.size else 0.0
    m = data.manifest
    return {
        "attack": m.get("attack"), "mode": m.get("attack_mode"), "target_label": m.get("target_label"),
        "training images": len(data.y_train), "poisoned": int(data.poison_mask.sum()),
        "share of training set": float(data.poison_mask.mean()),
        "labels changed": int((data.y_train != data.y_train_clean).sum()),
        "noise/cross samples": int(data.noise_mask.sum()), "triggered test images": len(data.y_bd_target),
        "mean |Δ| (0-255)": float(np.abs(diff).mean()) if diff.size else 0.0,
        "max |Δ| (0-255)": float(np.abs(diff).max()) if diff.size else 0.0,
        "PSNR (dB)": float(10 * np.log10(255 ** 2 / mse)) if mse > 0 else float("inf"),
    }


def label_shift_figure(data):
    """Label counts per class before and after poisoning (all-to-one attacks grow the target class)."""
    k = data.num_classes
    rows = [{"class": data.classes[c], "split": split, "count": int(n)}
            for split, y in (("before poisoning", data.y_train_clean), ("after poisoning", data.y_train))
            for c, n in enumerate(np.bincount(y, minlength=k))]
    return plots.class_balance(pd.DataFrame(rows))


def interactive_gallery(examples: dict, amplify: float = 5.0):
    """An ipywidgets attack picker over `examples` (attack → (clean, poisoned)) for Jupyter."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def show(attack):
        fig = attack_gallery(*examples[attack], amplify=amplify, title=attack)
        plt.show()
        plt.close(fig)

    return widgets.interact(show, attack=widgets.Dropdown(options=list(examples), description="attack"))
