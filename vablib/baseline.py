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

from . import runio
from .config import TrainConfig, as_params
from .hashing import content_key
from .metrics import backdoor_metrics, eval_tensors
from .training import train_classifier

KINDS = {"no_defense": "baseline.json", "clean_floor": "clean_floor.json"}


def _result(history: list[dict], key: str, kind: str, train_cfg: TrainConfig, seed: int) -> dict:
    last = history[-1]
    return {"kind": kind, "acc": last.get("acc"), "asr": last.get("asr"), "ra": last.get("ra"),
            "class_acc": last.get("class_acc"), "epochs": len(history),
            "seconds": float(sum(r["seconds"] for r in history)), "seed": seed,
            "key": key, "train_config": as_params(train_cfg), "history": history}


def _key(kind: str, poisoned, train_cfg: TrainConfig, seed: int) -> str:
    m = poisoned.manifest
    return content_key(kind, m.get("fingerprint"), m.get("attack"), m.get("params"), m.get("poison_rate"),
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
    tests = eval_tensors(poisoned, device)
    _, history = train_classifier(x, y, lambda model, normalizer: backdoor_metrics(model, normalizer, **tests),
                                  train_cfg, device, seed, poisoned.num_classes, poisoned.dataset_name, progress,
                                  on_epoch, what=kind.replace("_", " "))
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
