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
# # 02 · The victim's warm-up and the entropy signal
#
# V&B's first insight: a network trained on poisoned data is *extremely sure* of the target class
# on poisoned images, so its **prediction entropy** is much lower on them than on clean images.
# V&B trains a deliberately poisoned network, the **victim**, and uses its entropy to split the
# training set into *credible* (high entropy) and *suspicious* (low entropy) samples.
#
# In this notebook you will:
# 1. set the V&B parameters for the run (all later notebooks read them from the run folder);
# 2. compute the entropy of one batch by hand;
# 3. warm the victim up on the whole poisoned set, score every training sample and see how well
#    entropy separates poisoned from clean samples.

# %% [markdown]
# ## vablib and the paper
# Where this step departs from the reference code, each a parameter below; the measurement and the
# reference setting are in the named section of [docs/method.md](../docs/method.md):
# - the warm-up is counted in samples seen (`victim_warmup_samples`): "Victim warm-up counted in samples";
# - the `cpu` budget's victim warms up on 10,000 samples: "The `cpu` budget's victim";
# - the victim scores with the whole training set's batch-norm statistics (`victim_batchnorm`): "The
#   victim scores with the whole set's batch-norm statistics";
# - the split is `hybrid`, the fixed thresholds and the log-entropy valley (`split`,
#   `beneficiary_excludes`): "Hybrid split";
# - only the inferred target label is suspicious (`suspect_labels`): "Only the inferred target label
#   is suspicious";
# - the suspicious set is capped (`max_suspicious_fraction`): "The suspicious set is capped".

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00 and 01
# V&B settings. None: the value of the budget notebook 01 chose (config.VAB_PROFILES over VabConfig's defaults)
victim_model: str = None  # victim architecture; None for the beneficiary's (paper: resnet18)
victim_width: float = None  # victim width multiplier; None for the beneficiary's (paper: 1)
victim_lr: float = None  # Adam learning rate of the victim (paper: 1e-3)
victim_weight_decay: float = None  # Adam weight decay of the victim (paper: 5e-4)
victim_batch_size: int = None  # victim batch size (paper: 128)
victim_warmup_samples: int = None  # samples the victim sees in its warm-up; 0 for one epoch (paper: one epoch, 50000 on CIFAR-10)
victim_round_epochs: float = None  # passes over the victim's set per victim training after the warm-up (paper: 1)
victim_batchnorm: str = None  # whole_set (BN statistics of the whole training set before each scoring) | running (paper: running)
warmup_rounds: int = None  # victim rounds before the beneficiary starts (paper: 2)
ema_weight: float = None  # EMA weight of a new entropy scoring (paper: 0.75)
split: str = None  # hybrid (both rules) | gmm (log-entropy valley) | reference (paper: reference, thresholds 0.6 then 0.2)
beneficiary_excludes: str = None  # hybrid split: the beneficiary leaves out what either rule flags, or both (paper: one rule)
suspect_labels: str = None  # target (only the inferred target label is suspicious) | any (paper: any)
target_inference: str = None  # votes (the clear leader, else a majority of the scorings' votes) | separation (the clear leader alone) (paper: no such step)
target_margin: float = None  # a label leads when its log-entropies split into two modes more clearly than every other's by this (paper: no such step)
max_suspicious_fraction: float = None  # the suspicious set never exceeds this fraction of the data (paper: no cap)
max_label_fraction: float = None  # with no inferred target, at most this fraction of each label is suspicious (paper: no cap)
threshold_step: float = None  # fixed thresholds: max(1 - step * scoring, floor) (paper: 0.4)
threshold_floor: float = None  # fixed thresholds: the lowest threshold (paper: 0.2)
mix_fraction: float = None  # fraction of beneficiary epochs with AttentionMix before suppression (paper: 0.5)
reselect_every: float = None  # re-selection interval during AttentionMix, a fraction of epochs (paper: 5 of 200)
attention_threshold: float = None  # AttentionMix mask: attention at least this (paper: 0.1)
temperature: float = None  # temperature of the victim's soft predictions in suppression (paper: 3)
lambda_u: float = None  # weight of the unlabelled loss ... (paper: 0.1)
lambda_u_late: float = None  # ... and after lambda_switch (paper: 0.5)
lambda_switch: float = None  # fraction of epochs where the weight changes (paper: 150 of 200)
suppress_labelled: bool = None  # subtract the victim's prediction from credible targets too (paper: True)
pseudo_confidence: float = None  # unlabelled samples count only where the beneficiary is this sure (paper: 0, all)
beneficiary_lr: float = None  # the beneficiary's SGD learning rate (paper: 0.1)
beneficiary_milestones: tuple = None  # its lr ×0.1 points, fractions of epochs (paper: 50, 100, 150 of 200)
checkpoint_every: int = None  # checkpoint every this many beneficiary epochs, and at every phase end (not a method setting)
# this notebook only
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars
interactive: bool = True  # threshold slider (False: static table, e.g. under papermill)

