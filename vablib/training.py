"""Plain supervised training and inference on the on-device batch path.

Shared by the no-defense baseline, the clean reference model, the victim and the beneficiary.
Loss and accuracy are accumulated on the device and read once per epoch (no host sync per step).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .batches import BatchIterator, Normalizer
from .errors import TrainingDivergedError


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA only: on CPU bf16 is very slow here, so CPU stays fp32."""
    if enabled and torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sgd(model, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


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


def train_epoch(model, optimizer, batches: BatchIterator, device, amp: bool = True, what: str = "training") -> dict:
    """One epoch of hard-label cross entropy. Returns mean loss and training accuracy."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y, _ in batches:
        with autocast(device, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
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
