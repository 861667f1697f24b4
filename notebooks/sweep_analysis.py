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
# # Sweep analysis: many runs, one table
#
# A single run says little: the same attack and settings with another seed can move V&B's ACC by
# several points. `python -m vablib sweep GRID.yaml --out outputs/sweeps/NAME` runs the notebook
# series once for every point of a grid (attacks × poison rates × seeds × any notebook parameter),
# and `python -m vablib table outputs/sweeps/NAME` (also run at the end of every sweep) writes
# `runs.csv`, one row per run. This notebook reads that file and shows the spread over seeds.
# It is not part of the per-run series: `python -m vablib run` does not execute it.
#
# **How to read it.**
# - **ACC** is the accuracy on the clean test set; **ASR** the share of triggered non-target test
#   images classified as the target; **RA** the share of triggered images still classified
#   correctly. A defense works when its ACC is close to the no-defense model's, its ASR close to
#   zero (the clean floor's, where trained) and its RA high.
# - Each group is one setting of every axis but `seed`; **mean ± std** is over its runs (the sample
#   standard deviation), **n** the number of complete runs. With three seeds the std is rough: two
#   settings whose means differ by less than about one std are not told apart by the sweep.
# - **Detection** precision and recall compare V&B's suspicious set at the end with the true poison
#   mask, which V&B never sees.
# - In the figure a good defense sits at the top left; each mark is one run (one seed), so the
#   cloud of one model's marks is its spread over seeds.

# %% tags=["parameters"]
sweep_dir: str = "../outputs/sweeps/demo"  # the sweep's --out folder (holds runs.csv)

# %%
from IPython.display import Markdown

from vablib import table

runs = table.load_runs(sweep_dir)
by = table.group_columns(runs, sweep_dir)
print(f"{len(runs)} runs, {int(runs['complete'].sum())} complete; grouped by {by or 'nothing'} (all but seed)")
runs[["run", *by, "seed", "vab_acc", "vab_asr", "no_defense_acc", "no_defense_asr", "detection_recall"]]

# %% [markdown]
# ## The table
# The same table as `table.md` in the sweep folder: V&B next to no defense, in percent.

# %%
summary = table.aggregate(runs, by)
Markdown(table.markdown(summary, by, f"{len(runs)} runs"))

# %% [markdown]
# ## ACC against ASR
# One panel per attack; V&B, no defense, the clean floor (where trained) and notebook 06's other
# defenses, one mark per run.

# %%
fig = table.acc_asr_figure(runs)
fig

# %% [markdown]
# ## Every defense
# The same runs in long form (`defenses.csv`: one row per run and defense), so any grouping is one
# pandas call. The isolation columns are each defense's isolated set against the ground truth (V&B's
# suspicious set; ABL's isolated samples), for reporting only.

# %%
defense_rows = table.defense_frame(runs[runs["complete"]])
defense_rows.groupby([*by, "label"], sort=False)[["acc", "asr", "ra", "isolation_recall"]].agg(["mean", "std"]).round(3)

# %% [markdown]
# ## Each seed
# V&B's final ACC per group and seed: a seed that stands out in every group points at the data or
# the poisoned set it draws, one that stands out in a single group at that setting.

# %%
runs[runs["complete"]].pivot_table(index=by or None, columns="seed", values="vab_acc")

# %% [markdown]
# ## Where the time goes
# Mean seconds per phase over the complete runs (the no-defense and clean-floor models are trained
# once per data, attack, seed and budget, and shared by the points that differ only in V&B settings).

# %%
runs[runs["complete"]].filter(like="seconds_").mean().round(1).to_frame("mean seconds")
