"""What the CIFAR-10-subset benchmarks share: where the data is and the training budget flags.

The budget is the library's "cpu" profile (`vablib.config.PROFILES`, and its V&B settings in
`VAB_PROFILES`) with any flag given on top, so the benchmarks and `-p profile cpu` in the
notebooks train the same models."""
from __future__ import annotations

import argparse
from pathlib import Path

from vablib import attacks, runio
from vablib.config import TrainConfig

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset.npz"


def add_budget_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--profile", default="cpu", help="the training budget to start from (vablib.config.PROFILES)")
    ap.add_argument("--model", help="override the profile's model")
    ap.add_argument("--width", type=float, help="override the profile's width multiplier")
    ap.add_argument("--epochs", type=int, help="override the profile's epochs")
    ap.add_argument("--lr", type=float, help="override the profile's learning rate")


def budget(args) -> TrainConfig:
    return TrainConfig.from_profile(args.profile, model=args.model, width=args.width, epochs=args.epochs, lr=args.lr)


def poisoned(ds, attack: str, seed: int, folder) -> "attacks.PoisonedData":
    """The attack at its CPU setting (`attacks.CPU_SETTINGS`), target 0, cached in `folder`."""
    cfg = attacks.AttackConfig(attack=attack, target_label=0, **attacks.CPU_SETTINGS[attack])
    return attacks.generate(ds, cfg, seed=seed, device="cpu", run=runio.RunDir(folder), progress=False)
