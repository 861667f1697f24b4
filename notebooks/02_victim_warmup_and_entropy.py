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
# on poisoned images, so its **prediction entropy** `H(x) = −mean_c p_c log p_c` is much lower on
# them than on clean images. V&B trains a deliberately poisoned network, the **victim**, and uses
# its entropy to split the training set into *credible* (high entropy) and *suspicious* (low
# entropy) samples.
#
# In this notebook you will:
# 1. set the V&B parameters for the run (all later notebooks read them from the run folder);
# 2. warm the victim up on the whole poisoned set;
# 3. score every training sample and see how well entropy separates poisoned from clean samples.
#
# **Budget in samples, not epochs.** The reference warms the victim up for one epoch of CIFAR-10
# (50,000 images, 391 optimizer steps). On a small dataset one epoch is only a few dozen steps and
# the victim has not learned the backdoor yet, so vablib counts the warm-up in samples seen
# (`victim_warmup_samples`; 0 restores the reference's plain epoch).
#
# **An adaptive split.** The reference splits the min-max normalised entropy at fixed thresholds
# (0.6, then 0.2). Early on they keep the suspicious set pure, which matters because the victim
# trains on it: a clean image there teaches the victim clean features, and a poisoned image whose
# content and trigger then disagree looks less sure. Later they fail: a victim trained only on
# target-labelled images grows sure of clean images too, and the threshold on the linear scale
# flags more and more of them. On the log scale the poisoned cluster stays far apart, so vablib's
# default (`split = "hybrid"`) also asks for the samples to lie below the valley between the two
# modes of the log-entropy (a two-component Gaussian mixture finds the modes). The victim trains
# only on samples both rules flag, so its training set stays pure; the beneficiary leaves out every
# sample *either* rule flags (`beneficiary_excludes = "either"`), because a poisoned image left in
# its labelled set teaches it the backdoor, while a clean image left out costs little (it still
# serves unlabelled in the suppression phase). `beneficiary_excludes = "both"` uses the victim's set
# for both. `split = "gmm"` uses the valley alone, `split = "reference"` the fixed thresholds alone.
#
# **Settings that go with the budget.** Parameters set to `None` below take the value of the
# training budget notebook 01 chose (`config.VAB_PROFILES`): the reference's on `paper`; on
# `cpu`, the short schedule measured on the CIFAR-10 subset (a 10,000-sample warm-up, 20 warm-up
# rounds, and the beneficiary at lr 0.1, dropping ×0.1 at epochs 20 and 30 of 40, where the scaled
# paper milestones would leave suppression almost no steps; see notebook 05); on `demo`, the
# reference's victim and the `cpu` beneficiary schedule (drops at epochs 6 and 9 of 12). Give a
# value to override it.
#
# **Cross-fitting (optional).** A victim that trains for many passes on a small set memorises its
# clean samples too, which then look as sure as poisoned ones. With `victim_folds = 2` the data is
# split in two halves, one victim trains on each, and every sample is scored by the victim that
# never trained on it: only the trigger, which every poisoned image shares, carries over.

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00 and 01
victim_model: str = ""  # victim architecture; empty for the beneficiary's
victim_width: float = 0.0  # victim width multiplier; 0 for the beneficiary's
victim_lr: float = 1e-3  # Adam learning rate of the victim
victim_weight_decay: float = 5e-4  # Adam weight decay of the victim
victim_batch_size: int = 128  # victim batch size
victim_folds: int = 1  # 1: one victim (reference); 2: cross-fitted victims that never score what they trained on
victim_warmup_samples: int = None  # None: the budget's; samples seen in warm-up (paper: 50000, a CIFAR-10 epoch); 0: one epoch
victim_round_epochs: float = 1.0  # passes over the suspicious set per victim round (reference: 1)
warmup_rounds: int = None  # None: the budget's; victim rounds before the beneficiary starts (paper: 2)
ema_weight: float = 0.75  # EMA weight of a new entropy scoring
split: str = "hybrid"  # hybrid (both rules) | gmm (log-entropy valley) | reference (thresholds 0.6, then 0.2)
beneficiary_excludes: str = "either"  # hybrid: the beneficiary leaves out what either rule flags, or "both" agree on
suspect_labels: str = "target"  # target: the beneficiary leaves out only the inferred target label; any: reference
keep_flagged_fraction: float = 1.0  # < 1: a sample flagged in more than this fraction of the scorings so far stays suspicious; 1: off (reference)
max_suspicious_fraction: float = 0.5  # the suspicious set never exceeds this fraction
threshold_step: float = 0.4  # reference thresholds: max(1 - step * round, floor)
threshold_floor: float = 0.2  # reference thresholds: lowest threshold
mix_fraction: float = 0.5  # fraction of beneficiary epochs with AttentionMix before suppression
reselect_every: float = 0.025  # re-selection interval during AttentionMix, fraction of epochs (5 of 200)
attention_threshold: float = 0.1  # AttentionMix mask: attention ≥ this
temperature: float = 3.0  # temperature of the victim's soft predictions in suppression
lambda_u: float = 0.1  # weight of the unlabelled loss ...
lambda_u_late: float = 0.5  # ... and after lambda_switch
lambda_switch: float = 0.75  # fraction of epochs where λ changes (150 of 200)
suppress_labelled: bool = False  # True: subtract the victim's prediction from credible targets too (reference)
pseudo_confidence: float = 0.95  # unlabelled samples count only where the beneficiary is this sure; 0 for all (reference)
beneficiary_lr: float = None  # None: the budget's; the beneficiary's lr (paper: 0.1); 0: the baselines'
beneficiary_milestones: tuple = None  # None: the budget's; its lr ×0.1 points, fractions of epochs; (): the baselines'
checkpoint_every: int = 5  # checkpoint every this many beneficiary epochs (and at every phase end)
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars
interactive: bool = True  # threshold slider (False: static table, e.g. under papermill)

