"""What the CIFAR-10-subset benchmarks share: where the data is and the training budget flags.

The budget is the library's "cpu" profile (`vablib.config.PROFILES`, and its V&B settings in
`VAB_PROFILES`) with any flag given on top, so the benchmarks and `-p profile cpu` in the
notebooks train the same models."""
from __future__ import annotations

import argparse
from pathlib import Path

from vablib import attacks, runio
from vablib.config import TrainConfig
from vablib.data import load_dataset

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset.npz"
FASHION_MNIST_SIZES = (6_000, 1_000)  # the first images of Debian's Fashion-MNIST, as the runs used


def load_data(spec: str):
    """`spec` is "digits", "fashion_mnist" (its first FASHION_MNIST_SIZES images, read offline from
    Debian's package) or the path of an npz dataset. Returns (dataset, a short name for caches)."""
    if spec == "digits":
        return load_dataset("digits"), "digits"
    if spec == "fashion_mnist":
        train, test = FASHION_MNIST_SIZES
        return load_dataset("fashion_mnist", train_size=train, test_size=test), f"fmnist{train // 1000}k"
    return load_dataset("npz", spec), Path(spec).stem


def add_budget_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--profile", default="cpu", help="the training budget to start from (vablib.config.PROFILES)")
    ap.add_argument("--model", help="override the profile's model")
    ap.add_argument("--width", type=float, help="override the profile's width multiplier")
    ap.add_argument("--epochs", type=int, help="override the profile's epochs")
    ap.add_argument("--lr", type=float, help="override the profile's learning rate")


def budget(args) -> TrainConfig:
    return TrainConfig.from_profile(args.profile, model=args.model, width=args.width, epochs=args.epochs, lr=args.lr)


def poisoned(ds, attack: str, seed: int, folder, mode: str = "all2one") -> "attacks.PoisonedData":
    """The attack at its CPU setting (`attacks.CPU_SETTINGS`), target 0 (or all-to-all), cached in `folder`."""
    cfg = attacks.AttackConfig(attack=attack, target_label=0, attack_mode=mode, **attacks.CPU_SETTINGS[attack])
    return attacks.generate(ds, cfg, seed=seed, device="cpu", run=runio.RunDir(folder), progress=False)
