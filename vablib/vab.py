"""The V&B defense end to end: victim, entropy detection, beneficiary with AttentionMix,
semi-supervised suppression, periodic re-selection.

`VabTrainer` holds the whole state (two networks, their optimizers, the beneficiary's schedule,
the entropy tracker and the split) and advances it phase by phase:

    warmup    the victim trains on the whole poisoned set, then scores every sample (round 1)
    rounds    the victim trains on its set (suspicious samples); re-score and re-split (rounds 2..)
    mix       beneficiary epochs 1..E/2: AttentionMix on credible samples
    suppress  beneficiary epochs E/2+1..E: labelled credible + unlabelled suspicious, with the
              victim's soft predictions subtracted from the targets

Phase boundaries, lr milestones and the λ switch are fractions of the total number of epochs, so
the paper's 200-epoch schedule and a short CPU schedule are the same code. The victim's budget is
counted in samples seen (the paper's CIFAR-10 epoch is 50,000 images, 391 steps), not in epochs,
so a small dataset does not leave the victim with a handful of optimizer steps.

Every random draw comes from a generator seeded by (seed, purpose, epoch or round), so a run
resumed from a checkpoint continues exactly as an uninterrupted one would (on CPU).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import runio
from .attentionmix import attention_mix
from .batches import BatchIterator, Normalizer, random_crop_flip, to_device_uint8
from .config import (VAB_PROFILES, TrainConfig, as_params, check_bool, check_choice, check_float, check_fractions,
                     check_int, profile_values)
from .detection import EXCLUDES, SPLITS, SUSPECT_LABELS, EntropyTracker, score_entropy
from .errors import CheckpointError
from .metrics import backdoor_metrics, detection_metrics, eval_tensors
from .models import build_model, check_model_name
from .suppression import labelled_targets, pseudo_targets, victim_soft_predictions
from .training import adam, autocast, check_finite, sgd_with_schedule, soft_cross_entropy
from .utils import progress as progress_bar, reuse_freed_memory

PHASES = ("warmup", "rounds", "mix", "suppress")
# VabConfig fields that only the suppression phase reads: runs that differ only in these are the
# same run up to the end of AttentionMix (benchmarks/vab_suppression.py starts from there)
SUPPRESSION_FIELDS = frozenset({"temperature", "lambda_u", "lambda_u_late", "lambda_switch", "suppress_labelled",
                                "pseudo_confidence"})


@dataclass(frozen=True)
class VabConfig:
    """V&B settings; defaults are the reference code's CIFAR-10 settings except the victim's
    warm-up, counted in samples; `split`: "hybrid" trains the victim on the samples both the
    reference's fixed thresholds and the log-entropy valley flag, and keeps every sample either
    rule flags out of the beneficiary's labelled set ("reference" and "gmm" use one rule each; see
    `vablib.detection`); `suspect_labels`; and two suppression settings: credible samples keep
    one-hot targets (a victim trained on target-labelled images is sure of whole clean classes, and
    subtracting its prediction strips their labels) and unlabelled samples count only where the
    beneficiary's pseudo-label is confident (`pseudo_confidence`; see the README for the measurements)."""

    victim_model: str = ""  # "" = the beneficiary's architecture
    victim_width: float = 0.0  # 0 = the beneficiary's width
    victim_lr: float = 1e-3
    victim_weight_decay: float = 5e-4
    victim_batch_size: int = 128
    victim_folds: int = 1  # 1 = the reference's single victim; 2 = cross-fitted victims (see VabTrainer)
    victim_warmup_samples: int = 50_000  # warm-up budget in samples seen (the paper's CIFAR-10 epoch); 0 = one epoch
    victim_round_epochs: float = 1.0  # passes over the suspicious set per victim round (reference: 1)
    warmup_rounds: int = 2
    ema_weight: float = 0.75
    split: str = "hybrid"
    beneficiary_excludes: str = "either"  # hybrid split: the beneficiary leaves out what "either" rule or "both" flag
    suspect_labels: str = "target"  # "target": the beneficiary leaves out only the inferred target label; "any": reference
    keep_flagged_fraction: float = 1.0  # < 1: flagged in more than this fraction of scorings so far: stays suspicious
    max_suspicious_fraction: float = 0.5
    threshold_step: float = 0.4
    threshold_floor: float = 0.2
    mix_fraction: float = 0.5  # beneficiary epochs spent on AttentionMix before suppression
    reselect_every: float = 0.025  # re-selection interval during AttentionMix, as a fraction of epochs (5/200)
    attention_threshold: float = 0.1
    temperature: float = 3.0
    lambda_u: float = 0.1
    lambda_u_late: float = 0.5
    lambda_switch: float = 0.75  # λ changes at this fraction of epochs (150/200)
    suppress_labelled: bool = False  # True: subtract the victim's prediction from credible targets too (reference)
    pseudo_confidence: float = 0.95  # unlabelled samples count only where the beneficiary is this sure (0 = all: reference)
    beneficiary_lr: float = 0.0  # the beneficiary's SGD learning rate; 0 = the TrainConfig's (shared with the baselines)
    beneficiary_milestones: tuple = ()  # the beneficiary's lr ×0.1 points, fractions of epochs; () = the TrainConfig's
    checkpoint_every: int = 5

    def __post_init__(self):
        if self.victim_model:
            check_model_name(self.victim_model)
        check_float("victim_width", self.victim_width, 0, 8)
        check_float("victim_lr", self.victim_lr, 0, 1, low_open=True)
        check_float("victim_weight_decay", self.victim_weight_decay, 0, 1)
        check_int("victim_batch_size", self.victim_batch_size, 1, 65_536)
        check_int("victim_folds", self.victim_folds, 1, 2)
        check_int("victim_warmup_samples", self.victim_warmup_samples, 0)
        check_float("victim_round_epochs", self.victim_round_epochs, 0, 1000, low_open=True)
        check_int("warmup_rounds", self.warmup_rounds, 1, 100)
        check_float("ema_weight", self.ema_weight, 0, 1, low_open=True)
        check_choice("split", self.split, SPLITS)
        check_choice("beneficiary_excludes", self.beneficiary_excludes, EXCLUDES)
        check_choice("suspect_labels", self.suspect_labels, SUSPECT_LABELS)
        check_float("keep_flagged_fraction", self.keep_flagged_fraction, 0, 1, low_open=True)
        check_float("max_suspicious_fraction", self.max_suspicious_fraction, 0, 1, low_open=True)
        check_float("threshold_step", self.threshold_step, 0, 1)
        check_float("threshold_floor", self.threshold_floor, 0, 1)
        check_float("mix_fraction", self.mix_fraction, 0, 1)
        check_float("reselect_every", self.reselect_every, 0, 1, low_open=True)
        check_float("attention_threshold", self.attention_threshold, 0, 1)
        check_float("temperature", self.temperature, 0, 1000, low_open=True)
        check_float("lambda_u", self.lambda_u, 0, 100)
        check_float("lambda_u_late", self.lambda_u_late, 0, 100)
        check_float("lambda_switch", self.lambda_switch, 0, 1)
        check_bool("suppress_labelled", self.suppress_labelled)
        check_float("pseudo_confidence", self.pseudo_confidence, 0, 1)
        check_float("beneficiary_lr", self.beneficiary_lr, 0, 10)
        object.__setattr__(self, "beneficiary_milestones", check_fractions("beneficiary_milestones",
                                                                           self.beneficiary_milestones))
        check_int("checkpoint_every", self.checkpoint_every, 1)

    @classmethod
    def from_profile(cls, profile: str = "auto", device: torch.device | None = None, **overrides) -> "VabConfig":
        """The settings that go with a training budget (`config.VAB_PROFILES`) with `overrides`
        (None values are ignored) applied on top."""
        return cls(**profile_values(VAB_PROFILES, profile, device, overrides))


