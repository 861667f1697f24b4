"""Run-folder state: what each notebook records in config.json and what later ones read back.

    00  begin_stage(dataset, seed)          -> recorded_setup
    01  begin_stage(attack, budget, profile) -> recorded_train_config, recorded_profile
    02  begin_stage(V&B settings)            -> recorded_vab_config
    03+ resume_run: the trainer rebuilt from all of the above, resumed from its last checkpoint

A value that conflicts with the one the folder was made with is refused (RunConflictError), and a
notebook run before the one it depends on names that notebook (DataNotFoundError).
"""
from __future__ import annotations

import dataclasses

import torch

from .config import SetupConfig, TrainConfig, VabConfig, as_params
from .errors import DataNotFoundError
from .runio import RunDir
from .utils import get_device, git_commit, library_versions, set_cpu_threads


def environment(device: torch.device) -> dict:
    return {"versions": library_versions(), "device": str(device), "git_commit": git_commit()}


def begin_stage(stage: str, run_dir: str, *configs, device: torch.device | None = None) -> RunDir:
    """Record the stage's parameters (configs, or dicts of plain values), with versions, device and
    git commit, in run_dir/config.json and return the RunDir. Raises RunConflictError if the folder
    was made with other values."""
    run = RunDir(run_dir)
    params = {}
    for cfg in configs:
        params.update(cfg if isinstance(cfg, dict) else as_params(cfg))
    run.record(stage, params, environment(device or torch.device("cpu")))
    return run


def _recorded(run: RunDir, cls, key: str, what: str, notebook: str) -> dict:
    """The recorded values of `cls`'s fields, after checking that `notebook` recorded `key`."""
    params = run.params()
    if key not in params:
        raise DataNotFoundError(f"{run.path} has no recorded {what}: run {notebook} with run_dir={str(run.path)!r} "
                                f"first.")
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in params.items() if k in names}


def recorded_setup(run: RunDir) -> SetupConfig:
    """The SetupConfig a run folder was made with (device and progress are each notebook's own)."""
    values = _recorded(run, SetupConfig, "dataset", "dataset", "00_setup_and_data")
    return SetupConfig(**{k: v for k, v in values.items() if k not in ("device", "progress")})


def recorded_train_config(run: RunDir) -> TrainConfig:
    return TrainConfig(**_recorded(run, TrainConfig, "epochs", "training budget", "01_generate_poisoned_dataset"))


def recorded_profile(run: RunDir) -> str:
    """The budget's name notebook 01 resolved, so notebook 02 starts from its V&B settings; a
    folder whose budget was recorded without one gets "paper" (VabConfig's defaults)."""
    _recorded(run, TrainConfig, "epochs", "training budget", "01_generate_poisoned_dataset")
    return run.params().get("profile", "paper")


def recorded_vab_config(run: RunDir) -> VabConfig:
    if "02_victim_warmup_and_entropy" not in run.config().get("stages", {}):
        raise DataNotFoundError(f"{run.path} has no recorded V&B settings: run 02_victim_warmup_and_entropy "
                                f"with run_dir={str(run.path)!r} first.")
    names = set(VabConfig.field_names())
    return VabConfig(**{k: v for k, v in run.params().items() if k in names})


def open_trainer(run: RunDir, device, progress: bool = True, vab_cfg: VabConfig | None = None):
    """The trainer for this run folder, resumed from checkpoints/latest.pt when there is one."""
    from .attacks import PoisonedData
    from .vab import VabTrainer

    trainer = VabTrainer(PoisonedData.load(run), recorded_train_config(run), vab_cfg or recorded_vab_config(run),
                         device, recorded_setup(run).seed, run, progress=progress)
    trainer.resume()
    return trainer


def require_phase(trainer, phase: str, notebook: str) -> None:
    if phase not in trainer.phases_done:
        raise DataNotFoundError(f"the '{phase}' phase has not run in {trainer.run.path}: run {notebook} first.")


def resume_run(run_dir: str, device: str = "auto", progress: bool = True, after: tuple[str, str] | None = None):
    """The set-up of notebooks 03-06: the device, all CPU threads, the run folder and its trainer
    resumed from the last checkpoint; `after` = (phase, notebook) that must have run. Returns
    (run, trainer)."""
    dev = get_device(device)
    set_cpu_threads()
    run = RunDir(run_dir)
    trainer = open_trainer(run, dev, progress)
    if after is not None:
        require_phase(trainer, *after)
    return run, trainer