# %%
from IPython.display import display

from vablib import config, pipeline, plots, runio, utils
from vablib.vab import VabConfig

dev = utils.get_device(device)
utils.set_cpu_threads()
profile = pipeline.recorded_profile(runio.RunDir(run_dir))
vab_cfg = VabConfig.from_profile(profile, victim_model=victim_model, victim_width=victim_width, victim_lr=victim_lr,
                    victim_weight_decay=victim_weight_decay, victim_batch_size=victim_batch_size, victim_folds=victim_folds,
                    victim_warmup_samples=victim_warmup_samples,
                    victim_round_epochs=victim_round_epochs, warmup_rounds=warmup_rounds, ema_weight=ema_weight,
                    split=split, beneficiary_excludes=beneficiary_excludes, suspect_labels=suspect_labels,
                    keep_flagged_fraction=keep_flagged_fraction, max_suspicious_fraction=max_suspicious_fraction,
                    threshold_step=threshold_step, threshold_floor=threshold_floor, mix_fraction=mix_fraction,
                    reselect_every=reselect_every, attention_threshold=attention_threshold, temperature=temperature, lambda_u=lambda_u,
                    lambda_u_late=lambda_u_late, lambda_switch=lambda_switch, suppress_labelled=suppress_labelled,
                    pseudo_confidence=pseudo_confidence, beneficiary_lr=beneficiary_lr,
                    beneficiary_milestones=beneficiary_milestones, checkpoint_every=checkpoint_every)
run = config.begin_stage("02_victim_warmup_and_entropy", run_dir, vab_cfg, device=dev)
trainer = pipeline.open_trainer(run, dev, progress)
print(f"device {dev}; {len(trainer.x)} training images, {int(trainer.poisoned.sum())} of them poisoned "
      f"(the defense never sees this mask; we use it only to show how well detection works)")
print(f"V&B settings of the {profile!r} budget: {config.VAB_PROFILES[profile] or 'the reference defaults'}, "
      f"your parameters on top")
print(f"victim warm-up: {trainer.victim_steps(len(trainer.x), warmup=True)} optimizer steps of {vab_cfg.victim_batch_size}")

# %% [markdown]
# ## Warm the victim up and score every sample
# Re-running this cell on a finished run loads the checkpoint instead of training again.

# %%
trainer.run_phase("warmup")
frame = pipeline.saved_frame(run, "entropy_after_warmup", trainer)
pipeline.rounds_frame(trainer).head(1)

# %% [markdown]
# ## Does entropy separate poisoned from clean samples?
# The histogram uses log10 of the entropy: poisoned samples sit far to the left. The AUROC says how
# well the score ranks poisoned samples as more suspicious (1.0 = perfectly, 0.5 = no signal).

# %%
fig = plots.entropy_histogram(frame)
plots.save_figure(fig, run, "02_entropy_after_warmup")
print(f"AUROC of the entropy score: {trainer.rounds[0]['auroc']:.3f}; "
      f"suspicious after round 1: {int(frame['suspicious'].sum())} samples")
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
