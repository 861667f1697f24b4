"""Semi-supervised suppression targets (V&B phase 5).

The victim knows the backdoor; subtracting its temperature-softened prediction from a target
removes whatever class the victim is sure of (for poisoned samples, the target class), so the
beneficiary is pushed away from the backdoor instead of learning it."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def victim_soft_predictions(victim_logits: torch.Tensor, temperature: float = 3.0) -> torch.Tensor:
    return torch.softmax(victim_logits.float() / temperature, dim=1)


def labelled_targets(labels: torch.Tensor, victim_probs: torch.Tensor) -> torch.Tensor:
    """clip(onehot(y) − q, 0, 1) for credible samples."""
    onehot = F.one_hot(labels, victim_probs.shape[1]).to(victim_probs.dtype)
    return (onehot - victim_probs).clamp(0, 1)


def pseudo_targets(probs_view1: torch.Tensor, probs_view2: torch.Tensor, victim_probs: torch.Tensor,
                   min_confidence: float = 0.0) -> torch.Tensor:
    """The beneficiary's averaged prediction over two views, sharpened to its arg-max, minus the
    victim's soft prediction, clipped to [0, 1]: the targets of unlabelled suspicious samples.
    Rows whose averaged top probability is below `min_confidence` get an all-zero target (no loss):
    0 keeps every row, as the reference does."""
    mean = (probs_view1.float() + probs_view2.float()) / 2
    top, label = mean.max(dim=1)
    pseudo = F.one_hot(label, mean.shape[1]).to(victim_probs.dtype)
    return (pseudo - victim_probs).clamp(0, 1) * (top >= min_confidence).to(victim_probs.dtype)[:, None]
