"""Backdoor poisoning attacks: BadNets, Blended, SIG, label-consistent (CL), WaNet and input-aware
dynamic (IAD), plus user-written triggers through `custom_attack`.

    cfg = AttackConfig("badnets", poison_rate=0.1, target_label=0)
    data = generate(ds, cfg, seed=0, run=run)   # a PoisonedData
    data.save(run)                              # artifacts/poisoned.npz + poisoned_manifest.json

Modules: `triggers` (pure batch trigger functions), `registry` (Attack, Trigger, plug-in),
`builtin` (the six attacks and their reference defaults), `config` (AttackConfig), `poison`
(selection, relabelling, `generate`), `artifact` (PoisonedData), `cl` (PGD), `iad` (generator),
`gallery` (figures and statistics).
"""
from . import builtin as _builtin  # noqa: F401  (registers the six attacks)
from .artifact import PoisonedData
from .builtin import ATTACKS, CPU_SETTINGS
from .config import MODES, AttackConfig
from .poison import choose_indices, generate, poisoned_labels, recorded_dataset
from .registry import BUDGETS, Attack, Trigger, available_attacks, custom_attack, get_attack

# the figures load matplotlib and seaborn: imported when first used, so a parameter check stays quick
_GALLERY = ("attack_gallery", "interactive_gallery", "label_shift_figure", "overview_gallery", "poison_summary",
            "poison_table", "poisoned_examples", "preview")


def __getattr__(name: str):
    if name in _GALLERY:
        from . import gallery

        return getattr(gallery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "ATTACKS", "BUDGETS", "CPU_SETTINGS", "MODES", "Attack", "AttackConfig", "PoisonedData", "Trigger", "attack_gallery",
    "available_attacks", "choose_indices", "custom_attack", "generate", "get_attack", "interactive_gallery",
    "label_shift_figure", "overview_gallery", "poison_summary", "poison_table", "poisoned_examples",
    "poisoned_labels", "preview", "recorded_dataset",
]
