"""Input-aware dynamic attack (IAD, Nguyen & Tran 2020), trained in the kit.

Two small encoder-decoder networks: a mask generator M (one channel in [0, 1]) and a pattern
generator G (C channels in [0, 1]). A triggered image is x + (G(x) − x)·M(x), so every image gets
its own trigger. Training has two stages, as in the reference:

1. M alone: keep the mask sparse (mean ≤ mask_density) and diverse (different images → different
   masks);
2. M frozen; G and a classifier together: per batch a share of images carries its own trigger and
   the target label, a share carries *another* image's trigger and keeps its label ("cross"
   samples, which teach the classifier that a trigger only works on its own image), the rest is
   clean; plus G's diversity loss.

The trained generators are cached in the run folder under a key of the data, the settings and the
seed. Poisoned training images and the triggered test set are then made with them once.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import runio
from ..batches import Normalizer, random_crop_flip, to_device_uint8
from ..hashing import content_key
from ..models import build_model
from ..utils import progress as progress_bar
from .registry import BuildContext, Trigger


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TriggerGenerator(nn.Module):
    """Encoder-decoder on images in [0, 1] (any size): two 2× down-samplings, then back up to the
    input size. out_channels = C for a pattern, 1 for a mask; the output lies in [0, 1]."""

    def __init__(self, in_channels: int, out_channels: int, width: float = 1.0):
        super().__init__()
        c1, c2, c3 = (max(4, int(round(b * width))) for b in (32, 64, 128))
        self.enc1 = nn.Sequential(_block(in_channels, c1), _block(c1, c1))
        self.enc2 = nn.Sequential(_block(c1, c2), _block(c2, c2))
        self.mid = nn.Sequential(_block(c2, c3), _block(c3, c2))
        self.dec2 = nn.Sequential(_block(c2, c2), _block(c2, c1))
        self.dec1 = nn.Sequential(_block(c1, c1), nn.Conv2d(c1, out_channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        e1 = self.enc1(x * 2 - 1)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(F.interpolate(m, size=e2.shape[-2:], mode="bilinear", align_corners=False))
        d1 = self.dec1(F.interpolate(d2, size=(h, w), mode="bilinear", align_corners=False))
        return torch.tanh(d1) / 2 + 0.5


def apply_generated(x: torch.Tensor, pattern: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x + (pattern − x)·mask, images in [0, 1]."""
    return x + (pattern - x) * mask


def _diversity(x1, x2, out1, out2) -> torch.Tensor:
    """Reference diversity loss: image distance over output distance (small when outputs differ)."""
    dx = (x1 - x2).pow(2).flatten(1).mean(1).sqrt()
    do = (out1 - out2).pow(2).flatten(1).mean(1).sqrt()
    return (dx / (do + 1e-3)).mean()


def _target(y: torch.Tensor, ctx: BuildContext, num_classes: int) -> torch.Tensor:
    return torch.full_like(y, ctx.target_label) if ctx.attack_mode == "all2one" else (y + 1) % num_classes


