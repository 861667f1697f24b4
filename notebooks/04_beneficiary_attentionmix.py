# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · The beneficiary with AttentionMix
#
# The **beneficiary** is the model we keep. In the first half of its schedule it trains only on
# the *credible* samples, with **AttentionMix**: each image's salient region (where the
# beneficiary's last feature maps are active) is blended with a random partner's, and the labels
# are mixed by how much attention each side keeps. A backdoor trigger that survived detection is
# usually small and salient, so mixing breaks the link between trigger and target label.
#
# Every few epochs (5 of 200 in the reference) the victim trains one more epoch on the suspicious
# set and all samples are re-scored and re-split. After every epoch we measure clean accuracy
# (ACC), attack success rate (ASR) and robust accuracy (RA), and the split's quality; they are
# appended to `metrics.jsonl`.

# %% [markdown]
# ## vablib and the paper
# AttentionMix itself is the reference's. Around it, in the named sections of
# [docs/method.md](../docs/method.md):
# - the credible set it trains on comes from the `hybrid` split (notebooks 02 and 03): "Hybrid split";
# - on the short budgets the beneficiary trains at lr 0.1 and drops it at the phase boundaries
#   (`beneficiary_lr`, `beneficiary_milestones`): "The beneficiary's own lr and milestones on short budgets".

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-03
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars

# %%
import pandas as pd
import torch
import torch.nn.functional as F

from vablib import attentionmix, pipeline, plots, runstate

run, trainer = runstate.resume_run(run_dir, device, progress, after=("rounds", "03_victim_training_and_detection"))
print(f"{trainer.schedule.mix_epochs} AttentionMix epochs of {trainer.train_cfg.epochs}; re-selection every "
      f"{trainer.schedule.reselect_interval} epoch(s); credible set: {int((~trainer.suspicious).sum())} samples")

# %% [markdown]
# ## One AttentionMix step, by hand
# For an image $x$ with label $y$ and its partner $x_p$, $y_p$ (a random permutation of the batch):
#
# 1. attention map $A$: the sum over channels of the squared last feature maps, upsampled to the
#    image size and min-max normalised to $[0, 1]$;
# 2. mask $M = [A \ge \tau]$, the image's salient region ($\tau$ = `attention_threshold`);
# 3. $W = \sum A M / \sum A$, the image's attention inside its own mask, and
#    $W_c = \sum A_p M / \sum A_p$, the partner's attention inside *this* mask;
# 4. mixed image: $x$ outside the mask, $\frac{W}{W + W_c} x + \frac{W_c}{W + W_c} x_p$ inside it;
# 5. mixed label: $\tilde y = \left(1 - W + \frac{W^2}{W + W_c}\right) y
#    + \left(W - \frac{W^2}{W + W_c}\right) y_p$.
#
# Below, every step by hand on four credible images (training mixes two augmented views of each),
# checked against `attentionmix.attention_mix`.

# %%
pick = torch.nonzero(~trainer.suspicious).flatten()[:4]
x, y = trainer.normalize(trainer.x[pick]), F.one_hot(trainer.y[pick], trainer.num_classes).float()
perm = torch.tensor([1, 2, 3, 0], device=x.device)  # each image's partner
feats = trainer.attention_features(x)  # the beneficiary's last feature maps, no gradient
att = attentionmix.attention_maps(feats, x.shape[-2:])  # step 1
mask = (att >= trainer.vab_cfg.attention_threshold).float()  # step 2
w = (att * mask).sum((1, 2, 3)) / att.sum((1, 2, 3))  # step 3
wc = (att[perm] * mask).sum((1, 2, 3)) / att[perm].sum((1, 2, 3))
blend = (w / (w + wc))[:, None, None, None]  # step 4
own = 1 - w + w**2 / (w + wc)  # step 5: the weight of the image's own label
mixed, mixed_y, info = attentionmix.attention_mix(x, y, feats, perm, trainer.vab_cfg.attention_threshold)
torch.testing.assert_close((info["w"], info["wc"]), (w, wc))
torch.testing.assert_close(mixed, mask * (blend * x + (1 - blend) * x[perm]) + (1 - mask) * x)
torch.testing.assert_close(mixed_y, own[:, None] * y + (1 - own[:, None]) * y[perm])
pd.DataFrame({"label": trainer.y[pick].cpu(), "partner's label": trainer.y[pick][perm].cpu(),
              "mask share": mask.mean((1, 2, 3)).cpu(), "W": w.cpu(), "Wc": wc.cpu(), "own label weight": own.cpu()})

# %% [markdown]
# ## What AttentionMix does to a batch
# Top: credible images; middle: the beneficiary's attention; bottom: the mix with a random partner
# (titles: the two labels and W). Before training the attention is unfocused; it sharpens as the
# beneficiary learns (the same figure after training is at the end of this notebook).

# %%
images, attention, mixed, titles = pipeline.attention_examples(trainer, n=8)
fig = plots.attention_mix_examples(images, attention, mixed, titles)
fig

# %% [markdown]
# ## Train
# Interrupt and re-run at will: training resumes from the last checkpoint.

# %%
trainer.run_phase("mix")
history = pipeline.history_frame(trainer)
history[["epoch", "loss", "acc", "asr", "ra", "precision", "recall", "n_suspicious"]].tail(10)

# %% [markdown]
# ## Training curves
# ASR should stay low while ACC climbs: the beneficiary never sees the suspicious samples' labels.
# Dashed lines: the no-defense baseline of notebook 01 (when it was trained).

# %%
baseline = pipeline.baseline_metrics(run)
fig = plots.training_curves(history, baseline=baseline)
plots.save_figure(fig, run, "04_training_curves")
fig

# %% [markdown]
# ## Attention after training

# %%
images, attention, mixed, titles = pipeline.attention_examples(trainer, n=8)
fig = plots.attention_mix_examples(images, attention, mixed, titles)
plots.save_figure(fig, run, "04_attentionmix_examples")
fig

# %% [markdown]
# Next: **05_semi_supervised_suppression** uses the suspicious samples too, without their labels.
