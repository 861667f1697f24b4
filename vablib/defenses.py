"""Training-time defenses side by side, on the run's poisoned data, budget, seed and metrics.

A defense sees a `TrainingSet` (the poisoned training images and labels, never which samples are
poisoned), the run's `TrainConfig`, the device and the seed, and returns a trained model, or a
model and the boolean mask of the samples it isolated. The harness (`evaluate_defense`) scores
every defense with the same ACC / ASR / RA and per-class accuracy code, and, for reporting only,
the isolated set's precision and recall against the ground truth.

    none         no defense: the model a victim of the attack gets (notebook 01's baseline)
    clean_floor  an oracle reference, not a defense: the budget on the clean training set
    vab          V&B, trained by notebooks 02-05 (read from the run folder)
    abl          Anti-Backdoor Learning (vablib.abl)

Your own, in one notebook cell or a file given as `-p defense_file PATH.py`:

    def my_defense(training_set, train_cfg, device, seed):
        ...
        return model  # or (model, isolated_mask)
    defenses.custom_defense("my_defense", my_defense)

The returned model takes the kit's normalised images (`training_set.normalizer(device)`), as
every model `vablib.models.build_model` makes does.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import runio
from .batches import Normalizer
from .config import TrainConfig, as_params
from .errors import ConfigError, DataNotFoundError
from .hashing import content_key
from .metrics import backdoor_metrics, detection_metrics, eval_tensors
from .plugins import check_new_name, run_file, source_of

REFERENCES = ("none", "clean_floor", "vab")  # trained elsewhere in the run, not by a registered function
LABELS = {"none": "no defense", "clean_floor": "clean floor (oracle)", "vab": "V&B", "abl": "ABL"}


@dataclass(frozen=True)
class TrainingSet:
    """What a defense sees of the run: the poisoned training set as a defender has it."""

    x: np.ndarray  # uint8 N×H×W×C, triggers included
    y: np.ndarray  # int64 labels, as poisoned
    num_classes: int
    dataset_name: str
    classes: tuple = ()

    @classmethod
    def of(cls, poisoned) -> "TrainingSet":
        return cls(poisoned.x_train, poisoned.y_train, int(poisoned.num_classes), poisoned.dataset_name,
                   tuple(poisoned.classes))

    def normalizer(self, device) -> Normalizer:
        return Normalizer.for_dataset(self.dataset_name, self.x.shape[3], device)


@dataclass(frozen=True)
class Defense:
    name: str
    train: Callable | None  # (training_set, train_cfg, device, seed) → model | (model, mask); None: a reference
    builtin: bool = True
    description: str = ""
    configure: Callable | None = None  # settings dict → (train, settings as recorded), for a defense with settings


_REGISTRY: dict[str, Defense] = {}


def register(defense: Defense) -> Defense:
    _REGISTRY[defense.name] = defense
    return defense


def available_defenses() -> tuple[str, ...]:
    """Built-in defenses and those registered with `custom_defense` in this kernel."""
    return tuple(_REGISTRY)


def get_defense(name: str) -> Defense:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown defense {name!r}; choose from {', '.join(_REGISTRY)} "
                          "(or register your own with vablib.defenses.custom_defense).")
    return _REGISTRY[name]


@contextmanager
def stand_ins(names):
    """Known by name while the block runs: defenses that a notebook registers when it runs, so the
    `defenses` parameter can be checked before. They cannot train."""
    added = [name for name in names if name not in _REGISTRY]
    for name in added:
        register(Defense(name, _stand_in, builtin=False))
    try:
        yield
    finally:
        for name in added:
            _REGISTRY.pop(name, None)


def _stand_in(*args):
    raise ConfigError("this defense is a stand-in for one a notebook registers; register it with "
                      "vablib.defenses.custom_defense before training it.")


def check_defenses(names) -> tuple[str, ...]:
    """The `defenses` parameter as a tuple of known names, or one ConfigError."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"defenses must be a list of defense names such as ['none', 'abl'], got {names!r}.")
    for name in names:
        get_defense(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"defenses lists a name twice: {list(names)}.")
    return tuple(names)


