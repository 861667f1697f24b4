"""Entropy-based poisoned-sample detection (V&B phase 2).

A network trained on poisoned data is extremely sure of the target class on poisoned samples, so
their prediction entropy is low. Scores are smoothed across scorings with an EMA, min-max
normalised, and split into *credible* (high entropy) and *suspicious* (low entropy) samples by
one of three rules (`VabConfig.split`):

    reference  the reference's fixed thresholds on the min-max normalised score (0.6, then 0.2)
    gmm        the valley between the two modes of the log-entropy (`split_gmm`)
    hybrid     the victim trains on what both rules flag (a pure set), the beneficiary leaves out
               what either flags (`beneficiary_excludes="either"`)

With the training labels (`suspect_labels="target"`), only samples of the inferred target label
are suspicious: each scoring votes for the label most over-represented in the victim's set and the
target is the most-voted label. docs/method.md gives the measurements behind each rule.
Everything is vectorised on the device; no per-sample Python loop.
"""
from __future__ import annotations

import math

import torch

from .batches import Normalizer
from .training import predict_logits


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


def _joint_logp(x: torch.Tensor, w: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """log(w_k · N(x; mu_k, var_k)) for each sample (rows) and component (columns)."""
    return -0.5 * ((x[:, None] - mu) ** 2 / var + torch.log(2 * math.pi * var)) + torch.log(w)


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
        logp = _joint_logp(x, w, mu, var)
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


def gmm_cut(x: torch.Tensor) -> float:
    """The cut between the two modes of log-scores `x`: a two-component mixture locates the modes
    (its means), and the cut is the lowest point of a kernel density estimate of `x` between them,
    the empty gap between the clusters. The mixture's own posterior-½ boundary is used only where
    the estimate has no valley between the means (one mode): fitted to a tight poisoned core with a
    tail, that boundary falls inside the tail and leaves part of it with the clean samples."""
    w, mu, var = fit_gmm_1d(x)
    grid = torch.linspace(float(mu[0]), float(mu[1]), 257, dtype=x.dtype, device=x.device)
    spread = torch.minimum(x.std(), (torch.quantile(x, 0.75) - torch.quantile(x, 0.25)) / 1.34)
    bandwidth = float((0.9 * spread * len(x) ** -0.2).clamp_min(1e-6))  # Silverman's rule
    sample = x if len(x) <= 20_000 else x[torch.linspace(0, len(x) - 1, 20_000, device=x.device).long()]
    density = torch.zeros_like(grid)
    for chunk in sample.split(4096):  # bounded memory for large training sets
        density += torch.exp(-0.5 * ((grid[:, None] - chunk) / bandwidth) ** 2).sum(1)
    interior = (density[1:-1] <= density[:-2]) & (density[1:-1] <= density[2:])
    if interior.any():
        inner = torch.where(interior, density[1:-1], torch.full_like(density[1:-1], math.inf))
        low = torch.nonzero(inner == inner.min()).flatten()
        return float(grid[1 + int(low[len(low) // 2])])  # the middle of a flat (empty) stretch
    logp = _joint_logp(grid, w, mu, var)
    above = logp[:, 1] >= logp[:, 0]
    return float(grid[int(torch.argmax(above.to(torch.int8)))]) if above.any() else float(grid[-1])


def lowest(scores: torch.Tensor, mask: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """`mask`, or its `max_fraction` lowest-scored samples when it holds more than that."""
    cap = int(max_fraction * len(scores))
    if int(mask.sum()) <= cap:
        return mask
    out = torch.zeros_like(mask)
    out[torch.argsort(torch.where(mask, scores, torch.full_like(scores, math.inf)))[:cap]] = True
    return out


def split_gmm(scores: torch.Tensor, max_fraction: float = 0.5) -> torch.Tensor:
    """Suspicious mask on log(entropy): the samples below `gmm_cut`, the valley between the
    low- and high-entropy modes found by a two-component Gaussian mixture.

    Poisoned samples are the *lowest* mode. When more than `max_fraction` of the samples fall
    below the cut, the mixture has split the clean samples instead (a victim that grows confident
    on some clean classes makes them bimodal), so the fit is repeated on the samples below the cut,
    up to 4 times; if that still exceeds the cap, the lowest `max_fraction` are taken."""
    x = torch.log(scores.double().clamp_min(1e-30))
    cap = int(max_fraction * len(x))
    region = torch.ones_like(x, dtype=torch.bool)
    for _ in range(4):
        suspicious = region & (x <= gmm_cut(x[region]))
        n = int(suspicious.sum())
        if n <= cap or n < 4:  # within the cap, or too few samples to fit again
            return suspicious
        region = suspicious
    return lowest(x, region, max_fraction)


def inferred_target(flagged: torch.Tensor, labels: torch.Tensor) -> int:
    """The label most over-represented among `flagged` samples: its count there minus the count its
    share of all samples predicts (robust to imbalanced classes and to the target class's share,
    which the poisoned samples inflate)."""
    k = int(labels.max()) + 1
    share = torch.bincount(labels, minlength=k).double() / len(labels)
    excess = torch.bincount(labels[flagged], minlength=k).double() - flagged.sum() * share
    return int(torch.argmax(excess))


class EntropyTracker:
    """EMA-smoothed entropy scores and the current split, saved in checkpoints: `suspicious` (the
    beneficiary leaves these out of its labelled set) and `victim_set` (the victim trains on these).
    They differ for the hybrid split with `excludes="either"`, and given `target_labels`: then
    `suspicious` holds only samples of the label `target`, the one most scorings have voted for
    (`votes`; a tie keeps the current target). The victim's set is not restricted to the target:
    a victim trained on target-labelled images alone grows sure of the clean target class too.
    `target_labels=None` lets any label be suspicious (the reference)."""

    def __init__(self, weight_new: float = 0.75, split: str = "hybrid", max_fraction: float = 0.5,
                 threshold_step: float = 0.4, threshold_floor: float = 0.2, excludes: str = "either",
                 target_labels: torch.Tensor | None = None):
        self.weight_new, self.split, self.max_fraction = weight_new, split, max_fraction
        self.threshold_step, self.threshold_floor, self.excludes = threshold_step, threshold_floor, excludes
        self.target_labels = target_labels
        self.target = -1  # the inferred target label (-1: not inferred)
        # per label, the scorings that voted for it
        self.votes = None if target_labels is None else torch.zeros(int(target_labels.max()) + 1, dtype=torch.long)
        self.ema: torch.Tensor | None = None
        self.suspicious: torch.Tensor | None = None
        self.victim_set: torch.Tensor | None = None
        self.scorings = 0

    @classmethod
    def from_config(cls, vab_cfg, labels: torch.Tensor) -> "EntropyTracker":
        """The tracker of a VabConfig; `labels` (the training labels) restrict the suspicious set to
        the inferred target with `suspect_labels="target"`."""
        return cls(vab_cfg.ema_weight, vab_cfg.split, vab_cfg.max_suspicious_fraction, vab_cfg.threshold_step,
                   vab_cfg.threshold_floor, vab_cfg.beneficiary_excludes,
                   labels if vab_cfg.suspect_labels == "target" else None)

    def update(self, entropy: torch.Tensor) -> torch.Tensor:
        """Fold in a new scoring and re-split; returns the suspicious mask."""
        self.ema = ema_update(self.ema, entropy, self.weight_new)
        self.scorings += 1
        masks = []
        if self.split in ("reference", "hybrid"):
            thr = reference_threshold(self.scorings, self.threshold_step, self.threshold_floor)
            masks.append(split_reference(self.normalized, thr))
        if self.split in ("gmm", "hybrid"):
            masks.append(split_gmm(self.ema, self.max_fraction))
        self.victim_set = masks[0] & masks[-1]
        one_set = len(masks) == 1 or self.excludes == "both"
        flagged = self.victim_set if one_set else masks[0] | masks[-1]
        if self.target_labels is not None:
            self._vote(self.victim_set)
            if self.target >= 0:
                flagged = flagged & (self.target_labels == self.target)
        self.suspicious = flagged if one_set else lowest(self.ema, flagged, self.max_fraction)
        return self.suspicious

    def _vote(self, victim_set: torch.Tensor) -> None:
        """Count this scoring's vote (none from an empty set) and move the target to the label with
        the most votes, keeping the current one on a tie."""
        if victim_set.any():
            self.votes[inferred_target(victim_set, self.target_labels)] += 1
        most = int(self.votes.max())
        if most > 0 and (self.target < 0 or int(self.votes[self.target]) < most):
            self.target = int(torch.argmax(self.votes))

    @property
    def normalized(self) -> torch.Tensor:
        return minmax(self.ema)

    def state_dict(self) -> dict:
        return {"ema": self.ema, "suspicious": self.suspicious, "victim_set": self.victim_set,
                "scorings": self.scorings, "target": self.target, "votes": self.votes}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.suspicious, self.victim_set = state["ema"], state["suspicious"], state["victim_set"]
        self.scorings, self.target, self.votes = int(state["scorings"]), int(state["target"]), state["votes"]
