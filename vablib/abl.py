"""ABL, Anti-Backdoor Learning (Li et al., NeurIPS 2021), as its authors' code runs it.

1. **Isolation**: a fresh model trains on the whole poisoned set with the LGA loss
   `sign(CE − γ) · CE` on the batch-mean cross entropy: it descends while the loss is above γ and
   ascends below it, so the loss hovers near γ, and the samples learned fastest (the poisoned
   ones) end with clearly lower loss. No augmentation.
2. **Selection**: each sample's cross entropy under that model in eval mode; the lowest
   `isolation_ratio` of the set is isolated, the rest is "other".
3. **Fine-tuning**: the same model, a new SGD, plain cross entropy on the other set with the
   run's augmentation and a step lr.
4. **Unlearning**: the same optimizer at a small constant lr maximises the cross entropy of the
   isolated set (gradient ascent). The model after the last unlearning epoch is ABL's model.

The settings default to the authors' code (`../shared/reference/defenses.md`); the epochs of the
three phases are fractions of the run's budget (the paper's 20 / 60 / 20 of 100), or the paper's
epochs with `schedule="reference"`. docs/method.md says where the kit departs and why.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .batches import BatchIterator, Normalizer, to_device_uint8
from .config import TrainConfig, check_choice, check_float
from .errors import ConfigError
from .models import build_model
from .training import predict_logits, sgd, train_epoch
from .utils import progress as progress_bar

LOSSES = ("lga", "flooding")
SCHEDULES = ("scaled", "reference")
REFERENCE_EPOCHS = (20, 60, 20)  # isolation, fine-tuning, unlearning: the paper's T_te = 20 of T = 100


@dataclass(frozen=True)
class AblConfig:
    """ABL's settings; defaults are the authors' code's (official `config.py`)."""

    loss: str = "lga"  # "flooding": |CE − γ| + γ, the codes' default, the same gradient as LGA
    gamma: float = 0.5  # the loss floor γ
    isolation_ratio: float = 0.01  # fraction of the training set isolated (p)
    schedule: str = "scaled"  # "scaled": the fractions below of the run's epochs; "reference": 20 / 60 / 20 epochs
    isolation_fraction: float = 0.2  # of the run's epochs, with schedule="scaled"
    unlearning_fraction: float = 0.2  # of the run's epochs; fine-tuning gets the rest
    isolation_lr: float = 0.1  # constant
    finetune_lr: float = 0.1  # ×0.1 at finetune_milestone
    finetune_milestone: float = 2 / 3  # of the fine-tuning epochs (the code's 40 of 60)
    unlearning_lr: float = 5e-4  # constant
    weight_decay: float = 1e-4  # SGD with Nesterov momentum (the TrainConfig's) in every phase

    def __post_init__(self):
        check_choice("abl loss", self.loss, LOSSES)
        check_float("abl gamma", self.gamma, 0, 100)
        check_float("abl isolation_ratio", self.isolation_ratio, 0, 1, low_open=True, high_open=True)
        check_choice("abl schedule", self.schedule, SCHEDULES)
        check_float("abl isolation_fraction", self.isolation_fraction, 0, 1, low_open=True, high_open=True)
        check_float("abl unlearning_fraction", self.unlearning_fraction, 0, 1, high_open=True)
        if self.isolation_fraction + self.unlearning_fraction >= 1:
            raise ConfigError(f"abl isolation_fraction + unlearning_fraction must leave epochs for fine-tuning, got "
                              f"{self.isolation_fraction} + {self.unlearning_fraction} ≥ 1.")
        for name in ("isolation_lr", "finetune_lr", "unlearning_lr"):
            check_float(f"abl {name}", getattr(self, name), 0, 10, low_open=True)
        check_float("abl finetune_milestone", self.finetune_milestone, 0, 1, low_open=True)
        check_float("abl weight_decay", self.weight_decay, 0, 1)

    @classmethod
    def from_params(cls, params: dict | None) -> "AblConfig":
        """From a notebook's `abl` parameter (a dict of settings; None: the defaults)."""
        params = params or {}
        if not isinstance(params, dict):
            raise ConfigError(f"abl must be a dict of ABL settings, e.g. {{'isolation_ratio': 0.05}}, got {params!r}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"abl settings {unknown} are not known; ABL's settings are: {', '.join(sorted(known))}.")
        return cls(**params)

    def epochs(self, run_epochs: int) -> tuple[int, int, int]:
        """(isolation, fine-tuning, unlearning) epochs for a run of `run_epochs`."""
        if self.schedule == "reference":
            return REFERENCE_EPOCHS
        isolation = max(1, round(self.isolation_fraction * run_epochs))
        unlearning = max(1, round(self.unlearning_fraction * run_epochs)) if self.unlearning_fraction else 0
        finetune = run_epochs - isolation - unlearning
        if finetune < 1:
            raise ConfigError(f"a run of {run_epochs} epochs leaves ABL no fine-tuning epoch at isolation_fraction "
                              f"{self.isolation_fraction} and unlearning_fraction {self.unlearning_fraction}; give "
                              "more epochs or leave abl out of defenses.")
        return isolation, finetune, unlearning


def lga_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """sign(CE − γ) · CE on the batch-mean cross entropy: descent above γ, ascent below."""
    ce = F.cross_entropy(logits, labels)
    return torch.sign(ce.detach() - gamma) * ce


def flooding_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """|CE − γ| + γ: the same gradient as `lga_loss`, a loss value that never falls below γ."""
    return (F.cross_entropy(logits, labels) - gamma).abs() + gamma


def unlearning_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """−CE: minimising it is gradient ascent on the isolated samples."""
    return -F.cross_entropy(logits, labels)


def sample_losses(model, images: torch.Tensor, labels: torch.Tensor, normalizer: Normalizer) -> torch.Tensor:
    """Each sample's cross entropy in eval mode, without augmentation (on the images' device)."""
    return F.cross_entropy(predict_logits(model, images, normalizer), labels, reduction="none")


def isolate(losses: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean mask of the `ratio` of samples with the lowest loss (ties: the lower index)."""
    k = max(1, int(len(losses) * ratio))
    mask = torch.zeros(len(losses), dtype=torch.bool, device=losses.device)
    mask[torch.argsort(losses, stable=True)[:k]] = True
    return mask


def train_abl(x_train: np.ndarray, y_train: np.ndarray, num_classes: int, dataset_name: str, train_cfg: TrainConfig,
              cfg: AblConfig, device, seed: int, evaluate=None, progress: bool = True):
    """ABL on a poisoned training set (uint8 N×H×W×C and its labels; never the poison mask).

    Returns (model in eval mode, isolated mask as a numpy bool array, history: one row per epoch
    with its phase, loss, lr, seconds and what `evaluate(model, normalizer)` gave)."""
    device = torch.device(device)
    iso_epochs, ft_epochs, un_epochs = cfg.epochs(train_cfg.epochs)
    channels = x_train.shape[3]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_model(train_cfg.model, int(num_classes), channels, train_cfg.width).to(device)
    normalizer = Normalizer.for_dataset(dataset_name, channels, device)
    images = to_device_uint8(x_train, device)
    labels = torch.as_tensor(np.asarray(y_train, np.int64), device=device)

    def batches(indices, augment, offset):
        return BatchIterator(images, labels, normalizer, train_cfg.batch_size, shuffle=True, augment=augment,
                             seed=seed + offset, indices=indices)

    def optimizer(lr):
        return sgd(model, lr, train_cfg.momentum, cfg.weight_decay, nesterov=True)

    base = lga_loss if cfg.loss == "lga" else flooding_loss
    floor_loss = lambda logits, y: base(logits, y, cfg.gamma)  # noqa: E731
    history: list[dict] = []
    bar = progress_bar(total=iso_epochs + ft_epochs + un_epochs, enabled=progress, desc="ABL")

    def run_epoch(phase, opt, iterator, loss_fn=None):
        t0 = time.time()
        row = {"epoch": len(history) + 1, "phase": phase, "lr": opt.param_groups[0]["lr"],
               **train_epoch(model, opt, iterator, device, train_cfg.amp, f"ABL {phase}", loss_fn)}
        if evaluate is not None:
            row.update(evaluate(model, normalizer))
        row["seconds"] = time.time() - t0
        history.append(row)
        bar.update(1)

    opt = optimizer(cfg.isolation_lr)
    everything = batches(None, False, 0)
    for _ in range(iso_epochs):
        run_epoch("isolation", opt, everything, floor_loss)
    isolated = isolate(sample_losses(model, images, labels, normalizer), cfg.isolation_ratio)

    opt = optimizer(cfg.finetune_lr)
    milestone = max(1, math.ceil(cfg.finetune_milestone * ft_epochs)) if cfg.finetune_milestone < 1 else ft_epochs
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[milestone], gamma=0.1)
    other = batches(torch.nonzero(~isolated).flatten().cpu(), train_cfg.augment, 1)
    for _ in range(ft_epochs):
        run_epoch("fine-tuning", opt, other)
        schedule.step()

    for group in opt.param_groups:  # the fine-tuning optimizer goes on (its momentum too)
        group["lr"] = cfg.unlearning_lr
    held = batches(torch.nonzero(isolated).flatten().cpu(), False, 2)
    for _ in range(un_epochs):
        run_epoch("unlearning", opt, held, unlearning_loss)
    bar.close()
    model.eval()
    return model, isolated.cpu().numpy(), history