def custom_defense(name: str, fn: Callable, description: str = "") -> Defense:
    """Register `fn(training_set, train_cfg, device, seed)`, returning a model or (model, isolated
    mask), as the defense `name`: the comparison notebook and its sweeps then include it.
    Re-registering a name replaces the earlier custom defense; built-in names are refused."""
    check_new_name("defense", name, _REGISTRY, "my_defense")
    if not callable(fn):
        raise ConfigError(f"a defense must be a function (training_set, train_cfg, device, seed) → model, got {fn!r}.")
    return register(Defense(name, fn, builtin=False, description=description or (fn.__doc__ or "").strip()))


def load_defense_file(path: str | None) -> dict:
    """Run a .py file that registers defenses with `custom_defense`; returns what the run records
    of it ({"defense_file_sha256": ...}, {} without a file)."""
    return run_file(path, "defense_file", "defense", _REGISTRY, "vablib.defenses.custom_defense(name, fn)")


# ---------------------------------------------------------------- built-ins

def _abl(settings: dict | None):
    from .abl import AblConfig

    cfg = AblConfig.from_params(settings)

    def train(ts: TrainingSet, train_cfg: TrainConfig, device, seed: int):
        from .abl import train_abl

        model, isolated, _ = train_abl(ts.x, ts.y, ts.num_classes, ts.dataset_name, train_cfg, cfg, device, seed,
                                       progress=False)
        return model, isolated

    return train, as_params(cfg)


for _name, _text in (("none", "no defense: the model trained on the poisoned set"),
                     ("clean_floor", "oracle reference: the same budget on the clean training set"),
                     ("vab", "V&B: notebooks 02-05 of the run")):
    register(Defense(_name, None, description=_text))
register(Defense("abl", None, description="Anti-Backdoor Learning (Li et al., NeurIPS 2021)", configure=_abl))


# ---------------------------------------------------------------- the harness

def isolation_quality(isolated, poison_mask) -> dict:
    """Precision / recall of an isolated set against the ground truth (reporting only)."""
    q = detection_metrics(torch.as_tensor(np.asarray(isolated, bool)), torch.as_tensor(np.asarray(poison_mask, bool)))
    return {"precision": q["precision"], "recall": q["recall"], "n_isolated": q["n_suspicious"]}


def _from_reference(name: str, poisoned, train_cfg, device, seed, run, progress) -> dict:
    from . import baseline

    if name == "vab":
        path = run.path / "summary.json" if run is not None else None
        found = runio.read_json(path) if path is not None and path.exists() else None
        if found is None:
            raise DataNotFoundError("V&B's results are read from the run's summary.json: run notebooks 02-05 (and "
                                    "pipeline.summarize) first.")
        final = found["final"]
        return {"acc": final["acc"], "asr": final["asr"], "ra": final["ra"], "class_acc": final["class_acc"],
                "isolation": {"precision": final["precision"], "recall": final["recall"],
                              "n_isolated": final["n_suspicious"]},
                "seconds": float(sum((found.get("seconds_per_phase") or {}).values()))}
    train = baseline.no_defense_baseline if name == "none" else baseline.clean_floor
    result = train(poisoned, train_cfg, device, seed, run=run, progress=progress)
    return {k: result[k] for k in ("acc", "asr", "ra", "class_acc", "seconds")} | {"isolation": None}


def _configured(defense: Defense, settings: dict | None):
    """(train function, settings as recorded) for `settings`; one ConfigError for settings given
    to a defense that takes none."""
    if defense.configure is not None:
        return defense.configure(settings)
    if settings:
        raise ConfigError(f"defense {defense.name!r} takes no settings, got {settings!r}.")
    return defense.train, None


def other_results(run_dir) -> list[dict]:
    """Notebook 06's results (artifacts/defenses.json) for the defenses besides V&B and the
    baselines, whose figures summary.json holds already; [] before notebook 06 has run."""
    path = Path(run_dir) / "artifacts" / "defenses.json"
    return [r for r in runio.read_json(path) if r["defense"] not in REFERENCES] if path.is_file() else []


