"""AttackConfig: the validated settings of notebook 01's attack."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import check_choice, check_float, check_int
from ..errors import ConfigError
from .registry import BUDGETS, Attack, get_attack

MODES = ("all2one", "all2all")


@dataclass(frozen=True)
class AttackConfig:
    """Which attack, how much poison, which target.

    poison_rate counts against the whole training set for dirty-label attacks (the poisoned images
    are drawn from the non-target classes, so each one changes label) and against the *target class*
    for clean-label attacks (SIG, CL, custom clean-label), which only poison target-class images.
    attack_budget sets how much CL's clean model/PGD and IAD's generator train: "cpu" (minutes on a
    laptop) or "paper" (the reference scale, for a GPU). attack_params overrides single settings."""

    attack: str = "badnets"
    poison_rate: float = 0.1
    target_label: int = 0
    attack_mode: str = "all2one"
    attack_budget: str = "cpu"
    attack_params: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.attack, str):
            raise ConfigError(f"attack must be the name of an attack such as 'badnets', got {self.attack!r}.")
        get_attack(self.attack)  # unknown names: one error listing the registered attacks
        check_float("poison_rate", self.poison_rate, 0, 1, low_open=True)
        check_int("target_label", self.target_label, 0)
        check_choice("attack_mode", self.attack_mode, MODES)
        check_choice("attack_budget", self.attack_budget, BUDGETS)
        self.spec.check_params(self.attack_params)
        if self.spec.clean_label and self.attack_mode == "all2all":
            raise ConfigError(f"{self.attack} is a clean-label attack, which poisons only target-class images: "
                              "use attack_mode='all2one'.")

    @property
    def spec(self) -> Attack:
        return get_attack(self.attack)

    @property
    def clean_label(self) -> bool:
        return self.spec.clean_label

    def params(self) -> dict:
        """All settings of the attack: reference defaults, budget defaults, then attack_params."""
        return self.spec.resolve(self.attack_params, self.attack_budget)

    def counts(self, y_train: np.ndarray, num_classes: int) -> dict:
        """How many samples are poisoned and from which pool (see the class docstring)."""
        n = len(y_train)
        if self.clean_label:
            pool = int((y_train == self.target_label).sum())
            base = pool
        else:
            pool = int((y_train != self.target_label).sum()) if self.attack_mode == "all2one" else n
            base = n
        n_poison = int(round(self.poison_rate * base))
        noise_rate = float(self.params().get("noise_rate", self.params().get("cross_rate", 0.0)))
        return {"rate_base": base, "pool": pool, "n_poison": n_poison, "n_noise": int(round(noise_rate * n))}

    def validate_for(self, ds) -> dict:
        """Checks that need the dataset (label range, trigger shapes, pool sizes); returns counts.
        Called by `generate` before any expensive work."""
        if self.target_label >= ds.num_classes:
            raise ConfigError(f"target_label={self.target_label} is out of range: {ds.name} has {ds.num_classes} "
                              f"classes (0..{ds.num_classes - 1}).")
        if self.spec.shape_check is not None:
            self.spec.shape_check(self.params(), ds.image_shape)
        c = self.counts(ds.y_train, ds.num_classes)
        what = "target-class images" if self.clean_label else "training images"
        if c["n_poison"] < 1:
            raise ConfigError(f"poison_rate={self.poison_rate} of {c['rate_base']} {what} poisons no sample; "
                              "raise poison_rate.")
        if c["n_poison"] > c["pool"]:
            raise ConfigError(f"poison_rate={self.poison_rate} asks for {c['n_poison']} poisoned images but only "
                              f"{c['pool']} images are not of the target class; use poison_rate ≤ "
                              f"{c['pool'] / c['rate_base']:.3f}.")
        if c["n_noise"] > len(ds.y_train) - c["n_poison"]:
            raise ConfigError(f"{self.attack} asks for {c['n_noise']} noise/cross samples besides {c['n_poison']} "
                              f"poisoned ones, more than the {len(ds.y_train)} training images; lower noise_rate/cross_rate.")
        return c
