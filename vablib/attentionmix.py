"""AttentionMix: a strong, batched augmentation that breaks triggers (V&B phase 4).

Each image's salient region (where the beneficiary's last feature maps are active) is blended with
a randomly paired partner; labels are mixed by how much attention each side keeps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_maps(feature_maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sum over channels of squared activations, nearest-upsampled to `size`, min-max normalised
    per image to [0, 1]. Returns B×1×H×W float32."""
    a = feature_maps.float().pow(2).sum(dim=1, keepdim=True)
    a = F.interpolate(a, size=size, mode="nearest")
    lo = a.amin(dim=(2, 3), keepdim=True)
    hi = a.amax(dim=(2, 3), keepdim=True)
    return (a - lo) / (hi - lo).clamp_min(1e-12)


def attention_mix(images: torch.Tensor, targets: torch.Tensor, feature_maps: torch.Tensor,
                  permutation: torch.Tensor, threshold: float = 0.1):
    """Mix a batch with its permuted partners inside each image's attention mask.

    images: B×C×H×W float (normalised); targets: B×K soft or one-hot; feature_maps: the
    beneficiary's last feature maps of these images (computed without gradient); permutation: the
    partner index of each image. Returns (mixed images, mixed targets, info dict with the mask and
    the weights W, Wc).
    W = attention of the image inside its mask / its total attention; Wc = the partner's attention
    inside this image's mask / the partner's total attention. Inside the mask the pixels are blended
    with weights W/(W+Wc) and Wc/(W+Wc); the label is
    (1 − W + W²/(W+Wc))·y + (W − W²/(W+Wc))·y_partner.
    """
    att = attention_maps(feature_maps, images.shape[-2:])
    mask = (att >= threshold).to(att.dtype)
    att_p, img_p, tgt_p = att[permutation], images[permutation], targets[permutation]
    total = att.sum(dim=(1, 2, 3)).clamp_min(1e-12)
    total_p = att_p.sum(dim=(1, 2, 3)).clamp_min(1e-12)
    w = (att * mask).sum(dim=(1, 2, 3)) / total
    wc = (att_p * mask).sum(dim=(1, 2, 3)) / total_p
    denom = (w + wc).clamp_min(1e-12)
    lam_img = (w / denom).view(-1, 1, 1, 1)
    blended = lam_img * images + (1 - lam_img) * img_p
    mixed = mask * blended.to(images.dtype) + (1 - mask) * images
    keep = 1 - w + w * w / denom
    mixed_targets = keep[:, None] * targets + (1 - keep)[:, None] * tgt_p
    return mixed.to(images.dtype), mixed_targets, {"mask": mask, "w": w, "wc": wc}