def train_generators(ctx: BuildContext):
    """Train M then (G + classifier) on the clean training set; returns (G, M, info)."""
    ds, p = ctx.ds, ctx.params
    device = torch.device(ctx.device or "cpu")
    c, k = ds.channels, ds.num_classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        gen_pattern = TriggerGenerator(c, c, p["generator_width"]).to(device)
        gen_mask = TriggerGenerator(c, 1, p["generator_width"]).to(device)
        clf = build_model(p["classifier"], k, c, p["classifier_width"]).to(device)
    normalizer = Normalizer.for_dataset(ds.name, c, device)
    x_all = to_device_uint8(ds.x_train, device)
    y_all = torch.as_tensor(ds.y_train, device=device)
    order_gen = torch.Generator().manual_seed(ctx.seed + 1)
    bs = 128

    def batches():
        order = torch.randperm(len(x_all), generator=order_gen).to(device)
        partner = torch.randperm(len(x_all), generator=order_gen).to(device)
        for s in range(0, len(order), bs):
            i, j = order[s:s + bs], partner[s:s + bs]
            yield x_all[i].float() / 255, y_all[i], x_all[j].float() / 255

    opt_m = torch.optim.Adam(gen_mask.parameters(), lr=p["lr_generator"], betas=(0.5, 0.9))
    for _ in progress_bar(range(p["mask_epochs"]), ctx.progress, desc="IAD mask generator"):
        gen_mask.train()
        for x1, _, x2 in batches():
            m1, m2 = gen_mask(x1), gen_mask(x2)
            loss = p["lambda_norm"] * F.relu(m1.mean() - p["mask_density"]) + p["lambda_div"] * _diversity(x1, x2, m1, m2)
            opt_m.zero_grad(set_to_none=True)
            loss.backward()
            opt_m.step()
    gen_mask.eval().requires_grad_(False)

    opt_g = torch.optim.Adam(gen_pattern.parameters(), lr=p["lr_generator"], betas=(0.5, 0.9))
    opt_c = torch.optim.SGD(clf.parameters(), lr=p["lr_classifier"], momentum=0.9, weight_decay=5e-4)
    aug_gen = torch.Generator().manual_seed(ctx.seed + 2)
    stats = {}
    for _ in progress_bar(range(p["generator_epochs"]), ctx.progress, desc="IAD generator"):
        gen_pattern.train()
        clf.train()
        correct = torch.zeros((), device=device)
        hits = torch.zeros((), device=device)
        n_bd_seen = 0
        for x1, y1, x2 in batches():
            b = len(x1)
            nb = int(round(p["train_poison_rate"] * b))
            nc = min(int(round(p["cross_rate"] * b)), b - nb)
            pat1, pat2 = gen_pattern(x1), gen_pattern(x2)
            bd = apply_generated(x1[:nb], pat1[:nb], gen_mask(x1[:nb]))
            cross = apply_generated(x1[nb:nb + nc], pat2[nb:nb + nc], gen_mask(x2[nb:nb + nc]))
            inputs = torch.cat([bd, cross, x1[nb + nc:]])
            labels = torch.cat([_target(y1[:nb], ctx, k), y1[nb:]])
            logits = clf(normalizer(random_crop_flip(inputs, aug_gen) * 255))
            loss = F.cross_entropy(logits, labels) + p["lambda_div"] * _diversity(x1, x2, pat1, pat2)
            opt_g.zero_grad(set_to_none=True)
            opt_c.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            opt_c.step()
            pred = logits.detach().argmax(1)
            hits += (pred[:nb] == labels[:nb]).sum()
            correct += (pred[nb:] == labels[nb:]).sum()
            n_bd_seen += nb
        stats = {"generator_train_asr": float(hits) / max(n_bd_seen, 1),
                 "generator_train_clean_acc": float(correct) / max(len(x_all) - n_bd_seen, 1)}
    gen_pattern.eval().requires_grad_(False)
    return gen_pattern, gen_mask, stats


def _to_float(x: np.ndarray, device) -> torch.Tensor:
    return to_device_uint8(x, device).float() / 255


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generated_trigger(gen_pattern, gen_mask, x: np.ndarray, source: np.ndarray | None = None,
                      batch_size: int = 512) -> np.ndarray:
    """Apply the trained trigger to uint8 images; with `source`, each image gets the trigger (pattern
    and mask) generated from the matching source image instead of its own (cross samples)."""
    device = next(gen_pattern.parameters()).device
    source = x if source is None else source
    out = []
    for s in range(0, len(x), batch_size):
        xs, src = _to_float(x[s:s + batch_size], device), _to_float(source[s:s + batch_size], device)
        out.append(_to_uint8(apply_generated(xs, gen_pattern(src), gen_mask(src))))
    return np.concatenate(out) if out else x.copy()


def trained_trigger(ctx: BuildContext) -> Trigger:
    """The IAD trigger: generators loaded from the run folder's cache or trained now."""
    ds, p = ctx.ds, ctx.params
    device = torch.device(ctx.device or "cpu")
    key = content_key("iad-generators", ds.fingerprint(), p, ctx.target_label, ctx.attack_mode, ctx.seed)
    path = ctx.run.checkpoints / f"iad_generators_{key}.pt" if ctx.run is not None else None
    if path is not None and path.exists():
        state = runio.load_checkpoint(path, map_location=device)
        gen_pattern = TriggerGenerator(ds.channels, ds.channels, p["generator_width"]).to(device)
        gen_mask = TriggerGenerator(ds.channels, 1, p["generator_width"]).to(device)
        gen_pattern.load_state_dict(state["pattern"])
        gen_mask.load_state_dict(state["mask"])
        gen_pattern.eval()
        gen_mask.eval()
        stats = dict(state.get("stats", {}))
        cached = True
    else:
        gen_pattern, gen_mask, stats = train_generators(ctx)
        cached = False
        if path is not None:
            runio.save_checkpoint(path, {"pattern": gen_pattern.state_dict(), "mask": gen_mask.state_dict(),
                                         "key": key, "stats": stats})

    def noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        partners = ds.x_train[rng.integers(0, len(ds.x_train), len(x))]
        return generated_trigger(gen_pattern, gen_mask, x, partners)

    return Trigger(apply=lambda x: generated_trigger(gen_pattern, gen_mask, x), noise=noise,
                   noise_rate=p["cross_rate"], info={"generator_key": key, "generator_cached": cached, **stats})