def _generator(seed: int, purpose: str, index: int) -> torch.Generator:
    """An independent, reproducible stream per (seed, purpose, epoch/round)."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def config_key(*parts) -> str:
    text = json.dumps([p if isinstance(p, (str, int, float, dict, list)) else as_params(p) for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class VabTrainer:
    """Runs V&B on a `vablib.attacks.PoisonedData`, writing metrics and checkpoints to a run folder.

    The ground-truth poison mask is used only to *report* detection quality, never for training.
    """

    def __init__(self, data, train_cfg: TrainConfig, vab_cfg: VabConfig, device: torch.device, seed: int,
                 run: runio.RunDir | None = None, progress: bool = True, channels_last: bool | None = None):
        self.data, self.cfg, self.vcfg = data, train_cfg, vab_cfg
        self.device, self.seed, self.run, self.progress = torch.device(device), int(seed), run, progress
        self.amp = train_cfg.amp
        reuse_freed_memory(self.device)
        cl = self.device.type == "cuda" if channels_last is None else channels_last
        k = data.num_classes
        channels = data.x_train.shape[3]
        self.num_classes = k
        self.normalize = Normalizer.for_dataset(data.dataset_name, channels, self.device, channels_last=cl)
        # the whole training set lives on the device as uint8
        self.x = to_device_uint8(data.x_train, self.device)
        self.y = torch.as_tensor(data.y_train, device=self.device)
        self.poisoned = torch.as_tensor(data.poison_mask, device=self.device)
        self.eval_tensors = eval_tensors(data, self.device)
        torch.manual_seed(self.seed)
        mem = torch.channels_last if cl else torch.contiguous_format
        self.beneficiary = build_model(train_cfg.model, k, channels, train_cfg.width).to(self.device, memory_format=mem)
        self.victims = [build_model(vab_cfg.victim_model or train_cfg.model, k, channels,
                                    vab_cfg.victim_width or train_cfg.width).to(self.device, memory_format=mem)
                        for _ in range(vab_cfg.victim_folds)]
        ben_cfg = dataclasses.replace(train_cfg, lr=vab_cfg.beneficiary_lr or train_cfg.lr,
                                      lr_milestones=vab_cfg.beneficiary_milestones or train_cfg.lr_milestones)
        self.ben_opt, self.ben_sched = sgd_with_schedule(self.beneficiary, ben_cfg)
        self.vic_opts = [adam(v, vab_cfg.victim_lr, vab_cfg.victim_weight_decay) for v in self.victims]
        # cross-fitting: victim f trains only on fold f and scores only the other fold, so a sample's
        # score never comes from a victim that memorised it (only the trigger generalises)
        folds = vab_cfg.victim_folds
        self.fold = (torch.randperm(len(self.x), generator=_generator(self.seed, "folds", 0)) % folds).to(self.device)
        self.tracker = EntropyTracker(vab_cfg.ema_weight, vab_cfg.split, vab_cfg.max_suspicious_fraction,
                                      vab_cfg.threshold_step, vab_cfg.threshold_floor, vab_cfg.beneficiary_excludes,
                                      self.y if vab_cfg.suspect_labels == "target" else None,
                                      vab_cfg.keep_flagged_fraction)
        self.epoch = 0  # beneficiary epochs completed
        self.phases_done: list[str] = []
        self.victim_rounds = 0  # victim training passes completed
        self.rounds: list[dict] = []  # detection quality after each scoring
        self.timings: dict[str, float] = {p: 0.0 for p in PHASES}
        self.key = config_key(train_cfg, vab_cfg, data.manifest.get("fingerprint", ""), data.manifest.get("attack", ""),
                              self.seed)

    # ------------------------------------------------------------------ schedule

    @property
    def mix_epochs(self) -> int:
        return int(round(self.vcfg.mix_fraction * self.cfg.epochs))

    @property
    def reselect_interval(self) -> int:
        return max(1, int(round(self.vcfg.reselect_every * self.cfg.epochs)))

    def lambda_u(self, epoch: int) -> float:
        return self.vcfg.lambda_u if epoch <= self.vcfg.lambda_switch * self.cfg.epochs else self.vcfg.lambda_u_late

    def phase_of(self, epoch: int) -> str:
        return "mix" if epoch <= self.mix_epochs else "suppress"

    def reselects_before(self, epoch: int) -> bool:
        """Re-selection happens before beneficiary epoch `epoch`: every `reselect_interval` epochs
        during AttentionMix (5 of 200 in the reference), every epoch during suppression."""
        if epoch == 1:
            return False
        if self.phase_of(epoch) == "suppress":
            return True
        return (epoch - 1) % self.reselect_interval == 0

    # ------------------------------------------------------------------ victim

    @property
    def suspicious(self) -> torch.Tensor:
        """The samples the beneficiary leaves out of its labelled set (the split that is reported)."""
        return self.tracker.suspicious

    def train_victim_on_its_set(self) -> dict:
        return self.train_victim(torch.nonzero(self.tracker.victim_set).flatten())

    def victim_steps(self, n_samples: int, warmup: bool = False) -> int:
        """Optimizer steps of a victim pass: the warm-up sees `victim_warmup_samples` samples
        whatever the dataset size (391 steps of 128, like one epoch of CIFAR-10); a round makes
        `victim_round_epochs` passes over the suspicious set."""
        if warmup and self.vcfg.victim_warmup_samples:
            samples = self.vcfg.victim_warmup_samples
        else:
            samples = n_samples * (1.0 if warmup else self.vcfg.victim_round_epochs)
        return max(1, math.ceil(samples / self.vcfg.victim_batch_size))

    def train_victim(self, indices: torch.Tensor, warmup: bool = False) -> dict:
        """Train the victim(s) on `indices` (no augmentation, Adam) for `victim_steps` steps; with
        cross-fitting each victim takes the indices of its own fold and its share of the budget."""
        folds = len(self.victims)
        total_steps, loss_total = 0, 0.0
        for f, (victim, opt) in enumerate(zip(self.victims, self.vic_opts)):
            idx = indices[self.fold[indices] == f] if folds > 1 else indices
            if len(idx) == 0:
                continue
            steps = self.victim_steps(len(idx) * (folds if warmup else 1), warmup)
            steps = max(1, steps // folds) if warmup else steps
            purpose = f"victim{f}" if folds > 1 else "victim"
            gen_seed = int(torch.randint(0, 2**62, (1,), generator=_generator(self.seed, purpose, self.victim_rounds)))
            it = BatchIterator(self.x, self.y, self.normalize, batch_size=min(self.vcfg.victim_batch_size, len(idx)),
                               shuffle=True, augment=False, seed=gen_seed, indices=idx.cpu())
            victim.train()
            loss_sum = torch.zeros((), device=self.device)
            done = 0
            while done < steps:
                for x, y, _ in it:
                    with autocast(self.device, self.amp):
                        logits = victim(x)
                    loss = F.cross_entropy(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    loss_sum += loss.detach()
                    done += 1
                    if done >= steps:
                        break
            total_steps += steps
            loss_total += check_finite(loss_sum, "victim training")
        self.victim_rounds += 1
        return {"victim_steps": total_steps, "victim_loss": loss_total / total_steps if total_steps else float("nan")}

    @torch.no_grad()
    def victim_logits(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The victims' logits for normalised images `x` of training samples `indices`: each sample
        is scored by the victim that did not train on its fold (the only victim when folds = 1)."""
        folds = len(self.victims)
        if folds == 1:
            with autocast(self.device, self.amp):
                return self.victims[0](x).float()
        out = torch.empty(len(x), self.num_classes, device=self.device)
        for f in range(folds):
            sel = self.fold[indices] == f
            with autocast(self.device, self.amp):
                out[sel] = self.victims[(f + 1) % folds](x[sel]).float()
        return out

    @torch.no_grad()
    def _victim_probs(self, raw: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The victims' temperature-softened predictions for raw images of training samples `indices`."""
        return victim_soft_predictions(self.victim_logits(self.normalize(raw), indices), self.vcfg.temperature)

    def victim_entropy(self) -> torch.Tensor:
        """Entropy of every training sample under the victim(s), eval mode, no augmentation."""
        if len(self.victims) == 1:
            return score_entropy(self.victims[0], self.x, self.normalize)
        entropy = torch.empty(len(self.x), device=self.device)
        for f in range(len(self.victims)):
            sel = self.fold == f
            entropy[sel] = score_entropy(self.victims[(f + 1) % len(self.victims)], self.x[sel], self.normalize)
        return entropy

    def score_and_split(self) -> dict:
        """Score every training sample with the victim, update the EMA and the split; returns the
        split's quality against the ground truth (for reporting only)."""
        entropy = self.victim_entropy()
        self.last_entropy = entropy
        self.tracker.update(entropy)
        quality = self.split_quality()
        quality["round"] = self.tracker.rounds
        self.rounds.append(quality)
        return quality

    def split_quality(self) -> dict:
        """The beneficiary's split against the ground truth (reporting only) and the victim's set size."""
        quality = detection_metrics(self.suspicious, self.poisoned, suspicion=-self.tracker.ema)
        quality["n_victim_set"] = int(self.tracker.victim_set.sum())
        quality["inferred_target"] = self.tracker.target
        return quality

    def reselect(self) -> dict:
        """Periodic re-selection: one more victim epoch on its set, then re-score."""
        info = self.train_victim_on_its_set()
        quality = self.score_and_split()
        quality.update({f"before_{k}": v for k, v in info.items()})
        return quality

    # ------------------------------------------------------------------ beneficiary

    def _views(self, raw: torch.Tensor, gen: torch.Generator, n: int = 2) -> list[torch.Tensor]:
        views = [self.normalize(random_crop_flip(raw, gen)) for _ in range(n)] if self.cfg.augment else \
            [self.normalize(raw)] * n
        return views

    @torch.no_grad()
    def _features_eval(self, x: torch.Tensor) -> torch.Tensor:
        self.beneficiary.eval()
        with autocast(self.device, self.amp):
            feats = self.beneficiary.features(x)
        self.beneficiary.train()
        return feats

    def _permutation(self, batch: int, views: int, gen: torch.Generator) -> torch.Tensor:
        """A random partner for every image, drawn within its own view."""
        return torch.cat([v * batch + torch.randperm(batch, generator=gen) for v in range(views)]).to(self.device)

    def _step(self, loss: torch.Tensor) -> None:
        self.ben_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.ben_opt.step()

    def mix_epoch(self, epoch: int) -> dict:
        """AttentionMix on the credible set: two augmented views per image; one no-grad pass for
        the feature maps of both views, one training pass on the mixed batch."""
        gen = _generator(self.seed, "beneficiary", epoch)
        credible = torch.nonzero(~self.suspicious).flatten().cpu()
        it = BatchIterator(self.x, self.y, self.normalize, self.cfg.batch_size, shuffle=True, augment=False,
                           seed=int(torch.randint(0, 2**62, (1,), generator=gen)), indices=credible)
        self.beneficiary.train()
        loss_sum, steps = torch.zeros((), device=self.device), 0
        for raw, y, _ in progress_bar(it.raw(), self.progress, total=len(it), desc=f"mix {epoch}"):
            b = len(y)
            x = torch.cat(self._views(raw, gen))
            targets = F.one_hot(y, self.num_classes).float().repeat(2, 1)
            mixed, mixed_t, _ = attention_mix(x, targets, self._features_eval(x), self._permutation(b, 2, gen),
                                              self.vcfg.attention_threshold)
            with autocast(self.device, self.amp):
                logits = self.beneficiary(mixed)
            loss = soft_cross_entropy(logits, mixed_t)
            self._step(loss)
            loss_sum += loss.detach()
            steps += 1
        return {"loss": check_finite(loss_sum, f"AttentionMix epoch {epoch}") / max(steps, 1)}

    def suppress_epoch(self, epoch: int) -> dict:
        """Semi-supervised suppression: credible batch labelled, suspicious batch unlabelled, with
        targets minus the victim's temperature-softened prediction (the labelled ones only with
        `suppress_labelled`). Per step: one no-grad victim pass over the plain batches whose targets
        use it, one no-grad beneficiary pass for the attention maps of the labelled views, one
        training pass over the mixed and the unlabelled views."""
        gen = _generator(self.seed, "beneficiary", epoch)
        credible = torch.nonzero(~self.suspicious).flatten().cpu()
        suspicious = torch.nonzero(self.suspicious).flatten().cpu()
        seeds = torch.randint(0, 2**62, (2,), generator=gen).tolist()
        lab = BatchIterator(self.x, self.y, self.normalize, self.cfg.batch_size, shuffle=True, seed=seeds[0],
                            indices=credible)
        unl = BatchIterator(self.x, self.y, self.normalize, self.cfg.batch_size, shuffle=True, seed=seeds[1],
                            indices=suspicious) if len(suspicious) else None
        unl_batches = iter(())
        lam = self.lambda_u(epoch)
        self.beneficiary.train()
        for v in self.victims:
            v.eval()
        loss_sum, steps = torch.zeros((), device=self.device), 0
        for raw_l, y_l, idx_l in progress_bar(lab.raw(), self.progress, total=len(lab), desc=f"suppress {epoch}"):
            b = len(y_l)
            raw_u = idx_u = None
            if unl is not None:
                batch_u = next(unl_batches, None)
                if batch_u is None:  # cycle the (smaller) suspicious set
                    unl_batches = unl.raw()
                    batch_u = next(unl_batches)
                raw_u, idx_u = batch_u[0][:b], batch_u[2][:b]
            bu = 0 if raw_u is None else len(raw_u)
            views_l = self._views(raw_l, gen)
            views_u = self._views(raw_u, gen) if bu else []
            with torch.no_grad():
                # the victim scores only samples whose targets subtract its prediction
                q_u = self._victim_probs(raw_u, idx_u) if bu else None
                feats = self._features_eval(torch.cat(views_l))  # attention maps of the labelled views
            t_l = labelled_targets(y_l, self._victim_probs(raw_l, idx_l)) if self.vcfg.suppress_labelled else \
                F.one_hot(y_l, self.num_classes).float()
            mixed, mixed_t, _ = attention_mix(torch.cat(views_l), t_l.repeat(2, 1), feats,
                                              self._permutation(b, 2, gen), self.vcfg.attention_threshold)
            inputs = torch.cat([mixed] + views_u)
            with autocast(self.device, self.amp):
                logits = self.beneficiary(inputs)
            loss = soft_cross_entropy(logits[:2 * b], mixed_t)
            if bu:
                # pseudo-labels from this very pass (train mode, like the reference's separate
                # no-grad pass over the same views with the same weights, which it would repeat)
                probs_u = torch.softmax(logits[2 * b:].detach().float(), 1)
                t_u = pseudo_targets(probs_u[:bu], probs_u[bu:], q_u, self.vcfg.pseudo_confidence).repeat(2, 1)
                loss = loss + lam * soft_cross_entropy(logits[2 * b:], t_u)
            self._step(loss)
            loss_sum += loss.detach()
            steps += 1
        for v in self.victims:
            v.train()
        return {"loss": check_finite(loss_sum, f"suppression epoch {epoch}") / max(steps, 1), "lambda_u": lam}

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict:
        out = backdoor_metrics(self.beneficiary, self.normalize, **self.eval_tensors)
        out.update(self.split_quality())
        return out

    # ------------------------------------------------------------------ driving the phases

    def run_phase(self, phase: str, on_epoch=None) -> list[dict]:
        """Advance to the end of `phase` (earlier phases first); phases already done are skipped.
        Returns the epoch records written during this call."""
        check_choice("phase", phase, PHASES)
        records = []
        for p in PHASES[: PHASES.index(phase) + 1]:
            if p in self.phases_done:
                continue
            if p in ("warmup", "rounds"):
                t0 = time.time()
                if p == "warmup":
                    victim_info = self.train_victim(torch.arange(len(self.x), device=self.device), warmup=True)
                    self.score_and_split().update({f"warmup_{k}": v for k, v in victim_info.items()})
                else:
                    for r in range(1, self.vcfg.warmup_rounds + 1):
                        if r > 1:
                            self.score_and_split()
                        self.rounds[-1].update(self.train_victim_on_its_set())
                self.timings[p] += time.time() - t0
            else:
                last = self.mix_epochs if p == "mix" else self.cfg.epochs
                while self.epoch < last:
                    rec = self._beneficiary_epoch(p)
                    records.append(rec)
                    if on_epoch is not None:
                        on_epoch(rec)
                    if self.epoch % self.vcfg.checkpoint_every == 0 and self.epoch < last:
                        self.save()
            self.phases_done.append(p)
            self.save(boundary=p)
        return records

    def _beneficiary_epoch(self, phase: str) -> dict:
        """Re-select if due, train one epoch, evaluate, append the record to metrics.jsonl."""
        t0 = time.time()
        epoch = self.epoch + 1
        reselected = self.reselects_before(epoch)
        if reselected:
            self.reselect()
        info = self.mix_epoch(epoch) if phase == "mix" else self.suppress_epoch(epoch)
        lr = self.ben_opt.param_groups[0]["lr"]
        self.ben_sched.step()
        self.epoch = epoch
        rec = {"epoch": epoch, "phase": phase, "lr": lr, "reselected": reselected, **info, **self.evaluate(),
               "seconds": time.time() - t0}
        self.timings[phase] += rec["seconds"]
        if self.run is not None:
            runio.append_jsonl(self.run.path / "metrics.jsonl", rec)
        return rec

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {
            "key": self.key,
            "epoch": self.epoch,
            "phases_done": list(self.phases_done),
            "victim_rounds": self.victim_rounds,
            "victims": [v.state_dict() for v in self.victims],
            "beneficiary": self.beneficiary.state_dict(),
            "victim_opts": [o.state_dict() for o in self.vic_opts],
            "ben_opt": self.ben_opt.state_dict(),
            "ben_sched": self.ben_sched.state_dict(),
            "tracker": self.tracker.state_dict(),
            "rounds_json": json.dumps(runio._jsonable(self.rounds)),
            "timings_json": json.dumps(self.timings),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("key") != self.key:
            raise CheckpointError("this checkpoint was written by a run with other data, attack, seed or V&B "
                                  "settings; use a new run_dir or delete the checkpoints folder to start over.")
        self.epoch = int(state["epoch"])
        self.phases_done = list(state["phases_done"])
        self.victim_rounds = int(state["victim_rounds"])
        for v, sd in zip(self.victims, state["victims"]):
            v.load_state_dict(sd)
        self.beneficiary.load_state_dict(state["beneficiary"])
        for o, sd in zip(self.vic_opts, state["victim_opts"]):
            o.load_state_dict(sd)
        self.ben_opt.load_state_dict(state["ben_opt"])
        self.ben_sched.load_state_dict(state["ben_sched"])
        tracker = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in state["tracker"].items()}
        self.tracker.load_state_dict(tracker)
        self.rounds = json.loads(state["rounds_json"])
        self.timings = json.loads(state["timings_json"])

    def save(self, boundary: str | None = None) -> None:
        """Write checkpoints/latest.pt (and after_<phase>.pt at a phase boundary), atomically."""
        if self.run is None:
            return
        state = self.state_dict()
        runio.save_checkpoint(self.run.checkpoints / "latest.pt", state)
        if boundary:
            runio.save_checkpoint(self.run.checkpoints / f"after_{boundary}.pt", state)

    def resume(self) -> bool:
        """Load checkpoints/latest.pt if there is one; drop metric rows written after it (they will
        be recomputed identically). Returns whether a checkpoint was loaded."""
        if self.run is None or not (self.run.checkpoints / "latest.pt").exists():
            return False
        self.load_state_dict(runio.load_checkpoint(self.run.checkpoints / "latest.pt", map_location=self.device))
        path = self.run.path / "metrics.jsonl"
        rows = runio.read_jsonl(path)
        kept = [r for r in rows if r.get("epoch", 0) <= self.epoch]
        if len(kept) != len(rows):
            runio.rewrite_jsonl(path, kept)
        return True

    def history(self) -> list[dict]:
        return runio.read_jsonl(self.run.path / "metrics.jsonl") if self.run is not None else []
