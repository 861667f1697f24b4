"""Validated, frozen configurations and the named training budgets.

A notebook's `parameters` cell holds plain literals; the next cell builds the stage's config here,
which checks every value and raises one clear ConfigError (`vablib.runstate.begin_stage` then
records it in the run folder). `None` in a parameter always means "inherit": the budget's value,
or the beneficiary's for the victim's architecture.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .errors import ConfigError


SPLITS = ("hybrid", "gmm", "reference")  # see vablib.detection
EXCLUDES = ("either", "both")
SUSPECT_LABELS = ("target", "any")
TARGET_INFERENCES = ("votes", "separation")  # see vablib.detection
VICTIM_BATCHNORM = ("whole_set", "running")  # see vablib.victim


# ---------------------------------------------------------------- small validators

def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not known; choose one of {', '.join(map(str, choices))}.")


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" in [{low}, {high}]" if high is not None else (f" ≥ {low}" if low is not None else "")
        raise ConfigError(f"{name} must be an integer{bounds}, got {value!r}.")


def check_float(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}.")


def check_fractions(name: str, value) -> tuple:
    """A tuple of fractions in (0, 1), e.g. lr milestones as fractions of epochs (a list, as JSON
    or a notebook parameter gives them, becomes a tuple)."""
    if not isinstance(value, (tuple, list)):
        raise ConfigError(f"{name} must be a tuple of fractions of epochs, e.g. (0.5, 0.75); got {value!r}.")
    for m in value:
        check_float(f"each of {name} (a fraction of epochs)", m, 0, 1, low_open=True, high_open=True)
    return tuple(value)


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}.")


def check_str(name: str, value) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}.")


def as_params(cfg) -> dict:
    return dataclasses.asdict(cfg)


def settings_diff(saved: dict, current: dict, ignore=()) -> list[str]:
    """'name saved → current' for every (nested) setting that differs, names joined by dots,
    except those in `ignore`."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(saved), flat(current)
    return [f"{k} {a.get(k)!r} → {b.get(k)!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and k not in ignore]


# ---------------------------------------------------------------- stage 00

@dataclass(frozen=True)
class SetupConfig:
    """Parameters of 00_setup_and_data: which data, which seed, which device."""

    dataset: str = "digits"
    data_root: str = "data"
    download: bool = False
    train_size: int | None = None  # the first images of each split; None: all
    test_size: int | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        from .data import DATASETS, check_sizes
        from .utils import get_device

        check_choice("dataset", self.dataset, DATASETS)
        check_str("data_root", self.data_root)
        check_bool("download", self.download)
        check_sizes(self.train_size, self.test_size)
        check_int("seed", self.seed, 0)
        check_bool("progress", self.progress)
        get_device(self.device)  # raises if unknown or unavailable

    def load_data(self):
        """The dataset these settings name (`vablib.data.load_dataset`)."""
        from .data import load_dataset

        return load_dataset(self.dataset, self.data_root, self.download, train_size=self.train_size,
                            test_size=self.test_size)

    @property
    def torch_device(self) -> torch.device:
        from .utils import get_device

        return get_device(self.device)


# ---------------------------------------------------------------- the training budget

# Named budgets. "paper" is the reference CIFAR-10 schedule (GPU); "cpu" the CIFAR-10-subset
# schedule for 2 CPU cores; "demo" keeps `make demo` on digits in minutes. profile="auto" means
# "paper" on CUDA and "cpu" elsewhere; explicit values override a profile. The short budgets' lr
# of 0.01 is what lets a narrow network fit the poison at all (docs/method.md, "Short budgets").
PROFILES = {
    "paper": {"model": "resnet18", "width": 1.0, "epochs": 200, "batch_size": 128},
    "cpu": {"model": "resnet18", "width": 0.25, "epochs": 40, "batch_size": 128, "lr": 0.01},
    "demo": {"model": "resnet18", "width": 0.125, "epochs": 12, "batch_size": 64, "lr": 0.01},
}

# The V&B settings of each budget, over VabConfig's defaults (the reference's). On short budgets
# the beneficiary trains at the paper's lr 0.1 and drops it at the phase boundaries; the cpu
# victim warms up on fewer samples and for more rounds (docs/method.md, "Short budgets").
_SHORT_SCHEDULE = {"beneficiary_lr": 0.1, "beneficiary_milestones": (0.5, 0.75)}
VAB_PROFILES = {
    "paper": {},
    "cpu": {"victim_warmup_samples": 10_000, "warmup_rounds": 20, **_SHORT_SCHEDULE},
    "demo": dict(_SHORT_SCHEDULE),
}


def resolve_profile(profile: str, device: torch.device | None = None) -> str:
    """The profile's name, with "auto" resolved: "paper" on CUDA, "cpu" elsewhere."""
    check_choice("profile", profile, ("auto", *PROFILES))
    if profile == "auto":
        return "paper" if device is not None and torch.device(device).type == "cuda" else "cpu"
    return profile


def profile_values(table: dict, profile: str, device: torch.device | None, overrides: dict) -> dict:
    """`table`'s entry for the profile with `overrides` (None values are ignored) on top."""
    return {**table[resolve_profile(profile, device)], **{k: v for k, v in overrides.items() if v is not None}}


@dataclass(frozen=True)
class TrainConfig:
    """The training budget shared by the no-defense baseline, the clean floor model and the V&B
    beneficiary, so every comparison uses the same model, schedule and batch size.
    lr milestones are fractions of `epochs` (the paper's 50/100/150 of 200)."""

    model: str = "resnet18"
    width: float = 1.0
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple = (0.25, 0.5, 0.75)
    augment: bool = True
    amp: bool = True

    def __post_init__(self):
        from .models import check_model_name

        check_model_name(self.model)
        check_float("width", self.width, 0, 8, low_open=True)
        check_int("epochs", self.epochs, 1, 100_000)
        check_int("batch_size", self.batch_size, 1, 65_536)
        check_float("lr", self.lr, 0, 10, low_open=True)
        check_float("momentum", self.momentum, 0, 1, high_open=True)
        check_float("weight_decay", self.weight_decay, 0, 1)
        object.__setattr__(self, "lr_milestones", check_fractions("lr_milestones", self.lr_milestones))
        check_bool("augment", self.augment)
        check_bool("amp", self.amp)

    def milestone_epochs(self) -> list[int]:
        return sorted({max(1, round(m * self.epochs)) for m in self.lr_milestones})

    @classmethod
    def from_profile(cls, profile: str = "auto", device: torch.device | None = None, **overrides) -> "TrainConfig":
        """The profile's budget with `overrides` (None values are ignored) applied on top."""
        return cls(**profile_values(PROFILES, profile, device, overrides))


@dataclass(frozen=True)
class VabConfig:
    """V&B settings. Defaults are the reference code's CIFAR-10 settings except where
    docs/method.md gives the measurement that moved them: the victim's warm-up counted in samples,
    the hybrid split, the target-only suspicious set, and two suppression settings. `None`
    inherits: the beneficiary's architecture for the victim, the budget's lr and milestones for
    the beneficiary."""

    victim_model: str | None = None  # None: the beneficiary's architecture
    victim_width: float | None = None  # None: the beneficiary's width
    victim_lr: float = 1e-3
    victim_weight_decay: float = 5e-4
    victim_batch_size: int = 128
    victim_warmup_samples: int = 50_000  # samples seen in the warm-up (a CIFAR-10 epoch); 0: one epoch
    victim_round_epochs: float = 1.0  # passes over the victim's set per victim training
    victim_batchnorm: str = "whole_set"  # the victim scores with the whole set's BN statistics; "running": its training's
    warmup_rounds: int = 2
    ema_weight: float = 0.75
    split: str = "hybrid"
    beneficiary_excludes: str = "either"  # hybrid split: leave out what "either" rule flags, or "both"
    suspect_labels: str = "target"  # "target": only the inferred target label is suspicious; "any": reference
    target_inference: str = "votes"  # the clear leader, else a majority of the scorings' votes; "separation": the clear leader alone
    target_margin: float = 3.0  # a label whose scores split into two modes more clearly than every other's by this leads
    max_suspicious_fraction: float = 0.5
    max_label_fraction: float = 1.0  # with no target, no label has more of its samples suspicious (1: no cap)
    threshold_step: float = 0.4
    threshold_floor: float = 0.2
    mix_fraction: float = 0.5  # beneficiary epochs spent on AttentionMix before suppression
    reselect_every: float = 0.025  # re-selection interval during AttentionMix, fraction of epochs (5/200)
    attention_threshold: float = 0.1
    temperature: float = 3.0
    lambda_u: float = 0.1
    lambda_u_late: float = 0.5
    lambda_switch: float = 0.75  # λ changes at this fraction of epochs (150/200)
    suppress_labelled: bool = False  # True: subtract the victim's prediction from credible targets too (reference)
    pseudo_confidence: float = 0.95  # unlabelled samples count only where the beneficiary is this sure; 0: all
    beneficiary_lr: float | None = None  # None: the TrainConfig's lr (shared with the baselines)
    beneficiary_milestones: tuple | None = None  # lr ×0.1 points, fractions of epochs; None: the TrainConfig's
    checkpoint_every: int = 5

    def __post_init__(self):
        from .models import check_model_name

        if self.victim_model is not None:
            check_model_name(self.victim_model)
        if self.victim_width is not None:
            check_float("victim_width", self.victim_width, 0, 8, low_open=True)
        check_float("victim_lr", self.victim_lr, 0, 1, low_open=True)
        check_float("victim_weight_decay", self.victim_weight_decay, 0, 1)
        check_int("victim_batch_size", self.victim_batch_size, 1, 65_536)
        check_int("victim_warmup_samples", self.victim_warmup_samples, 0)
        check_float("victim_round_epochs", self.victim_round_epochs, 0, 1000, low_open=True)
        check_choice("victim_batchnorm", self.victim_batchnorm, VICTIM_BATCHNORM)
        check_int("warmup_rounds", self.warmup_rounds, 1, 100)
        check_float("ema_weight", self.ema_weight, 0, 1, low_open=True)
        check_choice("split", self.split, SPLITS)
        check_choice("beneficiary_excludes", self.beneficiary_excludes, EXCLUDES)
        check_choice("suspect_labels", self.suspect_labels, SUSPECT_LABELS)
        check_choice("target_inference", self.target_inference, TARGET_INFERENCES)
        check_float("target_margin", self.target_margin, 0, 100)
        check_float("max_suspicious_fraction", self.max_suspicious_fraction, 0, 1, low_open=True)
        check_float("max_label_fraction", self.max_label_fraction, 0, 1, low_open=True)
        check_float("threshold_step", self.threshold_step, 0, 1)
        check_float("threshold_floor", self.threshold_floor, 0, 1)
        check_float("mix_fraction", self.mix_fraction, 0, 1)
        check_float("reselect_every", self.reselect_every, 0, 1, low_open=True)
        check_float("attention_threshold", self.attention_threshold, 0, 1)
        check_float("temperature", self.temperature, 0, 1000, low_open=True)
        check_float("lambda_u", self.lambda_u, 0, 100)
        check_float("lambda_u_late", self.lambda_u_late, 0, 100)
        check_float("lambda_switch", self.lambda_switch, 0, 1)
        check_bool("suppress_labelled", self.suppress_labelled)
        check_float("pseudo_confidence", self.pseudo_confidence, 0, 1)
        if self.beneficiary_lr is not None:
            check_float("beneficiary_lr", self.beneficiary_lr, 0, 10, low_open=True)
        if self.beneficiary_milestones is not None:
            object.__setattr__(self, "beneficiary_milestones",
                               check_fractions("beneficiary_milestones", self.beneficiary_milestones))
        check_int("checkpoint_every", self.checkpoint_every, 1)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_profile(cls, profile: str = "auto", device: torch.device | None = None, **overrides) -> "VabConfig":
        """The settings of a training budget (`VAB_PROFILES`) with `overrides` (None values are
        ignored) applied on top."""
        return cls(**profile_values(VAB_PROFILES, profile, device, overrides))

    def beneficiary_train_config(self, train_cfg: TrainConfig) -> TrainConfig:
        """The budget the beneficiary trains with: the TrainConfig with its own lr and milestones."""
        return dataclasses.replace(
            train_cfg, lr=train_cfg.lr if self.beneficiary_lr is None else self.beneficiary_lr,
            lr_milestones=train_cfg.lr_milestones if self.beneficiary_milestones is None else self.beneficiary_milestones)


# VabConfig fields that only the suppression phase reads: runs that differ only in these are the
# same run up to the end of AttentionMix (benchmarks/vab_suppression.py starts from there)
SUPPRESSION_FIELDS = frozenset({"temperature", "lambda_u", "lambda_u_late", "lambda_switch", "suppress_labelled",
                                "pseudo_confidence"})