def evaluate_defense(name: str, poisoned, train_cfg: TrainConfig, device="cpu", seed: int = 0, run=None,
                     settings: dict | None = None, progress: bool = True) -> dict:
    """Train defense `name` on the run's poisoned set and score it: {defense, label, acc, asr, ra,
    class_acc, isolation (precision, recall, n_isolated, or None), seconds, settings, key}. With
    `run`, the result is kept in artifacts/defenses/<name>.json and reused while the data, budget,
    seed, settings and the defense's code are the same. `settings`: the defense's own (ABL's)."""
    defense = get_defense(name)
    device = torch.device(device)
    train, recorded = _configured(defense, settings)
    if name in REFERENCES:
        result = _from_reference(name, poisoned, train_cfg, device, seed, run, progress)
        return {"defense": name, "label": LABELS[name], **result, "settings": None}
    m = poisoned.manifest
    key = content_key("defense", name, m.get("fingerprint"), m.get("content_hash"), m.get("attack"), m.get("params"),
                      as_params(train_cfg), seed, recorded, None if defense.builtin else source_of(defense.train))
    path = run.artifacts / "defenses" / f"{name}.json" if run is not None else None
    if path is not None and path.exists():
        cached = runio.read_json(path)
        if cached.get("key") == key:
            return cached
    ts = TrainingSet.of(poisoned)
    t0 = time.time()
    out = train(ts, train_cfg, device, seed)
    model, isolated = out if isinstance(out, tuple) else (out, None)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"defense {name!r} returned {type(model).__name__}, not a torch model "
                          "(return model or (model, isolated_mask)).")
    seconds = time.time() - t0
    if isolated is not None and np.asarray(isolated).shape != (len(ts.y),):
        raise ConfigError(f"defense {name!r} returned an isolated mask of shape {np.asarray(isolated).shape}; "
                          f"it must hold one bool per training sample ({len(ts.y)}).")
    model = model.to(device).eval()
    scores = backdoor_metrics(model, ts.normalizer(device), **eval_tensors(poisoned, device))
    result = {"defense": name, "label": LABELS.get(name, name), **scores,
              "isolation": None if isolated is None else isolation_quality(isolated, poisoned.poison_mask),
              "isolated_indices": None if isolated is None else np.flatnonzero(isolated).tolist(),
              "seconds": seconds, "settings": recorded, "key": key}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        runio.write_json(path, result)
    return result


def compare(names, poisoned, train_cfg: TrainConfig, device="cpu", seed: int = 0, run=None,
            settings: dict | None = None, progress: bool = True) -> list[dict]:
    """`evaluate_defense` for V&B and each of `names` (V&B first); writes artifacts/defenses.json
    with `run`, which the report reads. `settings`: {defense name: its settings}."""
    names = ("vab", *[n for n in check_defenses(names) if n != "vab"])
    settings = {n: s for n, s in (settings or {}).items() if s is not None}
    for name in names:  # every defense's settings checked before any trains
        _configured(get_defense(name), settings.get(name))
    results = [evaluate_defense(n, poisoned, train_cfg, device, seed, run, settings.get(n), progress) for n in names]
    if run is not None:
        runio.write_json(run.artifacts / "defenses.json",
                         [{k: v for k, v in r.items() if k != "isolated_indices"} for r in results])
    return results


def comparison_frame(results: list[dict]):
    """Tidy rows (defense, metric, value) of ACC / ASR / RA and, where a defense isolates samples,
    its isolated set's precision and recall."""
    import pandas as pd

    rows = []
    for r in results:
        for metric in ("acc", "asr", "ra"):
            rows.append({"defense": r["label"], "metric": metric.upper(), "value": r[metric]})
        for metric in ("precision", "recall"):
            if r.get("isolation"):
                rows.append({"defense": r["label"], "metric": f"isolation {metric}", "value": r["isolation"][metric]})
    return pd.DataFrame(rows)


def class_accuracy_frame(results: list[dict], classes):
    """Tidy rows (defense, class, acc) of each defense's per-class test accuracy."""
    import pandas as pd

    return pd.DataFrame([{"defense": r["label"], "class": str(classes[c]) if c < len(classes) else str(c), "acc": a}
                         for r in results for c, a in enumerate(r.get("class_acc") or [])])
