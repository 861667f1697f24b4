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
# # 05 · Semi-supervised suppression
#
# In the second half of the schedule the beneficiary also learns from the *suspicious* samples,
# without their labels. Each step takes a credible batch (labelled) and a suspicious batch
# (unlabelled):
#
# - the victim's prediction, softened with a temperature $T$, is $q = \mathrm{softmax}(z_{victim} / T)$;
# - suspicious samples get the beneficiary's own prediction (averaged over two augmented views,
#   sharpened to its arg-max) as a pseudo-label, minus $q$: $\mathrm{clip}(\hat y - q, 0, 1)$;
# - credible samples keep their labels and are mixed with AttentionMix;
# - loss = L_mix + λ·L_u, with λ = `lambda_u`, then `lambda_u_late` for the last quarter.
#
# The subtraction suppresses whatever class the victim is sure of: for poisoned samples that is the
# target class, so the backdoor is erased rather than learned. The victim keeps being re-trained
# and the split re-selected every epoch.

# %% [markdown]
# ## vablib and the paper
# Departures in this step, each a parameter of notebook 02 unless said; the measurement and the
# reference setting are in the named section of [docs/method.md](../docs/method.md):
# - credible samples keep their one-hot targets; the reference subtracts $q$ from them too
#   (`suppress_labelled`): "Suppression: credible samples keep their one-hot labels";
# - a pseudo-label counts only where the beneficiary is sure of it; the reference uses every one
#   (`pseudo_confidence`): "Suppression: only confident pseudo-labels count";
# - the pseudo-labels come from the training pass itself, not a separate one (no parameter):
#   "Suppression: pseudo-labels from the training pass";
# - on the short budgets the lr drops at the phase boundaries (`beneficiary_milestones`): "The
#   beneficiary's own lr and milestones on short budgets".

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-04
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # progress bars

# %%
import pandas as pd
import torch
import torch.nn.functional as F

from vablib import batches, pipeline, plots, runstate, suppression, training

run, trainer = runstate.resume_run(run_dir, device, progress, after=("mix", "04_beneficiary_attentionmix"))
print(f"suppression: epochs {trainer.schedule.mix_epochs + 1}-{trainer.train_cfg.epochs}; "
      f"{int(trainer.suspicious.sum())} suspicious samples used without labels")

# %% [markdown]
# ## One suspicious sample's target
# A poisoned sample of the suspicious set (we pick it with the ground truth, which training never
# sees): the beneficiary's pseudo-label $\hat y$, the victim's softened prediction $q$, and the
# target $\mathrm{clip}(\hat y - q, 0, 1)$ the beneficiary trains towards: the victim's confidence
# is taken off the class the beneficiary would pick. Where the beneficiary is less sure than
# `pseudo_confidence`, the target is all zero (no loss); the last bars show the reference's target,
# which keeps every sample. With `suppress_labelled=True`, `suppression.labelled_targets` does the
# same to a credible sample's one-hot label.

# %%
caught = torch.nonzero(trainer.suspicious & trainer.poisoned).flatten()
raw = trainer.x[caught[:1] if len(caught) else torch.nonzero(trainer.suspicious).flatten()[:1]]
q = suppression.victim_soft_predictions(training.predict_logits(trainer.victim.model, raw, trainer.normalize),
                                        trainer.vab_cfg.temperature)
gen = torch.Generator().manual_seed(0)
p1, p2 = (training.predict_logits(trainer.beneficiary, batches.random_crop_flip(raw, gen), trainer.normalize)
          .softmax(1) for _ in range(2))  # two augmented views (eval mode here)
mean = (p1 + p2) / 2
pseudo = F.one_hot(mean.argmax(1), trainer.num_classes).float()
conf = trainer.vab_cfg.pseudo_confidence
bars = pd.DataFrame({"pseudo-label": pseudo[0].cpu(), f"victim's q (T={trainer.vab_cfg.temperature:g})": q[0].cpu(),
                     f"target (pseudo_confidence {conf:g})": suppression.pseudo_targets(p1, p2, q, conf)[0].cpu(),
                     "target (pseudo_confidence 0, the reference)": suppression.pseudo_targets(p1, p2, q, 0.0)[0].cpu()})
ax = bars.plot.bar(figsize=(9, 2.5), xlabel="class", rot=0)
ax.legend(loc="upper left", bbox_to_anchor=(1, 1))
plots.save_figure(ax.figure, run, "05_suppression_target")
print(f"the beneficiary's confidence in its pseudo-label: {float(mean.max()):.2f}")

# %% [markdown]
# ## Train

# %%
trainer.run_phase("suppress")
history = pipeline.history_frame(trainer)
history[["epoch", "phase", "loss", "lambda_u", "acc", "asr", "ra", "recall"]].tail(10)

# %% [markdown]
# ## The whole schedule
# The dotted line marks the start of suppression.

# %%
fig = plots.training_curves(history, baseline=pipeline.baseline_metrics(run))
plots.save_figure(fig, run, "05_training_curves")
fig

# %% [markdown]
# ## Which classes pay for it
# The mean ACC can hide one class falling away. Suppression subtracts the victim's prediction, and a
# victim trained only on target-labelled images tends to predict the target for everything: watch
# the target class's row in the suppression epochs (`suppress_labelled` and `pseudo_confidence` in
# notebook 02 are the knobs).

# %%
fig = plots.class_accuracy(pipeline.class_accuracy_frame(trainer))
plots.save_figure(fig, run, "05_class_accuracy")
fig

# %% [markdown]
# ## Detection quality during training

# %%
fig = plots.training_curves(history, metrics=("precision", "recall", "fpr", "auroc"))
plots.save_figure(fig, run, "05_detection_per_epoch")
fig

# %% [markdown]
# ## Summary
# `summary.json` holds the final values, those at the best-ACC epoch, the no-defense baseline,
# detection figures and seconds per phase.

# %%
summary = pipeline.summarize(trainer)
{k: summary[k] for k in ("final", "best_acc_epoch", "no_defense", "seconds_per_phase")}

# %% [markdown]
# Next: **06_defense_comparison**, other defenses on the same data, then **07_evaluation_report**.
