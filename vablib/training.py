"""Plain supervised training and inference on the on-device batch path.

Shared by the no-defense baseline, the clean floor, CL's clean model, the victim and the
beneficiary. Loss and accuracy are accumulated on the device and read once per epoch (no host sync
per step).
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .batches import BatchIterator, Normalizer, to_device_uint8
from .config import TrainConfig
from .errors import ConfigError, TrainingDivergedError
from .models import build_model
from .utils import progress as progress_bar, reuse_freed_memory


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA only: on CPU bf16 is very slow here, so CPU stays fp32."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sgd(model, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = False):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def adam(model, lr: float = 1e-3, weight_decay: float = 5e-4):
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy against soft targets (rows need not sum to 1: suppression targets do not)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def check_finite(loss_sum: torch.Tensor, what: str) -> float:
    value = float(loss_sum)
    if not math.isfinite(value):
        raise TrainingDivergedError(f"{what}: the loss became {value}; lower the learning rate or check the data. "
                                    "The last good checkpoint is kept.")
    return value


def train_epoch(model, optimizer, batches: BatchIterator, device, amp: bool = True, what: str = "training",
                loss_fn=None) -> dict:
    """One epoch of hard-label cross entropy, or of `loss_fn(logits, labels)` (a batch's scalar
    loss, e.g. ABL's). Returns mean loss and training accuracy."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y, _ in batches:
        with autocast(device, amp):
            logits = model(x)
        loss = (loss_fn or F.cross_entropy)(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    return {"loss": check_finite(loss_sum, what) / max(seen, 1), "train_acc": float(correct) / max(seen, 1)}


@torch.inference_mode()
def predict_logits(model, images_uint8: torch.Tensor, normalizer: Normalizer, batch_size: int = 1024,
                   amp: bool = True) -> torch.Tensor:
    """Logits (float32, on the device) for an on-device uint8 image tensor, in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    device = images_uint8.device
    for start in range(0, len(images_uint8), batch_size):
        with autocast(device, amp):
            out.append(model(normalizer(images_uint8[start:start + batch_size])).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


def predict(model, images_uint8: torch.Tensor, normalizer: Normalizer, batch_size: int = 1024) -> torch.Tensor:
    return predict_logits(model, images_uint8, normalizer, batch_size).argmax(1)


def sgd_with_schedule(model, cfg):
    """SGD and the step schedule of a TrainConfig (lr ×0.1 at each milestone, counted in epochs)."""
    opt = sgd(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestone_epochs(), gamma=0.1)
    return opt, sched


def train_classifier(x_train: np.ndarray, y_train: np.ndarray, evaluate, train_cfg: TrainConfig, device,
                     seed: int, num_classes: int, dataset_name: str = "", progress: bool = True, on_epoch=None,
                     what: str = "training"):
    """Train `train_cfg.model` with SGD and the config's step schedule on uint8 N×H×W×C images.

    `evaluate(model, normalizer) -> dict` (or None) scores the model after every epoch, e.g.
    `metrics.backdoor_metrics` on the test sets. Returns (model in eval mode, history): one dict per
    epoch with loss, train_acc, lr, seconds and what `evaluate` gave. `on_epoch(row)` is called
    after each epoch."""
    if not isinstance(train_cfg, TrainConfig):
        raise ConfigError(f"train_cfg must be a vablib.config.TrainConfig, got {type(train_cfg).__name__}.")
    if len(x_train) != len(y_train) or x_train.ndim != 4 or x_train.dtype != np.uint8:
        raise ConfigError(f"x_train must be uint8 N×H×W×C with one label per image, got {x_train.dtype} "
                          f"{x_train.shape} and {len(y_train)} labels.")
    device = torch.device(device)
    reuse_freed_memory(device)
    channels = x_train.shape[3]
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(int(seed))
        model = build_model(train_cfg.model, int(num_classes), channels, train_cfg.width).to(device)
    normalizer = Normalizer.for_dataset(dataset_name, channels, device)
    batches = BatchIterator(to_device_uint8(x_train, device), torch.as_tensor(np.asarray(y_train, np.int64), device=device),
                            normalizer, train_cfg.batch_size, shuffle=True, augment=train_cfg.augment, seed=seed)
    optimizer, schedule = sgd_with_schedule(model, train_cfg)
    history = []
    for epoch in progress_bar(range(1, train_cfg.epochs + 1), progress, desc=what):
        t0 = time.time()
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, **train_epoch(model, optimizer, batches, device, train_cfg.amp, what), "lr": lr}
        schedule.step()
        if evaluate is not None:
            row.update(evaluate(model, normalizer))
        row["seconds"] = time.time() - t0
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return model, history
