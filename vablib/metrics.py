"""Metrics: ACC / ASR / RA of a model, and the quality of a poisoned-sample split.

Everything is computed with tensor operations on the device and read back once."""
from __future__ import annotations

import numpy as np
import torch

from .batches import Normalizer, to_device_uint8
from .training import predict, predict_logits


def eval_tensors(data, device) -> dict:
    """The clean and triggered test sets of a PoisonedData (or anything with x_test, y_test,
    x_bd_test, y_bd_target, y_bd_true) on the device, as `backdoor_metrics` takes them."""
    labels = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=device)  # noqa: E731
    return {"x_test": to_device_uint8(data.x_test, device), "y_test": labels(data.y_test),
            "x_triggered": to_device_uint8(data.x_bd_test, device), "y_target": labels(data.y_bd_target),
            "y_true": labels(data.y_bd_true)}


@torch.no_grad()
def backdoor_metrics(model, normalizer: Normalizer, x_test: torch.Tensor, y_test: torch.Tensor,
                     x_triggered: torch.Tensor, y_target: torch.Tensor, y_true: torch.Tensor) -> dict:
    """ACC on the clean test set; ASR = triggered non-target images predicted as the attack's target
    label; RA = those predicted as their true label; `class_acc`: ACC of each class (a defense can
    lose one class, typically the target, while the mean hides it; NaN for a class with no test
    image). All tensors on the model's device."""
    logits = predict_logits(model, x_test, normalizer)
    correct = logits.argmax(1) == y_test
    out = {"acc": correct.float().mean()}
    if len(x_triggered):
        bd = predict(model, x_triggered, normalizer)
        out["asr"] = (bd == y_target).float().mean()
        out["ra"] = (bd == y_true).float().mean()
    k = logits.shape[1]  # the model's classes, so every epoch's list has the same length
    per_class = torch.bincount(y_test[correct], minlength=k) / torch.bincount(y_test, minlength=k)
    out = {name: float(v) for name, v in out.items()}
    out["class_acc"] = per_class.tolist()
    return out


def auroc(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of `scores` ranking positives above negatives (ties count half),
    via the rank-sum (Mann-Whitney U) formula: no per-sample loop."""
    scores = scores.double().flatten()
    positives = positives.bool().flatten()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    sorted_scores, order = torch.sort(scores)
    # 1-based ranks, averaged over ties: a run of c equal scores ending at rank e gets e - (c-1)/2
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    counts = counts.to(scores.dtype)
    avg = torch.cumsum(counts, 0) - (counts - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = avg[inverse]
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def detection_metrics(flagged: torch.Tensor, poisoned: torch.Tensor, suspicion: torch.Tensor | None = None) -> dict:
    """Quality of a split against the ground-truth poison mask. `flagged` marks samples put in the
    suspicious set; `suspicion` (higher = more suspicious) gives the AUROC."""
    flagged, poisoned = flagged.bool(), poisoned.bool()
    tp = (flagged & poisoned).sum()
    fp = (flagged & ~poisoned).sum()
    fn = (~flagged & poisoned).sum()
    tn = (~flagged & ~poisoned).sum()
    tp, fp, fn, tn = (int(v) for v in torch.stack([tp, fp, fn, tn]).cpu())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    out = {
        "precision": precision,
        "recall": recall,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "n_suspicious": tp + fp,
        "n_credible": fn + tn,
    }
    if suspicion is not None:
        out["auroc"] = auroc(suspicion, poisoned)
    return out
