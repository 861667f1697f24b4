"""Label-consistent (CL) attack: PGD against a clean model trained in the kit.

The clean model is trained on the clean training set with SGD and cached in the run folder under a
key of the data fingerprint, its budget and the seed, so it is never reused for other settings.
PGD (L∞, random start) pushes each poisoned target-class image away from its own label, so the
poisoned model has to rely on the trigger to classify it: the backdoor is learnt without any
label change.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import runio
from ..batches import Normalizer, to_device_uint8
from ..config import TrainConfig
from ..hashing import content_key
from ..metrics import backdoor_metrics, eval_tensors
from ..models import build_model
from ..training import train_classifier
from .registry import BuildContext


def clean_model(ctx: BuildContext):
    """(model in eval mode, normalizer, info) — loaded from the run folder's cache when the key matches."""
    ds, p = ctx.ds, ctx.params
    cfg = TrainConfig(model=p["clean_model"], width=p["clean_width"], epochs=p["clean_epochs"],
                      batch_size=128, augment=True)
    key = content_key("cl-clean-model", ds.fingerprint(), cfg.model, cfg.width, cfg.epochs, cfg.batch_size, ctx.seed)
    device = torch.device(ctx.device or "cpu")
    normalizer = Normalizer.for_dataset(ds.name, ds.channels, device)
    path = ctx.run.checkpoints / f"cl_clean_model_{key}.pt" if ctx.run is not None else None
    model = build_model(cfg.model, ds.num_classes, ds.channels, cfg.width).to(device)
    if path is not None and path.exists():
        state = runio.load_checkpoint(path, map_location=device)
        model.load_state_dict(state["model"])
        model.eval()
        return model, normalizer, {"clean_model_key": key, "clean_model_cached": True,
                                   "clean_model_acc": state.get("acc")}
    tests = eval_tensors(_TestSet(ds), device)
    model, history = train_classifier(ds.x_train, ds.y_train,
                                      lambda model, normalizer: backdoor_metrics(model, normalizer, **tests),
                                      cfg, device, ctx.seed, ds.num_classes, ds.name, ctx.progress, what="CL clean model")
    acc = history[-1].get("acc")
    if path is not None:
        runio.save_checkpoint(path, {"model": model.state_dict(), "key": key, "acc": acc})
    return model, normalizer, {"clean_model_key": key, "clean_model_cached": False, "clean_model_acc": acc}


class _TestSet:
    """Clean test set only (no triggered images yet) for the clean model's accuracy."""

    def __init__(self, ds):
        self.x_test, self.y_test = ds.x_test, ds.y_test
        self.x_bd_test = ds.x_test[:0]
        self.y_bd_target = self.y_bd_true = ds.y_test[:0]


def adversarial_images(model, normalizer: Normalizer, x: np.ndarray, y: np.ndarray, ctx: BuildContext,
                       batch_size: int = 256) -> np.ndarray:
    """Untargeted L∞ PGD with a random start on uint8 images; returns uint8 images within ε."""
    p = ctx.params
    eps, steps = float(p["eps"]), int(p["pgd_steps"])
    step = float(p["pgd_step_size"]) if p.get("pgd_step_size") else 2.5 * eps / max(steps, 1)
    if steps == 0:
        return x.copy()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(ctx.seed)
    out = []
    for start in range(0, len(x), batch_size):
        clean = to_device_uint8(x[start:start + batch_size], device).float() / 255
        labels = torch.as_tensor(y[start:start + batch_size], device=device)
        noise = (torch.rand(clean.shape, generator=gen) * 2 - 1).to(device) * eps
        adv = (clean + noise).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(normalizer(adv * 255)), labels)
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + step * grad.sign()
                adv = torch.min(torch.max(adv, clean - eps), clean + eps).clamp(0, 1)
        out.append((adv.detach() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)
