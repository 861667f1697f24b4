"""The victim: a network trained on purpose on the suspicious samples, so that it learns the
backdoor sharply and its prediction entropy points at the poisoned samples (Adam, no augmentation,
as in the reference). It scores every training sample and, in suppression, gives the soft
predictions that are subtracted from the beneficiary's targets.

It trains on its own set, a few hundred mostly poisoned samples, so the batch-norm statistics its
training leaves are those of that set, not of the data it scores. With `batchnorm="whole_set"`
they are recomputed on the whole training set before every scoring (docs/method.md, "The victim
scores with the whole set's batch-norm statistics"); `"running"` keeps the training's, as the
reference does."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .batches import BatchIterator, Normalizer
from .detection import score_entropy
from .models import build_model
from .suppression import victim_soft_predictions
from .training import adam, autocast, check_finite


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, x: torch.Tensor, normalize: Normalizer, batch_size: int,
                        amp: bool = True) -> None:
    """Every batch-norm layer's running statistics set to the average over all of `x` (uint8, on
    the device), in batches of `batch_size` in train mode without gradients; the model's mode and
    the layers' momentum are left as they were."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momentum = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    was_training = model.training
    model.train()
    bounds = list(range(0, len(x), batch_size)) + [len(x)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]  # a last batch of one image joins the one before: one value has no batch statistics
    for lo, hi in zip(bounds, bounds[1:]):
        with autocast(x.device, amp):
            model(normalize(x[lo:hi]))
    model.train(was_training)
    for m, value in zip(layers, momentum):
        m.momentum = value


class Victim:
    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float, batch_size: int, amp: bool,
                 batchnorm: str):
        self.model, self.batch_size, self.amp, self.batchnorm = model, batch_size, amp, batchnorm
        self.optimizer = adam(model, lr, weight_decay)
        self.trainings = 0  # training calls completed (each draws its own batch order)

    @classmethod
    def build(cls, train_cfg, vab_cfg, num_classes: int, channels: int, device, memory_format) -> "Victim":
        """The victim of a run: the beneficiary's architecture unless `vab_cfg` names another."""
        model = build_model(vab_cfg.victim_model or train_cfg.model, num_classes, channels,
                            vab_cfg.victim_width or train_cfg.width).to(device, memory_format=memory_format)
        return cls(model, vab_cfg.victim_lr, vab_cfg.victim_weight_decay, vab_cfg.victim_batch_size, train_cfg.amp,
                   vab_cfg.victim_batchnorm)

    def train(self, x: torch.Tensor, y: torch.Tensor, normalize: Normalizer, indices: torch.Tensor, steps: int,
              seed: int) -> dict:
        """`steps` Adam steps of cross entropy on the samples `indices` of the on-device uint8
        images `x`, cycling over them in a shuffled order drawn from `seed`."""
        device = x.device
        it = BatchIterator(x, y, normalize, batch_size=min(self.batch_size, len(indices)), shuffle=True,
                           augment=False, seed=seed, indices=indices.cpu())
        self.model.train()
        loss_sum = torch.zeros((), device=device)
        done = 0
        while done < steps:
            for xb, yb, _ in it:
                with autocast(device, self.amp):
                    logits = self.model(xb)
                loss = F.cross_entropy(logits.float(), yb)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach()
                done += 1
                if done >= steps:
                    break
        self.trainings += 1
        return {"victim_steps": steps, "victim_loss": check_finite(loss_sum, "victim training") / steps}

    def entropy(self, x: torch.Tensor, normalize: Normalizer) -> torch.Tensor:
        """Prediction entropy of every image of `x` (eval mode, no augmentation), with the batch-norm
        statistics of all of `x` first under `batchnorm="whole_set"` (they stay for the soft
        predictions until the next training)."""
        if self.batchnorm == "whole_set":
            recompute_batchnorm(self.model, x, normalize, self.batch_size, self.amp)
        return score_entropy(self.model, x, normalize)

    @torch.no_grad()
    def soft_predictions(self, x_normalized: torch.Tensor, temperature: float) -> torch.Tensor:
        """softmax(logits / T) for normalised images, in the model's current mode."""
        with autocast(x_normalized.device, self.amp):
            logits = self.model(x_normalized).float()
        return victim_soft_predictions(logits, temperature)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "trainings": self.trainings}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.trainings = int(state["trainings"])
