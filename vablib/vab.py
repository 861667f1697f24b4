"""The V&B defense end to end: `VabTrainer` holds the state (beneficiary, victim, entropy tracker,
schedule) and advances it phase by phase (`PHASES`):

    warmup    the victim trains on the whole poisoned set, then scores every sample
    rounds    the victim trains on its set and re-scores (`warmup_rounds` rounds)
    mix       beneficiary epochs 1..E/2: AttentionMix on the credible samples
    suppress  beneficiary epochs E/2+1..E: labelled credible + unlabelled suspicious samples, with
              the victim's soft predictions subtracted from the unlabelled targets

with re-selection (victim training + scoring) between beneficiary epochs (`vablib.schedule`).
Every random draw comes from `vablib.streams`, so a resumed run continues as an uninterrupted one
would (on CPU). The ground-truth poison mask is used only to report detection quality.
"""
from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from . import runio
from .attentionmix import attention_mix
from .batches import BatchIterator, Normalizer, random_crop_flip, to_device_uint8
from .config import TrainConfig, VabConfig, as_params, check_choice, settings_diff
from .detection import EntropyTracker
from .errors import CheckpointError
from .metrics import backdoor_metrics, detection_metrics, eval_tensors
from .models import build_model
from .schedule import Schedule, victim_plan
from .streams import draw_seed, stream
from .suppression import labelled_targets, pseudo_targets
from .training import autocast, check_finite, sgd_with_schedule, soft_cross_entropy
from .utils import progress as progress_bar, reuse_freed_memory
from .victim import Victim

PHASES = ("warmup", "rounds", "mix", "suppress")


