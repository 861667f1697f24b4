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
    """Record the stage's parameters (with versions, device and git commit) in run_dir/config.json
    and return the RunDir. Raises RunConflictError if the folder was made with other values."""
    from .runio import RunDir

    run = RunDir(run_dir)
    params = {}
    for cfg in configs:
        params.update(as_params(cfg))
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
