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
# # 07 · Evaluation report
#
# The last notebook puts V&B next to the no-defense baseline, the other defenses of notebook 06
# and, when it was trained, a clean model whose ASR is the natural floor (test errors that happen
# to land on the target class); it shows detection quality and writes `report.md` in the run folder.
#
# - **ACC**: accuracy on the clean test set.
# - **ASR**: triggered test images of non-target classes classified as the attack's target.
# - **RA**: the same triggered images classified as their true class.

# %% [markdown]
# ## vablib and the paper
# The reference reports the epoch with the best clean test accuracy, which chooses an epoch with the
# test labels; vablib reports the final epoch first and the best-ACC epoch beside it
# ([docs/method.md](../docs/method.md), "Reporting the final epoch").

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-06
device: str = "auto"  # auto | cpu | cuda | mps

# %%
from IPython.display import Markdown, display

from vablib import pipeline, plots, runstate

run, trainer = runstate.resume_run(run_dir, device, progress=False, after=("suppress", "05_semi_supervised_suppression"))
summary = pipeline.summarize(trainer)

# %% [markdown]
# ## V&B against no defense and the other defenses

# %%
comparison = pipeline.comparison_frame(summary)
fig = plots.comparison_bars(comparison)
plots.save_figure(fig, run, "07_comparison")
display(comparison.pivot(index="model", columns="metric", values="value").round(3))
fig

# %% [markdown]
# ## Training and detection over the whole run

# %%
history = pipeline.history_frame(trainer)
fig = plots.training_curves(history, baseline=pipeline.baseline_metrics(run))
plots.save_figure(fig, run, "07_training_curves")
fig

# %%
fig = plots.detection_scorings(pipeline.scorings_frame(trainer))
plots.save_figure(fig, run, "07_detection_scorings")
fig

# %% [markdown]
# ## The report

# %%
text = pipeline.write_report(run, summary, ["07_comparison", "07_training_curves", "07_detection_scorings"])
Markdown(text)
