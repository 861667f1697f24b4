"""Validated, frozen configurations: one per notebook stage.

A notebook's `parameters` cell holds plain literals; the next cell builds the stage's config
(which checks every value and raises one clear ConfigError) and calls `begin_stage`, which records
the parameters in the run folder's config.json, refusing values that conflict with the ones the
folder was made with.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .errors import ConfigError


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


# ---------------------------------------------------------------- stage 00

@dataclass(frozen=True)
class SetupConfig:
    """Parameters of 00_setup_and_data: which data, which seed, which device."""

    dataset: str = "digits"
    data_root: str = "data"
    download: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        from .data import DATASETS
        from .utils import get_device

        check_choice("dataset", self.dataset, DATASETS)
        check_str("data_root", self.data_root)
        check_bool("download", self.download)
        check_int("seed", self.seed, 0)
        check_bool("progress", self.progress)
        get_device(self.device)  # raises if unknown or unavailable

    @property
    def torch_device(self) -> torch.device:
        from .utils import get_device

        return get_device(self.device)


def environment(device: torch.device) -> dict:
    from .utils import git_commit, library_versions

    return {"versions": library_versions(), "device": str(device), "git_commit": git_commit()}


def begin_stage(stage: str, run_dir: str, *configs, device: torch.device | None = None):
    """Record the stage's parameters (configs, or dicts of plain values), with versions, device and
    git commit, in run_dir/config.json and return the RunDir. Raises RunConflictError if the folder
    was made with other values."""
    from .runio import RunDir

    run = RunDir(run_dir)
    params = {}
    for cfg in configs:
        params.update(cfg if isinstance(cfg, dict) else as_params(cfg))
    run.record(stage, params, environment(device or torch.device("cpu")))
    return run


def recorded_setup(run) -> SetupConfig:
    """The SetupConfig a run folder was made with (for notebooks after 00)."""
    params = run.params()
    if "dataset" not in params:
        from .errors import DataNotFoundError

        raise DataNotFoundError(f"{run.path} has no recorded dataset: run 00_setup_and_data with "
                                f"run_dir={str(run.path)!r} first.")
    fields = {f.name for f in dataclasses.fields(SetupConfig)}
    return SetupConfig(**{k: v for k, v in params.items() if k in fields and k not in ("device", "progress")})


# ---------------------------------------------------------------- the training budget

# Named budgets. "paper" is the reference CIFAR-10 schedule (GPU); "cpu" is the profile used for
# the CIFAR-10 subset benchmarks on 2 CPU cores; "demo" keeps `make demo` on digits in minutes.
# profile="auto" means "paper" on CUDA and "cpu" elsewhere. Explicit values override a profile.
# The cpu profile's lr is 0.01: with the paper's 0.1, a width-0.25 ResNet-18 on 5,170 images (40
# steps an epoch) never fitted the poisoned samples (BadNets 3×3, no augmentation: ASR 15% after
# 10 epochs), while at 0.01 it reached 100% ASR in 2 epochs and Blended (α 0.2) 99.8% with augmentation.
PROFILES = {
    "paper": {"model": "resnet18", "width": 1.0, "epochs": 200, "batch_size": 128},
    "cpu": {"model": "resnet18", "width": 0.25, "epochs": 40, "batch_size": 128, "lr": 0.01},
    "demo": {"model": "resnet18", "width": 0.125, "epochs": 12, "batch_size": 64, "lr": 0.01},
}

# The V&B settings that go with each budget, on top of VabConfig's defaults (the reference's);
# notebook 02 and the benchmarks start from them (`VabConfig.from_profile`). The cpu ones were
# measured on the CIFAR-10 subset: one victim learns WaNet's warp (two cross-fitted ones did not);
# a 10,000-sample warm-up and 20 warm-up rounds (about 3 s each) let the split settle before the
# beneficiary starts (WaNet's recall swung between 0.75 and 0.98 up to round 18, Blended's up to
# round 6). The beneficiary trains at the paper's lr 0.1: the profile's 0.01 is what lets the
# no-defense model fit the poison, which the beneficiary must not do, and it left AttentionMix
# underfitting (48.9% against 47.6% after 20 epochs on BadNets' exact split). Its lr drops at the
# phase boundaries (epochs 20 and 30 of 40): the paper's 50/100/150 of 200, scaled to 40 epochs,
# run suppression at lr 0.001 and 0.0001 for 740 steps in all, and the beneficiary's accuracy did
# not move (BadNets 50.2-51.1% through suppression; 61.6% with the drops at the boundaries).
# The demo's beneficiary trains the same way (digits, 12 epochs: ACC 87.2% against 51.9% with the
# paper's schedule); its victim keeps the reference's 50,000-sample warm-up: 20,000, 30,000 and
# 40,000 each inferred a clean target label on one of seeds 0-2 (50,000 does on seed 2).
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
