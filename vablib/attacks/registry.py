"""What an attack is, the registry of attacks, and the plug-in for user-written triggers.

An `Attack` names its parameters (with the reference defaults, and budget-dependent defaults for
the attacks that train something), checks their values, and `build`s a `Trigger` for a dataset.
A `Trigger` holds the fitted parts (a patch, a warping grid, a trained generator) and turns uint8
batches N×H×W×C into triggered uint8 batches.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..plugins import check_new_name, source_of

BUDGETS = ("cpu", "paper")


@dataclass
class Trigger:
    """A fitted trigger. `apply` makes the test-time (and default training) triggered images;
    `poison` (optional) makes the training images of poisoned samples when they differ (CL's
    adversarial perturbation); `noise` (optional) makes WaNet noise / IAD cross samples, which
    keep their labels: `noise(x, rng)`."""

    apply: Callable[[np.ndarray], np.ndarray]
    poison: Callable[[np.ndarray], np.ndarray] | None = None
    noise: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    noise_rate: float = 0.0
    info: dict = field(default_factory=dict)

    def poison_train(self, x: np.ndarray) -> np.ndarray:
        return (self.poison or self.apply)(x)


@dataclass
class BuildContext:
    """Everything an attack may need to build its trigger."""

    ds: object  # vablib.data.ImageDataset
    params: dict  # resolved parameters (defaults + budget defaults + overrides)
    target_label: int
    attack_mode: str
    seed: int
    device: object
    run: object | None
    progress: bool


@dataclass
class Attack:
    name: str
    clean_label: bool
    defaults: dict  # reference defaults (32×32 images)
    build: Callable[[BuildContext], Trigger]
    checks: dict = field(default_factory=dict)  # name → callable(full name, value) raising ConfigError
    budget_defaults: dict = field(default_factory=dict)  # "cpu"/"paper" → {param: value}
    shape_check: Callable | None = None  # (params, image_shape) → None, raises ConfigError
    description: str = ""
    builtin: bool = True

    @property
    def known_params(self) -> list[str]:
        keys = set(self.defaults)
        for values in self.budget_defaults.values():
            keys |= set(values)
        return sorted(keys)

    def resolve(self, overrides: dict, budget: str = "cpu") -> dict:
        """defaults, then the budget's defaults, then the user's overrides (checked)."""
        self.check_params(overrides)
        return {**self.defaults, **self.budget_defaults.get(budget, {}), **overrides}

    def check_params(self, overrides: dict) -> None:
        if not isinstance(overrides, dict):
            raise ConfigError(f"attack_params must be a dict of {self.name} settings, got {type(overrides).__name__}.")
        unknown = sorted(set(overrides) - set(self.known_params))
        if unknown:
            known = ", ".join(self.known_params) or "none"
            raise ConfigError(f"attack_params {unknown} are not settings of {self.name}; its settings are: {known}.")
        for key, value in overrides.items():
            if key in self.checks:
                self.checks[key](f"attack_params[{key!r}]", value)


_REGISTRY: dict[str, Attack] = {}


def register(attack: Attack) -> Attack:
    _REGISTRY[attack.name] = attack
    return attack


def get_attack(name: str) -> Attack:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(_REGISTRY)} "
                          "(or register your own with vablib.attacks.custom_attack).")
    return _REGISTRY[name]


def available_attacks() -> tuple[str, ...]:
    """Built-in attacks and those registered with `custom_attack` in this kernel."""
    return tuple(_REGISTRY)


@contextmanager
def stand_ins(attacks: dict[str, bool]):
    """Known by name while the block runs: attacks (name → clean_label) that a notebook registers
    when it runs, so that its AttackConfig can be checked before. They cannot be built."""
    added = [name for name in attacks if name not in _REGISTRY]
    for name in added:
        register(Attack(name, attacks[name], {}, build=_stand_in_build, builtin=False))
    try:
        yield
    finally:
        for name in added:
            _REGISTRY.pop(name, None)


def _stand_in_build(ctx: BuildContext) -> Trigger:
    raise ConfigError("this attack is a stand-in for one a notebook registers; register it with "
                      "vablib.attacks.custom_attack before generating data.")


# ---------------------------------------------------------------- the plug-in

def _checked_trigger(name: str, fn: Callable) -> Callable:
    def apply(x: np.ndarray) -> np.ndarray:
        out = np.asarray(fn(x.copy()))
        if out.shape != x.shape or out.dtype != np.uint8:
            raise ConfigError(f"the trigger function of attack {name!r} must return a uint8 batch of the shape it "
                              f"was given {x.shape}; it returned {out.dtype} {out.shape}.")
        return out
    return apply


def custom_attack(name: str, trigger_fn: Callable[[np.ndarray], np.ndarray], clean_label: bool = False,
                  description: str = "") -> Attack:
    """Turn a trigger function (uint8 batch N×H×W×C in, uint8 batch of the same shape out) into an
    attack and register it, so `AttackConfig(attack=name)` and `generate` use it like a built-in.

    clean_label=False: a dirty-label attack (poisoned images relabelled to the target).
    clean_label=True: only target-class images are poisoned and labels never change.
    Re-registering a name replaces the earlier custom attack; built-in names are refused."""
    check_new_name("attack", name, _REGISTRY, "my_trigger")
    if not callable(trigger_fn):
        raise ConfigError(f"trigger_fn must be a function taking and returning a uint8 batch, got {trigger_fn!r}.")
    if not isinstance(clean_label, bool):
        raise ConfigError(f"clean_label must be True or False, got {clean_label!r}.")
    apply = _checked_trigger(name, trigger_fn)

    def build(ctx: BuildContext) -> Trigger:
        return Trigger(apply=apply, info={"custom": True, "function": source_of(trigger_fn)})

    return register(Attack(name, clean_label, {}, build, description=description or (trigger_fn.__doc__ or "").strip(),
                           builtin=False))
