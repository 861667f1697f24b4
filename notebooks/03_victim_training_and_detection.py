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
# it learns the backdoor ever more strongly and becomes a sharper detector; each round re-scores
# every sample (smoothed by an EMA) and re-splits. The reference runs two such rounds before the
# beneficiary starts, and keeps re-selecting while the beneficiary trains (notebooks 04 and 05).
#
# You will run the rounds and watch the split's quality per round: precision (how many suspicious
# samples are really poisoned), recall (how many poisoned samples were caught), the false positive
# rate and the AUROC of the score. With `suspect_labels="target"` (the default) the beneficiary
# leaves out only flagged samples that carry the attack's target label. Each scoring votes for the
# label most over-represented in the victim's set, and the split takes the label with the most
# votes so far (column `inferred_target`): it should settle on the attack's target label once the
# victim has learned the backdoor, and a round or two in which the victim's set drifts to a clean
# class does not move it. Optionally (`keep_flagged_fraction=0.5` in notebook 02) a sample that more
# than half of the scorings so far flagged also stays out of the beneficiary's labelled set when one
# scoring misses it; the README says when that helped and when it hurt.

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-02
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars

# %%
from vablib import pipeline, plots

run, trainer = pipeline.resume_run(run_dir, device, progress, after=("warmup", "02_victim_warmup_and_entropy"))

# %% [markdown]
# ## Run the detection rounds

# %%
trainer.run_phase("rounds")
rounds = pipeline.rounds_frame(trainer)
rounds

# %% [markdown]
# ## Split quality per round

# %%
fig = plots.detection_rounds(rounds)
plots.save_figure(fig, run, "03_detection_rounds")
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
