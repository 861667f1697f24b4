"""Poisoning a dataset: choose the samples, apply the trigger, relabel, build the triggered test set.

Random choices use their own NumPy generators spawned from the seed (poisoned indices, noise/cross
indices, cross partners), and attacks that train use their own torch generators, so the same seed
gives the same indices and images whatever ran before.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError
from .artifact import PoisonedData
from .config import AttackConfig
from .registry import BuildContext


def poisoned_labels(y: np.ndarray, cfg: AttackConfig, num_classes: int) -> np.ndarray:
    """The attack's label for images carrying the trigger: the target (all2one) or (y + 1) mod K."""
    if cfg.attack_mode == "all2all":
        return (y + 1) % num_classes
    return np.full_like(y, cfg.target_label)


def choose_indices(y_train: np.ndarray, cfg: AttackConfig, counts: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(poisoned indices, noise/cross indices), sorted and disjoint."""
    rng_poison, rng_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if cfg.clean_label:
        pool = np.flatnonzero(y_train == cfg.target_label)
    elif cfg.attack_mode == "all2one":
        pool = np.flatnonzero(y_train != cfg.target_label)
    else:
        pool = np.arange(len(y_train))
    poison = np.sort(rng_poison.choice(pool, counts["n_poison"], replace=False))
    rest = np.setdiff1d(np.arange(len(y_train)), poison)
    noise = np.sort(rng_noise.choice(rest, counts["n_noise"], replace=False)) if counts["n_noise"] else rest[:0]
    return poison.astype(np.int64), noise.astype(np.int64)


def _check_trigger_output(out: np.ndarray, x: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != np.uint8:
        raise ConfigError(f"{what} must return a uint8 batch of shape {x.shape}, got "
                          f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', None)}.")
    return out


def generate(ds, cfg: AttackConfig, seed: int, device=None, run=None, progress: bool = True) -> PoisonedData:
    """Poison `ds` (a vablib.data.ImageDataset) as `cfg` says. Deterministic given `seed`.
    `run` (a RunDir) caches what CL and IAD train, keyed by what produced it."""
    if not isinstance(cfg, AttackConfig):
        raise ConfigError(f"cfg must be a vablib.attacks.AttackConfig, got {type(cfg).__name__}.")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}.")
    counts = cfg.validate_for(ds)  # every check that needs the data, before any training
    params = cfg.params()
    t0 = time.time()
    poison_idx, noise_idx = choose_indices(ds.y_train, cfg, counts, int(seed))
    ctx = BuildContext(ds, params, cfg.target_label, cfg.attack_mode, int(seed), device, run, progress)
    trigger = cfg.spec.build(ctx)

    x = ds.x_train.copy()
    x[poison_idx] = _check_trigger_output(trigger.poison_train(ds.x_train[poison_idx]), ds.x_train[poison_idx],
                                          f"the {cfg.attack} trigger")
    if len(noise_idx):
        if trigger.noise is None:
            raise ConfigError(f"{cfg.attack} has no noise/cross samples; set its noise rate to 0.")
        noise_rng = np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(3)[2])
        x[noise_idx] = trigger.noise(ds.x_train[noise_idx], noise_rng)
    y = ds.y_train.copy()
    if not cfg.clean_label:
        y[poison_idx] = poisoned_labels(ds.y_train[poison_idx], cfg, ds.num_classes)

    keep = np.ones(len(ds.y_test), bool) if cfg.attack_mode == "all2all" else ds.y_test != cfg.target_label
    x_bd = _check_trigger_output(trigger.apply(ds.x_test[keep]), ds.x_test[keep], f"the {cfg.attack} trigger")
    poison_mask = np.zeros(len(y), bool)
    poison_mask[poison_idx] = True
    noise_mask = np.zeros(len(y), bool)
    noise_mask[noise_idx] = True

    data = PoisonedData(
        x_train=x, y_train=y.astype(np.int64), y_train_clean=ds.y_train.astype(np.int64), poison_mask=poison_mask,
        noise_mask=noise_mask, x_test=ds.x_test, y_test=ds.y_test.astype(np.int64), x_bd_test=x_bd,
        y_bd_target=poisoned_labels(ds.y_test[keep], cfg, ds.num_classes).astype(np.int64),
        y_bd_true=ds.y_test[keep].astype(np.int64), classes=tuple(ds.classes), dataset_name=ds.name,
        x_orig_changed=ds.x_train[poison_mask | noise_mask])
    from .. import __version__

    data.manifest = {
        "attack": cfg.attack, "clean_label": cfg.clean_label, "poison_rate": cfg.poison_rate,
        "target_label": cfg.target_label, "attack_mode": cfg.attack_mode, "attack_budget": cfg.attack_budget,
        "attack_params": cfg.attack_params, "params": params, "seed": int(seed),
        "fingerprint": ds.fingerprint(), "dataset_name": ds.name, "image_shape": list(ds.image_shape),
        "num_classes": ds.num_classes, **counts,
        "poison_indices": poison_idx.tolist(), "noise_indices": noise_idx.tolist(),
        "n_bd_test": int(keep.sum()), "trigger_info": trigger.info, "seconds": time.time() - t0,
        "content_hash": data.content_hash(), "vablib": __version__,
    }
    return data


def recorded_dataset(run):
    """The dataset notebook 00 chose for this run folder, checked against its recorded fingerprint."""
    from .. import runio
    from ..runstate import recorded_setup
    from ..errors import DataFormatError

    setup = recorded_setup(run)
    recorded = runio.read_json(run.require("artifacts/dataset.json", "00_setup_and_data"))
    ds = setup.load_data()
    if recorded.get("fingerprint") != ds.fingerprint():
        raise DataFormatError(f"the {setup.dataset} data loaded now (fingerprint {ds.fingerprint()}) differs from the "
                              f"data 00_setup_and_data recorded ({recorded.get('fingerprint')}); rerun 00 or use a "
                              "new run_dir.")
    return ds
