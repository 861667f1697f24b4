"""Entropy-based poisoned-sample detection (V&B phase 2).

A network trained on poisoned data is extremely sure of the target class on poisoned samples, so
their prediction entropy is low. Scores are smoothed across scorings with an EMA, min-max
normalised, and split into *credible* (high entropy) and *suspicious* (low entropy) samples,
either by the reference's fixed threshold schedule or adaptively by a two-component Gaussian
mixture fitted to the log-entropy (the reference thresholds do not carry over to small datasets).
Everything is vectorised on the device; no per-sample Python loop.
"""
from __future__ import annotations

import math

import torch

from .batches import Normalizer
from .training import predict_logits

SPLITS = ("gmm", "reference")


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(x) = −mean_c p_c log p_c over the softmax of each row, in float32. log_softmax keeps it
    finite for extreme logits; non-finite logits give the maximum entropy log(K)/K (never NaN)."""
    logits = logits.float()
    finite = torch.isfinite(logits).all(dim=1)
    logits = torch.where(finite[:, None], logits, torch.zeros_like(logits))
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).mean(dim=1)


def score_entropy(model, images_uint8: torch.Tensor, normalizer: Normalizer, batch_size: int = 1024) -> torch.Tensor:
    """Entropy of every image under `model` (eval mode, no augmentation, inference mode)."""
    return prediction_entropy(predict_logits(model, images_uint8, normalizer, batch_size))


def ema_update(previous: torch.Tensor | None, new: torch.Tensor, weight_new: float = 0.75) -> torch.Tensor:
    """Exponential moving average across scorings; weight r on the new score (reference r = 0.75)."""
    return new.clone() if previous is None else weight_new * new + (1 - weight_new) * previous


def minmax(scores: torch.Tensor) -> torch.Tensor:
    lo, hi = scores.min(), scores.max()
    return (scores - lo) / (hi - lo).clamp_min(1e-12)


def reference_threshold(round_index: int, step: float = 0.4, floor: float = 0.2) -> float:
    """The reference schedule max(1 − 0.4 e, 0.2): 0.6 at round 1, then 0.2 from round 2 on."""
    return max(1.0 - step * round_index, floor)


def split_reference(normalized: torch.Tensor, threshold: float) -> torch.Tensor:
    """Suspicious mask: normalised score at or below the threshold (credible = above)."""
    return normalized <= threshold


def fit_gmm_1d(x: torch.Tensor, iters: int = 100, tol: float = 1e-6):
    """EM for a two-component 1-D Gaussian mixture; deterministic initialisation at the 10% and
    90% quantiles. Returns (weights, means, variances) sorted by mean."""
    x = x.double()
    mu = torch.quantile(x, torch.tensor([0.1, 0.9], dtype=x.dtype, device=x.device))
    var = x.var().clamp_min(1e-12).repeat(2)
    w = torch.full((2,), 0.5, dtype=x.dtype, device=x.device)
    floor = 1e-6 * float(x.var().clamp_min(1e-12))
    prev = -math.inf
    for _ in range(iters):
        logp = -0.5 * ((x[:, None] - mu) ** 2 / var + torch.log(2 * math.pi * var)) + torch.log(w)
        ll = torch.logsumexp(logp, dim=1)
        resp = torch.exp(logp - ll[:, None])
        nk = resp.sum(0).clamp_min(1e-12)
        w = nk / len(x)
        mu = (resp * x[:, None]).sum(0) / nk
        var = ((resp * (x[:, None] - mu) ** 2).sum(0) / nk).clamp_min(floor)
        cur = float(ll.mean())
        if abs(cur - prev) < tol:
            break
        prev = cur
    order = torch.argsort(mu)
    return w[order], mu[order], var[order]


def split_gmm(scores: torch.Tensor, max_fraction: float = 0.5, posterior: float = 0.5) -> torch.Tensor:
    """Suspicious mask from a 2-component GMM on log(entropy): samples whose posterior probability
    of the low-entropy component exceeds `posterior` (lower it to trade precision for recall). If that component would exceed `max_fraction` of the data (no clear
    low-entropy cluster), the lowest `max_fraction` are taken instead, so the split never swallows
    the dataset."""
    x = torch.log(scores.double().clamp_min(1e-30))
    w, mu, var = fit_gmm_1d(x)
    logp = -0.5 * ((x[:, None] - mu) ** 2 / var + torch.log(var)) + torch.log(w)
    suspicious = torch.softmax(logp, dim=1)[:, 0] > posterior
    suspicious &= x <= mu[1]  # the low component's wide tail must not claim high-entropy samples
    cap = int(max_fraction * len(x))
    if int(suspicious.sum()) > cap:
        suspicious = torch.zeros_like(suspicious)
        suspicious[torch.argsort(x)[:cap]] = True
    return suspicious


class EntropyTracker:
    """EMA-smoothed entropy scores and the current split; its state is two tensors and a counter,
    saved in checkpoints."""

    def __init__(self, weight_new: float = 0.75, split: str = "gmm", max_fraction: float = 0.5,
                 threshold_step: float = 0.4, threshold_floor: float = 0.2, posterior: float = 0.5):
        self.weight_new, self.split, self.max_fraction, self.posterior = weight_new, split, max_fraction, posterior
        self.threshold_step, self.threshold_floor = threshold_step, threshold_floor
        self.ema: torch.Tensor | None = None
        self.suspicious: torch.Tensor | None = None
        self.rounds = 0

    def update(self, entropy: torch.Tensor) -> torch.Tensor:
        """Fold in a new scoring and re-split; returns the suspicious mask."""
        self.ema = ema_update(self.ema, entropy, self.weight_new)
        self.rounds += 1
        if self.split == "reference":
            thr = reference_threshold(self.rounds, self.threshold_step, self.threshold_floor)
            self.suspicious = split_reference(minmax(self.ema), thr)
        else:
            self.suspicious = split_gmm(self.ema, self.max_fraction, self.posterior)
        return self.suspicious

    @property
    def normalized(self) -> torch.Tensor:
        return minmax(self.ema)

    def state_dict(self) -> dict:
        return {"ema": self.ema, "suspicious": self.suspicious, "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.suspicious, self.rounds = state["ema"], state["suspicious"], int(state["rounds"])
