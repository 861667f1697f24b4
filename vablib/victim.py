"""The victim: a network trained on purpose on the suspicious samples, so that it learns the
backdoor sharply and its prediction entropy points at the poisoned samples (Adam, no augmentation,
as in the reference). It scores every training sample and, in suppression, gives the soft
predictions that are subtracted from the beneficiary's targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .batches import BatchIterator, Normalizer
from .detection import score_entropy
from .models import build_model
from .suppression import victim_soft_predictions
from .training import adam, autocast, check_finite


class Victim:
    def __init__(self, model: torch.nn.Module, lr: float, weight_decay: float, batch_size: int, amp: bool = True):
        self.model, self.batch_size, self.amp = model, batch_size, amp
        self.optimizer = adam(model, lr, weight_decay)
        self.trainings = 0  # training calls completed (each draws its own batch order)

    @classmethod
    def build(cls, train_cfg, vab_cfg, num_classes: int, channels: int, device, memory_format) -> "Victim":
        """The victim of a run: the beneficiary's architecture unless `vab_cfg` names another."""
        model = build_model(vab_cfg.victim_model or train_cfg.model, num_classes, channels,
                            vab_cfg.victim_width or train_cfg.width).to(device, memory_format=memory_format)
        return cls(model, vab_cfg.victim_lr, vab_cfg.victim_weight_decay, vab_cfg.victim_batch_size, train_cfg.amp)

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
        """Prediction entropy of every image of `x` (eval mode, no augmentation)."""
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
