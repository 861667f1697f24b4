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
are suspicious. By default (`target_inference="votes"`) the label whose own log-entropies split
into two modes more clearly than every other label's by `target_margin` (poisoned and clean samples
of the target; a clean class the victim is sure of is low as a whole, one mode) is the target at
once if the victim's set over-represents it. Without such a lead, the scoring votes for the label
most over-represented in the victim's set, and the target is the label holding a strict majority
of all the votes, or no label (the split falls back to every label) while none does.
`"separation"` takes, at each scoring, the label that leads by `target_margin`, with no memory,
and no label when none does.
`confidence()` says how clearly the split's samples separate, without the ground truth.
docs/method.md and docs/detection.md give the measurements.
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


def lowest_per_label(scores: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     max_fraction: float) -> torch.Tensor:
    """`mask`, keeping of each label at most its `max_fraction` lowest-scored samples (of all that
    label's samples), so that no label leaves the labelled set whole."""
    count = torch.bincount(labels, minlength=num_classes)
    cap = (max_fraction * count).long()
    by_score = torch.argsort(torch.where(mask, scores, torch.full_like(scores, math.inf)))
    order = by_score[torch.argsort(labels[by_score], stable=True)]  # by label, then by score
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - (torch.cumsum(count, 0) - count)[labels[order]]
    return mask & (rank < cap[labels])


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


CLEAR_SEPARATION = 2.0  # Ashman's D above which two Gaussian modes are clearly apart
MIN_VOTE_SHARE = 0.5  # the votes name a target only when it holds more than this share of them
MIN_TARGET_SHARE = 0.5  # a named target holding less of the victim's set: the victim did not single it out
MIN_LABEL_SAMPLES = 8  # fewer samples of a label: no mixture is fitted, its separation is 0
MIN_MODE_WEIGHT = 0.05  # a mode holding less than this share is a few outliers, not a mode


def fit_gmm_1d_groups(x: torch.Tensor, groups: torch.Tensor, num_groups: int, iters: int = 100, tol: float = 1e-6):
    """`fit_gmm_1d` for every group of `x` at once (`groups`: each sample's group in
    0..num_groups-1; every group needs samples), the same initialisation at each group's 10 % and
    90 % quantiles. Returns (weights, means, variances), each num_groups × 2, sorted by mean."""
    x = x.double()
    count = torch.bincount(groups, minlength=num_groups).double()
    by_value = torch.argsort(x)
    ordered = x[by_value][torch.argsort(groups[by_value], stable=True)]  # sorted by group, then value
    start = torch.cumsum(count, 0) - count
    pos = start[:, None] + torch.tensor([0.1, 0.9], dtype=x.dtype, device=x.device) * (count[:, None] - 1)
    lo = pos.floor().long()
    hi = torch.minimum(lo + 1, (start + count - 1).long()[:, None])
    mu = ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])  # linear interpolation, as torch.quantile
    mean = torch.zeros(num_groups, dtype=x.dtype, device=x.device).index_add_(0, groups, x) / count
    sq = torch.zeros_like(mean).index_add_(0, groups, (x - mean[groups]) ** 2)
    spread = (sq / (count - 1).clamp_min(1)).clamp_min(1e-12)
    var, floor = spread[:, None].repeat(1, 2), 1e-6 * spread[:, None]
    w = torch.full((num_groups, 2), 0.5, dtype=x.dtype, device=x.device)
    prev = torch.full((num_groups,), -math.inf, dtype=x.dtype, device=x.device)
    for _ in range(iters):
        log_norm = torch.log(w) - 0.5 * torch.log(2 * math.pi * var)  # per group, then per sample
        logp = log_norm[groups] - 0.5 * (x[:, None] - mu[groups]) ** 2 / var[groups]
        ll = torch.logsumexp(logp, dim=1)
        resp = torch.exp(logp - ll[:, None])
        nk = torch.zeros_like(w).index_add_(0, groups, resp).clamp_min(1e-12)
        w = nk / count[:, None]
        mu = torch.zeros_like(w).index_add_(0, groups, resp * x[:, None]) / nk
        var = torch.maximum(torch.zeros_like(w).index_add_(0, groups, resp * (x[:, None] - mu[groups]) ** 2) / nk, floor)
        cur = torch.zeros_like(prev).index_add_(0, groups, ll) / count
        if bool(((cur - prev).abs() < tol).all()):
            break
        prev = cur
    order = torch.argsort(mu, dim=1)
    return w.gather(1, order), mu.gather(1, order), var.gather(1, order)


