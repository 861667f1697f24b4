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
# # 03 · Victim training and detection rounds
#
# The victim is now trained **only on the suspicious samples**. Since most of them are poisoned,
# it learns the backdoor ever more strongly and becomes a sharper detector; after each training
# every sample is re-scored (smoothed by an EMA) and re-split. The reference runs two such rounds
# before the beneficiary starts, and keeps re-selecting while the beneficiary trains (notebooks 04
# and 05).
#
# You will run the rounds and watch the split's quality after each scoring: precision (how many
# suspicious samples are really poisoned), recall (how many poisoned samples were caught), the
# false positive rate and the AUROC of the score. Column `inferred_target` is the label the split
# takes as the attack's target: the label whose own log-entropies split into two modes more clearly
# than every other's by `target_margin` (the poisoned and the clean samples of the target), when
# the victim's set over-represents it; without such a lead, the label holding a majority of the
# scorings' votes (each for the label most over-represented in the victim's set), or -1 (every
# label suspicious) while none does.
# Columns `split_separation` and `low_confidence` say, without the ground truth, how clearly the
# scores the split is drawn from fall into two modes.

# %% [markdown]
# ## vablib and the paper
# Departures in this step, each a parameter of notebook 02; the measurement and the reference
# setting are in the named section of [docs/method.md](../docs/method.md):
# - the victim trains on what both rules of the `hybrid` split flag, and the beneficiary leaves out
#   what either flags (`split`, `beneficiary_excludes`): "Hybrid split";
# - only flagged samples with the inferred target label are suspicious (`suspect_labels`,
#   `target_inference`): "Only the inferred target label is suspicious";
# - the `cpu` budget runs 20 rounds (`warmup_rounds`): "The `cpu` budget's victim".

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-02
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars

# %%
from vablib import detection, pipeline, plots, runstate

run, trainer = runstate.resume_run(run_dir, device, progress, after=("warmup", "02_victim_warmup_and_entropy"))

# %% [markdown]
# ## Run the detection rounds

# %%
trainer.run_phase("rounds")
scorings = pipeline.scorings_frame(trainer)
scorings

# %% [markdown]
# ## Split quality after each scoring

# %%
fig = plots.detection_scorings(scorings)
plots.save_figure(fig, run, "03_detection_scorings")
fig

# %% [markdown]
# ## How sure the split is, without the ground truth
# The figure above needs the poison mask; a defender has only the scores. `split_separation` is
# how clearly the scores the suspicious set is drawn from (the inferred target label's) fall into
# two modes; `separation` is the same over every sample, and `target_margin` the inferred label's
# lead over the runner-up. With the target votes, the right panel is the most-voted label's share
# of the scorings' votes: a real trigger wins most of them, and at or below the dashed line no label
# holds a majority, so there is no target and the split draws on every label. It also shows the
# named target's share of the victim's own set: below the line, and with no lead in separation,
# the victim trains mostly on other labels and has not singled the target out (an all-to-all
# attack's poisoned samples carry every label). Below the left line, without a target, or with a
# target the victim has not singled out, the split is low-confidence (`low_reasons`: `modes`,
# `no_target`, `scattered`): the report and the runner then warn that V&B may not have removed the
# backdoor.

# %%
fig = plots.detection_confidence(scorings, detection.CLEAR_SEPARATION, detection.MIN_VOTE_SHARE)
plots.save_figure(fig, run, "03_detection_confidence")
if scorings["low_confidence"].iloc[-1]:
    print("Warning: the last split is low-confidence (its scores do not separate clearly, or its target is a guess).")
fig

# %% [markdown]
# ## The scores after the rounds
# Compare with the histogram of notebook 02: the victim trained on suspicious samples pushes the
# poisoned samples' entropy further down.

# %%
frame = pipeline.saved_frame(run, "entropy_after_rounds", trainer)
fig = plots.entropy_histogram(frame)
plots.save_figure(fig, run, "03_entropy_after_rounds")
fig

# %% [markdown]
# Next: **04_beneficiary_attentionmix** trains the model we keep on the credible samples.