class VabTrainer:
    """Runs V&B on a `vablib.attacks.PoisonedData`, writing metrics and checkpoints to a run folder."""

    def __init__(self, data, train_cfg: TrainConfig, vab_cfg: VabConfig, device: torch.device, seed: int,
                 run: runio.RunDir | None = None, progress: bool = True, channels_last: bool | None = None):
        self.data, self.train_cfg, self.vab_cfg = data, train_cfg, vab_cfg
        self.device, self.seed, self.run, self.progress = torch.device(device), int(seed), run, progress
        self.amp = train_cfg.amp
        self.schedule = Schedule(train_cfg.epochs, vab_cfg)
        reuse_freed_memory(self.device)
        cl = self.device.type == "cuda" if channels_last is None else channels_last
        self.num_classes, channels = data.num_classes, data.x_train.shape[3]
        self.normalize = Normalizer.for_dataset(data.dataset_name, channels, self.device, channels_last=cl)
        # the whole training set lives on the device as uint8
        self.x = to_device_uint8(data.x_train, self.device)
        self.y = torch.as_tensor(data.y_train, device=self.device)
        self.poisoned = torch.as_tensor(data.poison_mask, device=self.device)  # reporting only
        self.eval_tensors = eval_tensors(data, self.device)
        torch.manual_seed(self.seed)
        mem = torch.channels_last if cl else torch.contiguous_format
        self.beneficiary = build_model(train_cfg.model, self.num_classes, channels, train_cfg.width).to(
            self.device, memory_format=mem)
        self.victim = Victim.build(train_cfg, vab_cfg, self.num_classes, channels, self.device, mem)
        self.ben_opt, self.ben_sched = sgd_with_schedule(self.beneficiary, vab_cfg.beneficiary_train_config(train_cfg))
        self.tracker = EntropyTracker.from_config(vab_cfg, self.y)
        self.epoch = 0  # beneficiary epochs completed
        self.phases_done: list[str] = []
        self.scorings: list[dict] = []  # the split's quality after each scoring
        self.timings: dict[str, float] = {p: 0.0 for p in PHASES}
        self.settings = {"train": as_params(train_cfg), "vab": as_params(vab_cfg), "seed": self.seed,
                         "data": data.manifest.get("fingerprint", ""), "attack": data.manifest.get("attack", "")}

    @property
    def suspicious(self) -> torch.Tensor:
        """The samples the beneficiary leaves out of its labelled set (the split that is reported)."""
        return self.tracker.suspicious

    # ------------------------------------------------------------------ victim
    def train_victim(self, indices: torch.Tensor, warmup: bool = False) -> dict:
        steps = self.schedule.victim_steps(len(indices), warmup)
        seed = draw_seed(stream(self.seed, "victim", self.victim.trainings))
        return self.victim.train(self.x, self.y, self.normalize, indices, steps, seed)

    def score_and_split(self) -> dict:
        """Score every training sample with the victim, update the EMA and the split; returns the
        split's quality against the ground truth (reporting only)."""
        self.tracker.update(self.victim.entropy(self.x, self.normalize))
        quality = {**self.split_quality(), "scoring": self.tracker.scorings}
        self.scorings.append(quality)
        return quality

    def split_quality(self) -> dict:
        """The beneficiary's split against the ground truth (reporting only) and the victim's set size."""
        quality = detection_metrics(self.suspicious, self.poisoned, suspicion=-self.tracker.ema)
        quality["n_victim_set"] = int(self.tracker.victim_set.sum())
        quality["inferred_target"] = self.tracker.target
        return {**quality, **self.tracker.confidence()}

    def _victim_phase(self, phase: str) -> None:
        """The warm-up or the rounds, in `schedule.victim_plan`'s order. A training's figures go
        into the record of the scoring before it (the warm-up's, prefixed, into the one after)."""
        warmup_info = {}
        for step in victim_plan(phase, self.vab_cfg.warmup_rounds):
            if step == "score":
                self.score_and_split().update(warmup_info)
            elif step == "train_all":
                info = self.train_victim(torch.arange(len(self.x), device=self.device), warmup=True)
                warmup_info = {f"warmup_{k}": v for k, v in info.items()}
            else:
                self.scorings[-1].update(self.train_victim(torch.nonzero(self.tracker.victim_set).flatten()))

    def reselect(self) -> dict:
        """Periodic re-selection: one more victim training on its set, then re-score."""
        info = self.train_victim(torch.nonzero(self.tracker.victim_set).flatten())
        quality = self.score_and_split()
        quality.update({f"before_{k}": v for k, v in info.items()})
        return quality

    # ------------------------------------------------------------------ beneficiary
    def _views(self, raw: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        """Two augmented, normalised views of a raw batch (the same plain view twice without augmentation)."""
        if self.train_cfg.augment:
            return [self.normalize(random_crop_flip(raw, gen)) for _ in range(2)]
        return [self.normalize(raw)] * 2

    @torch.no_grad()
    def attention_features(self, x: torch.Tensor) -> torch.Tensor:
        """The beneficiary's last-stage feature maps of normalised images, in eval mode, no gradient."""
        self.beneficiary.eval()
        with autocast(self.device, self.amp):
            feats = self.beneficiary.features(x)
        self.beneficiary.train()
        return feats

    def mixed_batch(self, views: list[torch.Tensor], targets: torch.Tensor, gen: torch.Generator):
        """The labelled AttentionMix step both beneficiary phases share: both views of a batch with
        their (b × K) targets, each image mixed with a random partner drawn within its own view.
        Returns (mixed images, mixed targets)."""
        b = len(targets)
        x = torch.cat(views)
        partners = torch.cat([v * b + torch.randperm(b, generator=gen) for v in range(len(views))]).to(self.device)
        mixed, mixed_t, _ = attention_mix(x, targets.repeat(len(views), 1), self.attention_features(x), partners,
                                          self.vab_cfg.attention_threshold)
        return mixed, mixed_t

    def _step(self, loss: torch.Tensor) -> torch.Tensor:
        self.ben_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.ben_opt.step()
        return loss.detach()

    def _batches(self, indices: torch.Tensor, seed: int) -> BatchIterator:
        return BatchIterator(self.x, self.y, self.normalize, self.train_cfg.batch_size, shuffle=True, seed=seed,
                             indices=indices)

    def mix_epoch(self, epoch: int) -> dict:
        """AttentionMix on the credible set: two views of each image, mixed, one training pass."""
        gen = stream(self.seed, "beneficiary", epoch)
        batches = self._batches(torch.nonzero(~self.suspicious).flatten().cpu(), draw_seed(gen))
        self.beneficiary.train()
        loss_sum = torch.zeros((), device=self.device)
        for raw, y, _ in progress_bar(batches.raw(), self.progress, total=len(batches), desc=f"mix {epoch}"):
            mixed, mixed_t = self.mixed_batch(self._views(raw, gen), F.one_hot(y, self.num_classes).float(), gen)
            with autocast(self.device, self.amp):
                logits = self.beneficiary(mixed)
            loss_sum += self._step(soft_cross_entropy(logits, mixed_t))
        return {"loss": check_finite(loss_sum, f"AttentionMix epoch {epoch}") / max(len(batches), 1)}

    def suppress_epoch(self, epoch: int) -> dict:
        """Semi-supervised suppression: each credible batch with a suspicious batch of its size,
        unlabelled, whose targets are the beneficiary's sharpened pseudo-labels minus the victim's
        soft prediction (the credible targets too with `suppress_labelled`)."""
        gen = stream(self.seed, "beneficiary", epoch)
        seeds = torch.randint(0, 2**62, (2,), generator=gen).tolist()
        lab = self._batches(torch.nonzero(~self.suspicious).flatten().cpu(), seeds[0])
        suspicious = torch.nonzero(self.suspicious).flatten().cpu()
        unlabelled = self._batches(suspicious, seeds[1]).endless() if len(suspicious) else None
        lam, temperature = self.schedule.lambda_u(epoch), self.vab_cfg.temperature
        self.beneficiary.train()
        self.victim.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        for raw_l, y_l, _ in progress_bar(lab.raw(), self.progress, total=len(lab), desc=f"suppress {epoch}"):
            b = len(y_l)
            raw_u = next(unlabelled)[0][:b] if unlabelled is not None else None
            views_l = self._views(raw_l, gen)
            views_u = self._views(raw_u, gen) if raw_u is not None else []
            t_l = F.one_hot(y_l, self.num_classes).float()
            if self.vab_cfg.suppress_labelled:
                t_l = labelled_targets(y_l, self.victim.soft_predictions(self.normalize(raw_l), temperature))
            mixed, mixed_t = self.mixed_batch(views_l, t_l, gen)
            with autocast(self.device, self.amp):
                logits = self.beneficiary(torch.cat([mixed] + views_u))
            loss = soft_cross_entropy(logits[:2 * b], mixed_t)
            if views_u:
                # pseudo-labels from this very pass (train mode), like the reference's separate
                # no-grad pass over the same views with the same weights
                bu = len(raw_u)
                q_u = self.victim.soft_predictions(self.normalize(raw_u), temperature)
                probs_u = torch.softmax(logits[2 * b:].detach().float(), 1)
                t_u = pseudo_targets(probs_u[:bu], probs_u[bu:], q_u, self.vab_cfg.pseudo_confidence).repeat(2, 1)
                loss = loss + lam * soft_cross_entropy(logits[2 * b:], t_u)
            loss_sum += self._step(loss)
        self.victim.model.train()
        return {"loss": check_finite(loss_sum, f"suppression epoch {epoch}") / max(len(lab), 1), "lambda_u": lam}

    # ------------------------------------------------------------------ driving the phases
    def evaluate(self) -> dict:
        return {**backdoor_metrics(self.beneficiary, self.normalize, **self.eval_tensors), **self.split_quality()}

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
                self._victim_phase(p)
                self.timings[p] += time.time() - t0
            else:
                last = self.schedule.mix_epochs if p == "mix" else self.train_cfg.epochs
                while self.epoch < last:
                    records.append(self._beneficiary_epoch(p))
                    if on_epoch is not None:
                        on_epoch(records[-1])
                    if self.epoch % self.vab_cfg.checkpoint_every == 0 and self.epoch < last:
                        self.save()
            self.phases_done.append(p)
            self.save(boundary=p)
        return records

    def _beneficiary_epoch(self, phase: str) -> dict:
        """Re-select if due, train one epoch, evaluate, append the record to metrics.jsonl."""
        t0 = time.time()
        epoch = self.epoch + 1
        reselected = self.schedule.reselects_before(epoch)
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
        return {"settings_json": json.dumps(self.settings), "epoch": self.epoch,
                "phases_done": list(self.phases_done), "victim": self.victim.state_dict(),
                "beneficiary": self.beneficiary.state_dict(), "ben_opt": self.ben_opt.state_dict(),
                "ben_sched": self.ben_sched.state_dict(), "tracker": self.tracker.state_dict(),
                "scorings_json": json.dumps(runio.jsonable(self.scorings)), "timings_json": json.dumps(self.timings)}

    def load_state_dict(self, state: dict, allow: frozenset = frozenset()) -> None:
        """Load a checkpoint of this run; `allow` names V&B settings that may differ (e.g.
        SUPPRESSION_FIELDS, to start other suppression settings from the end of AttentionMix)."""
        differ = settings_diff(json.loads(state.get("settings_json", "{}")), runio.jsonable(self.settings),
                               {f"vab.{name}" for name in allow})
        if differ:
            raise CheckpointError(f"this checkpoint was written with other settings ({', '.join(differ[:6])}); use a "
                                  f"new run_dir or delete the checkpoints folder to start over.")
        self.epoch, self.phases_done = int(state["epoch"]), list(state["phases_done"])
        self.victim.load_state_dict(state["victim"])
        self.beneficiary.load_state_dict(state["beneficiary"])
        self.ben_opt.load_state_dict(state["ben_opt"])
        self.ben_sched.load_state_dict(state["ben_sched"])
        self.tracker.load_state_dict({k: (v.to(self.device) if isinstance(v, torch.Tensor) else v)
                                      for k, v in state["tracker"].items()})
        self.scorings = json.loads(state["scorings_json"])
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