def group_separations(x: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Ashman's D of a two-component mixture fitted to each group of `x`: the distance of its
    means in units of their pooled spread, √2·|μ₁ − μ₂| / √(σ₁² + σ₂²); above 2 the modes are
    clearly apart. 0 for a group of under MIN_LABEL_SAMPLES, or whose mode holds under
    MIN_MODE_WEIGHT of it (a near-zero variance on a few outliers makes D huge)."""
    count = torch.bincount(groups, minlength=num_groups)
    out = torch.zeros(num_groups, dtype=torch.float64)
    fit = count >= MIN_LABEL_SAMPLES
    if not bool(fit.any()):
        return out
    keep = fit[groups]
    renumber = torch.cumsum(fit.long(), 0) - 1  # fitted groups as 0..m-1
    w, mu, var = fit_gmm_1d_groups(x[keep], renumber[groups[keep]], int(fit.sum()))
    d = math.sqrt(2) * (mu[:, 1] - mu[:, 0]) / var.sum(1).sqrt()
    out[fit.cpu()] = torch.where(w.min(1).values < MIN_MODE_WEIGHT, torch.zeros_like(d), d).cpu()
    return out


def separation(x: torch.Tensor) -> float:
    """`group_separations` of `x` as one group."""
    return float(group_separations(x, torch.zeros(len(x), dtype=torch.long, device=x.device), 1)[0])


def label_separations(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """`group_separations` of each label's log-scores."""
    return group_separations(torch.log(scores.double().clamp_min(1e-30)), labels, num_classes)


def separated_target(separations: torch.Tensor, margin: float) -> int:
    """The label whose separation exceeds every other's by at least `margin`, or -1 (abstain)."""
    if len(separations) < 2:
        return -1
    top = torch.topk(separations, 2)
    return int(top.indices[0]) if float(top.values[0] - top.values[1]) >= margin else -1


def over_representation(flagged: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per label, its count among `flagged` samples minus the count its share of all samples
    predicts (robust to imbalanced classes and to the target class's share, which the poisoned
    samples inflate)."""
    share = torch.bincount(labels, minlength=num_classes).double() / len(labels)
    return torch.bincount(labels[flagged], minlength=num_classes).double() - flagged.sum() * share


class EntropyTracker:
    """EMA-smoothed entropy scores and the current split, saved in checkpoints: `suspicious` (the
    beneficiary leaves these out of its labelled set) and `victim_set` (the victim trains on these).
    They differ for the hybrid split with `excludes="either"`, and given `target_labels`: then
    `suspicious` holds only samples of the label `target` when one is inferred (`target_rule`,
    module docstring), and samples of any label when `target` is -1, at most the
    `max_label_fraction` lowest-scored of each label's (an easy clean class is low as a whole).
    The victim's set is not restricted to the target: a victim trained on target-labelled images
    alone grows sure of the clean target class too. `target_labels=None` lets any label be
    suspicious (the reference)."""

    def __init__(self, weight_new: float = 0.75, split: str = "hybrid", max_fraction: float = 0.5,
                 threshold_step: float = 0.4, threshold_floor: float = 0.2, excludes: str = "either",
                 target_labels: torch.Tensor | None = None, target_rule: str = "votes",
                 target_margin: float = 3.0, max_label_fraction: float = 1.0):
        self.weight_new, self.split, self.max_fraction = weight_new, split, max_fraction
        self.max_label_fraction = max_label_fraction
        self.threshold_step, self.threshold_floor, self.excludes = threshold_step, threshold_floor, excludes
        self.target_labels, self.target_rule, self.target_margin = target_labels, target_rule, target_margin
        self.target = -1  # the inferred target label (-1: none, every label is suspicious)
        k = 0 if target_labels is None else int(target_labels.max()) + 1
        self.votes = torch.zeros(k, dtype=torch.long)  # per label, the scorings that voted for it ("votes")
        self.separations = torch.zeros(k, dtype=torch.float64)  # per label, at the last scoring
        self.overall_separation = 0.0  # of every sample's log-score, at the last scoring
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
                   labels if vab_cfg.suspect_labels == "target" else None, vab_cfg.target_inference,
                   vab_cfg.target_margin, vab_cfg.max_label_fraction)

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
        self.overall_separation = separation(torch.log(self.ema.double().clamp_min(1e-30)))
        if self.target_labels is not None:
            self.separations = label_separations(self.ema, self.target_labels, len(self.votes))
            if self.target_rule == "votes":
                self._vote(self.victim_set)
            else:
                self.target = separated_target(self.separations, self.target_margin)
            if self.target >= 0:
                flagged = flagged & (self.target_labels == self.target)
            elif self.max_label_fraction < 1:
                flagged = lowest_per_label(self.ema, flagged, self.target_labels, len(self.votes),
                                           self.max_label_fraction)
        self.suspicious = flagged if one_set else lowest(self.ema, flagged, self.max_fraction)
        return self.suspicious

    def _vote(self, victim_set: torch.Tensor) -> None:
        """Count this scoring's vote and name the target. A label leading in separation that the
        victim's set over-represents too (a clean label can lead on a weak victim) gets the vote
        and is the target at once, whatever the earlier votes said: early scorings of a victim that
        has not yet learned the trigger vote for a clean class it is sure of, and their majority
        would outlast the victim's later, clear answer (Fashion-MNIST Blended, docs/detection.md).
        Otherwise the vote goes to the label most over-represented in the victim's set (none from an
        empty set), which is a clean class the victim is sure of as often as the target
        (Fashion-MNIST's trousers), and the target is the label with more than MIN_VOTE_SHARE of
        the votes, or -1."""
        excess = over_representation(victim_set, self.target_labels, len(self.votes))
        lead = separated_target(self.separations, self.target_margin)
        if lead >= 0 and excess[lead] > 0:
            self.votes[lead] += 1
            self.target = lead
            return
        if victim_set.any():
            self.votes[int(torch.argmax(excess))] += 1
        most = int(torch.argmax(self.votes))
        self.target = most if float(self.votes[most]) > MIN_VOTE_SHARE * float(self.votes.sum()) else -1

    def confidence(self) -> dict:
        """How sure the last split is, from the scores alone (no ground truth): the separation
        (Ashman's D) of the samples the suspicious set is drawn from (the target label's, or every
        sample's when there is no target), the best label's lead over the runner-up
        (`target_margin`), with the votes the most-voted label's share of them (`vote_share`), the
        named target's share of the victim's set (`target_share`) and whether it leads in separation
        (`target_leads`), and `low_confidence` with its `low_reasons`: "modes" when that separation
        is below CLEAR_SEPARATION, "no_target" when the labels were given and no target was named
        (the split fell back to every label), "scattered" when the target neither leads in
        separation nor holds MIN_TARGET_SHARE of the victim's set (the victim trains mostly on
        other labels and has not singled the target out, as on an all-to-all attack;
        docs/detection.md)."""
        out = {"separation": round(self.overall_separation, 3)}
        if len(self.separations) >= 2:
            top = torch.topk(self.separations, 2).values
            out["target_margin"] = round(float(top[0] - top[1]), 3)
        base = float(self.separations[self.target]) if self.target >= 0 else self.overall_separation
        out["split_separation"] = round(base, 3)
        if self.target_rule == "votes" and int(self.votes.sum()) > 0:
            out["vote_share"] = round(float(self.votes.max()) / float(self.votes.sum()), 3)
        reasons = ["modes"] if base < CLEAR_SEPARATION else []
        if self.target_labels is not None and self.target < 0:
            reasons.append("no_target")
        if self.target >= 0 and self.victim_set is not None and bool(self.victim_set.any()):
            share = float((self.target_labels[self.victim_set] == self.target).double().mean())
            leads = separated_target(self.separations, self.target_margin) == self.target
            out["target_share"], out["target_leads"] = round(share, 3), leads
            if share < MIN_TARGET_SHARE and not leads:
                reasons.append("scattered")
        out["low_confidence"], out["low_reasons"] = bool(reasons), reasons
        return out

    @property
    def normalized(self) -> torch.Tensor:
        return minmax(self.ema)

    def state_dict(self) -> dict:
        return {"ema": self.ema, "suspicious": self.suspicious, "victim_set": self.victim_set,
                "scorings": self.scorings, "target": self.target, "votes": self.votes,
                "separations": self.separations, "overall_separation": self.overall_separation}

    def load_state_dict(self, state: dict) -> None:
        self.ema, self.suspicious, self.victim_set = state["ema"], state["suspicious"], state["victim_set"]
        self.scorings, self.target, self.votes = int(state["scorings"]), int(state["target"]), state["votes"]
        self.separations, self.overall_separation = state["separations"], float(state["overall_separation"])
