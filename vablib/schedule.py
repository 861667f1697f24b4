"""The V&B schedule as plain arithmetic: phase boundaries, re-selection epochs, λ and victim steps.

Everything is a fraction of the run's epochs, so the paper's 200-epoch schedule and a 12-epoch
demo are the same code. Beneficiary epochs count from 1.

The victim's part, before the beneficiary starts (`victim_plan`):

    warmup  train on the whole poisoned set, score (scoring 1)
    rounds  train on the victim's set; then, for each further round, score and train again

so after `warmup_rounds` rounds there were 1 + warmup_rounds victim trainings and warmup_rounds
scorings: the last training is scored at the first re-selection, which trains once more first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import VabConfig


def victim_plan(phase: str, warmup_rounds: int) -> list[str]:
    """The victim's steps in a phase before the beneficiary: "train_all" (the whole training set),
    "train" (the victim's own set) and "score" (score every sample and re-split)."""
    if phase == "warmup":
        return ["train_all", "score"]
    return ["train"] + ["score", "train"] * (warmup_rounds - 1)


@dataclass(frozen=True)
class Schedule:
    epochs: int
    vab: VabConfig

    @property
    def mix_epochs(self) -> int:
        """Beneficiary epochs 1..mix_epochs use AttentionMix; the rest suppression."""
        return int(round(self.vab.mix_fraction * self.epochs))

    @property
    def reselect_interval(self) -> int:
        return max(1, int(round(self.vab.reselect_every * self.epochs)))

    def phase_of(self, epoch: int) -> str:
        return "mix" if epoch <= self.mix_epochs else "suppress"

    def reselects_before(self, epoch: int) -> bool:
        """Re-selection before beneficiary epoch `epoch`: every `reselect_interval` epochs during
        AttentionMix (5 of 200 in the reference), before every suppression epoch, never before 1."""
        if epoch == 1:
            return False
        return self.phase_of(epoch) == "suppress" or (epoch - 1) % self.reselect_interval == 0

    def lambda_u(self, epoch: int) -> float:
        """Weight of the unlabelled loss in suppression epoch `epoch` (0.1, then 0.5 after 150/200)."""
        return self.vab.lambda_u if epoch <= self.vab.lambda_switch * self.epochs else self.vab.lambda_u_late

    def victim_steps(self, n_samples: int, warmup: bool = False) -> int:
        """Optimizer steps of one victim training on `n_samples` samples: the warm-up sees
        `victim_warmup_samples` samples whatever the dataset size (391 steps of 128, one CIFAR-10
        epoch; 0: one pass), a later training `victim_round_epochs` passes over the victim's set."""
        if warmup:
            samples = self.vab.victim_warmup_samples or n_samples
        else:
            samples = n_samples * self.vab.victim_round_epochs
        return max(1, math.ceil(samples / self.vab.victim_batch_size))