# %% [markdown]
# ## Configuration
# The settings you gave go on top of the budget's (`profile`, recorded by notebook 01); the table
# says where each value comes from. `begin_stage` records them in the run folder.

# %%
import math

import pandas as pd
import torch
from IPython.display import display

from vablib import config, detection, pipeline, plots, runio, runstate, training, utils

dev = utils.get_device(device)
utils.set_cpu_threads()
profile = runstate.recorded_profile(runio.RunDir(run_dir))
given = {f: globals()[f] for f in config.VabConfig.field_names() if globals()[f] is not None}
vab_cfg = config.VabConfig.from_profile(profile, **given)
run = runstate.begin_stage("02_victim_warmup_and_entropy", run_dir, vab_cfg, device=dev)
trainer = runstate.open_trainer(run, dev, progress)
source = {f: "your parameter" if f in given else f"the {profile} budget" if f in config.VAB_PROFILES[profile]
          else "VabConfig's default" for f in config.VabConfig.field_names()}
display(pd.DataFrame({"value": [str(v) for v in config.as_params(vab_cfg).values()],
                      "from": list(source.values())}, index=list(source)))
print(f"device {dev}; {len(trainer.x)} training images, {int(trainer.poisoned.sum())} of them poisoned "
      f"(the defense never sees this mask; we use it only to show how well detection works)")

# %% [markdown]
# ## The entropy of one batch, by hand
# For a sample with logits $z$, the victim's class probabilities are $p = \mathrm{softmax}(z)$ and
# its prediction entropy is
# $$H(x) = -\frac{1}{K}\sum_{c=1}^{K} p_c \log p_c ,$$
# largest, $\log(K)/K$, for a uniform prediction and 0 for a certain one. Below: four poisoned and
# four clean training images, before the warm-up (the victim is untrained, so every entropy sits
# near the maximum) and after it.

# %%
pick = torch.cat([torch.nonzero(trainer.poisoned).flatten()[:4], torch.nonzero(~trainer.poisoned).flatten()[:4]])


def entropy_by_hand(model):
    logits = training.predict_logits(model, trainer.x[pick], trainer.normalize)
    p = torch.softmax(logits, dim=1)
    by_hand = -(p * p.log()).nan_to_num().mean(dim=1)  # nan_to_num: p log p is 0 where p is 0
    vablib_h = detection.prediction_entropy(logits)
    torch.testing.assert_close(by_hand, vablib_h, rtol=1e-4, atol=1e-6)
    return pd.DataFrame({"poisoned": trainer.poisoned[pick].cpu(), "by hand": by_hand.cpu(),
                         "detection.prediction_entropy": vablib_h.cpu()})


print(f"maximum log(K)/K = {math.log(trainer.num_classes) / trainer.num_classes:.4f}")
entropy_by_hand(trainer.victim.model)

# %% [markdown]
# ## Warm the victim up and score every sample
# After the warm-up `vablib` scores every training image this way (eval mode, no augmentation);
# the table shows the same eight images again: the poisoned ones should now sit far below the clean
# ones. Re-running this cell on a finished run loads the checkpoint instead of training again.

# %%
print(f"victim warm-up: {trainer.schedule.victim_steps(len(trainer.x), warmup=True)} optimizer steps of "
      f"{vab_cfg.victim_batch_size}")
trainer.run_phase("warmup")
frame = pipeline.saved_frame(run, "entropy_after_warmup", trainer)
entropy_by_hand(trainer.victim.model)

# %% [markdown]
# ## Does entropy separate poisoned from clean samples?
# The histogram uses log10 of the entropy: poisoned samples sit far to the left. The AUROC says how
# well the score ranks poisoned samples as more suspicious (1.0 = perfectly, 0.5 = no signal).

# %%
fig = plots.entropy_histogram(frame)
plots.save_figure(fig, run, "02_entropy_after_warmup")
print(f"AUROC of the entropy score: {trainer.scorings[0]['auroc']:.3f}; "
      f"suspicious after the first scoring: {int(frame['suspicious'].sum())} samples")
fig

# %% [markdown]
# ## Explore a threshold
# With the reference's fixed thresholds, samples whose normalised score is at or below the
# threshold are suspicious. Move the slider to see the precision/recall trade-off on this run
# (under papermill, a table of a few thresholds is shown instead).

# %%
def show_threshold(threshold=0.2):
    q = pipeline.threshold_quality(frame, threshold)
    print(f"threshold {threshold:.2f}: precision {q['precision']:.3f}  recall {q['recall']:.3f}  "
          f"FPR {q['fpr']:.3f}  suspicious {q['n_suspicious']}")


if interactive:
    import ipywidgets as widgets

    widgets.interact(show_threshold, threshold=widgets.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.01))
else:
    display(pipeline.threshold_table(frame, [0.01, 0.05, 0.1, 0.2, 0.4, 0.6]))

# %% [markdown]
# Next: **03_victim_training_and_detection** trains the victim on the suspicious set so that it
# becomes a sharper detector.
