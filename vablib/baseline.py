"""Plain supervised training with a TrainConfig: the no-defense baseline and the clean floor.

- **No-defense baseline**: the model a victim of the attack would get, trained on the poisoned set
  with the same budget as the V&B beneficiary. It shows the attack works (high ASR) and is the
  comparison point of the final report.
- **Clean floor**: the same budget on the original, unpoisoned training set: the ACC a defense
  could hope for, and the ASR a model that never saw the trigger has by chance.

Both are written to the run folder (`artifacts/baseline.json`, `artifacts/clean_floor.json`) with a
key of what produced them, and reused when asked for again with the same data and budget.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import runio
from .batches import BatchIterator, Normalizer, to_device_uint8
from .config import TrainConfig, as_params
from .errors import ConfigError
from .metrics import backdoor_metrics, eval_tensors
from .models import build_model
from .training import sgd_with_schedule, train_epoch
from .utils import progress as progress_bar, reuse_freed_memory

KINDS = {"no_defense": "baseline.json", "clean_floor": "clean_floor.json"}


def train_classifier(x_train: np.ndarray, y_train: np.ndarray, eval_data, train_cfg: TrainConfig, device,
                     seed: int, num_classes: int, dataset_name: str = "", progress: bool = True, on_epoch=None,
                     what: str = "training"):
    """Train `train_cfg.model` with SGD and the config's step schedule on uint8 N×H×W×C images.

    eval_data (a PoisonedData or anything with x_test, y_test, x_bd_test, y_bd_target, y_bd_true)
    is scored after every epoch. Returns (model, history): one dict per epoch with loss, train_acc,
    lr, seconds and acc/asr/ra. `on_epoch(row)` is called after each epoch."""
    if not isinstance(train_cfg, TrainConfig):
        raise ConfigError(f"train_cfg must be a vablib.config.TrainConfig, got {type(train_cfg).__name__}.")
    if len(x_train) != len(y_train) or x_train.ndim != 4 or x_train.dtype != np.uint8:
        raise ConfigError(f"x_train must be uint8 N×H×W×C with one label per image, got {x_train.dtype} "
                          f"{x_train.shape} and {len(y_train)} labels.")
    device = torch.device(device)
    reuse_freed_memory(device)
    channels = x_train.shape[3]
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(int(seed))
        model = build_model(train_cfg.model, int(num_classes), channels, train_cfg.width).to(device)
    normalizer = Normalizer.for_dataset(dataset_name, channels, device)
    batches = BatchIterator(to_device_uint8(x_train, device), torch.as_tensor(np.asarray(y_train, np.int64), device=device),
                            normalizer, train_cfg.batch_size, shuffle=True, augment=train_cfg.augment, seed=seed)
    evals = eval_tensors(eval_data, device) if eval_data is not None else None
    optimizer, schedule = sgd_with_schedule(model, train_cfg)
    history = []
    for epoch in progress_bar(range(1, train_cfg.epochs + 1), progress, desc=what):
        t0 = time.time()
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, **train_epoch(model, optimizer, batches, device, train_cfg.amp, what), "lr": lr}
        schedule.step()
        if evals is not None:
            row.update(backdoor_metrics(model, normalizer, **evals))
        row["seconds"] = time.time() - t0
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return model, history


def _result(history: list[dict], key: str, kind: str, train_cfg: TrainConfig, seed: int) -> dict:
    last = history[-1]
    return {"kind": kind, "acc": last.get("acc"), "asr": last.get("asr"), "ra": last.get("ra"),
            "class_acc": last.get("class_acc"), "epochs": len(history),
            "seconds": float(sum(r["seconds"] for r in history)), "seed": seed,
            "key": key, "train_config": as_params(train_cfg), "history": history}


def _key(kind: str, poisoned, train_cfg: TrainConfig, seed: int) -> str:
    from .attacks.registry import cache_key

    m = poisoned.manifest
    return cache_key(kind, m.get("fingerprint"), m.get("attack"), m.get("params"), m.get("poison_rate"),
                     m.get("target_label"), m.get("attack_mode"), m.get("seed"), m.get("content_hash"),
                     as_params(train_cfg), seed)


def _train_kind(kind: str, poisoned, train_cfg, device, seed, run, progress, on_epoch) -> dict:
    key = _key(kind, poisoned, train_cfg, seed)
    path = run.artifacts / KINDS[kind] if run is not None else None
    if path is not None and path.exists():
        cached = runio.read_json(path)
        if cached.get("key") == key:
            return cached
    if kind == "no_defense":
        x, y = poisoned.x_train, poisoned.y_train
    else:
        x, y = poisoned.clean_train_images(), poisoned.y_train_clean
    _, history = train_classifier(x, y, poisoned, train_cfg, device, seed, poisoned.num_classes,
                                  poisoned.dataset_name, progress, on_epoch, what=kind.replace("_", " "))
    result = _result(history, key, kind, train_cfg, seed)
    if path is not None:
        runio.write_json(path, result)
    return result


def no_defense_baseline(poisoned, train_cfg: TrainConfig, device="cpu", seed: int = 0, run=None,
                        progress: bool = True, on_epoch=None) -> dict:
    """Train on the poisoned set with the shared budget; returns {acc, asr, ra, epochs, seconds,
    history, ...}. With `run`, writes artifacts/baseline.json and reuses it when the poisoned data,
    budget and seed are the same."""
    return _train_kind("no_defense", poisoned, train_cfg, device, seed, run, progress, on_epoch)


def clean_floor(poisoned, train_cfg: TrainConfig, device="cpu", seed: int = 0, run=None,
                progress: bool = True, on_epoch=None) -> dict:
    """The same budget on the original clean training set (images and labels before poisoning);
    evaluated on the same clean and triggered test sets. Writes artifacts/clean_floor.json with `run`."""
    return _train_kind("clean_floor", poisoned, train_cfg, device, seed, run, progress, on_epoch)


def history_frame(result: dict):
    """The per-epoch rows of a baseline result as a DataFrame (for `plots.training_curves`)."""
    import pandas as pd

    return pd.DataFrame(result["history"])
