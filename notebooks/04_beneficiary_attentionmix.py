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

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-03
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars

# %%
from vablib import pipeline, plots

run, trainer = pipeline.resume_run(run_dir, device, progress, after=("rounds", "03_victim_training_and_detection"))
print(f"{trainer.mix_epochs} AttentionMix epochs of {trainer.cfg.epochs}; re-selection every "
      f"{trainer.reselect_interval} epoch(s); credible set: {int((~trainer.suspicious).sum())} samples")

# %% [markdown]
# ## What AttentionMix does to a batch
# Top: credible images; middle: the beneficiary's attention; bottom: the mix with a random partner
# (titles: the two labels and W, the share of attention inside the image's own mask). Before
# training the attention is unfocused; run this cell again after training to see it sharpen.

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
