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
# # 06 · Other defenses on the same poisoned data
#
# V&B trains a clean model on poisoned data, but better than what? This notebook trains other
# training-time defenses on the run's poisoned training set, with the run's model, budget and
# seed, and scores every one with the same ACC / ASR / RA code. A defense never sees which samples
# are poisoned; where it isolates samples, the ground truth only scores its isolated set.
#
# Built in: `none` (no defense, notebook 01's model), `clean_floor` (an oracle reference: the
# same budget on the clean data, not a defense) and **ABL**, Anti-Backdoor Learning (Li et al.,
# NeurIPS 2021):
# 1. a fresh model trains on everything with the loss $\mathrm{sign}(CE - \gamma)\cdot CE$: it
#    descends while the batch loss is above $\gamma$ and ascends below it, so the loss hovers at
#    $\gamma$ and only what is learned fastest, the trigger, reaches a clearly lower loss;
# 2. the `isolation_ratio` of samples with the lowest loss is isolated;
# 3. the same model fine-tunes on the rest with plain cross entropy;
# 4. it then *unlearns* the isolated samples by gradient ascent on their cross entropy.
#
# Results are kept in the run folder (`artifacts/defenses/`), keyed by the data, budget, seed,
# settings and the defense's code: a rerun reuses them.

# %% [markdown]
# ## vablib and the paper
# ABL's settings default to its authors' code: $\gamma = 0.5$, isolation ratio 1%, SGD with
# Nesterov momentum and weight decay $10^{-4}$, lr 0.1 for isolation and fine-tuning (×0.1 at
# two thirds), $5\cdot10^{-4}$ for unlearning. The three phases take 20% / 60% / 20% of the run's
# epochs (the paper's 20 / 60 / 20 of 100); `abl={"schedule": "reference"}` runs those epochs
# as they are. ABL's model is the run's (the reference uses WRN-16-1). See
# [docs/method.md](../docs/method.md), "ABL".

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebooks 00-05
device: str = "auto"  # auto | cpu | cuda | mps
defenses: list = ["none", "abl"]  # compared with V&B: none | clean_floor | abl | a name registered below or in defense_file
abl: dict = None  # ABL settings over vablib.abl.AblConfig's defaults, e.g. {"isolation_ratio": 0.05}; None: the defaults
defense_file: str = None  # a .py file that registers defenses with defenses.custom_defense; None: none
progress: bool = True  # progress bars

# %%
import torch
import torch.nn.functional as F
from IPython.display import display

from vablib import abl as abl_method
from vablib import defenses as registry
from vablib import pipeline, plots, runstate
from vablib.models import build_model
from vablib.training import train_classifier

registry.load_defense_file(defense_file)  # registers the file's defenses, so their names are known

# %% [markdown]
# ## Your own defense in one cell
# A function of the poisoned training set (`training_set.x`, `.y`, `.num_classes`, never the
# poison mask), the run's `TrainConfig`, the device and the seed that returns a model, or a model
# and the boolean mask of the samples it isolated. Registered, it joins `defenses` like a
# built-in; this example (not a defense: the budget on the first half of the data) trains only
# when `defenses` lists it. The same lines in a `.py` file, given as `defense_file`, add a defense
# to a batch run or a sweep.

# %%
def train_on_half(training_set, train_cfg, device, seed):
    """The run's budget on the first half of the poisoned training set."""
    half = len(training_set.y) // 2
    model, _ = train_classifier(training_set.x[:half], training_set.y[:half], None, train_cfg, device, seed,
                                training_set.num_classes, training_set.dataset_name, progress=False)
    return model


registry.custom_defense("train_on_half", train_on_half)

# %% [markdown]
# ## The run and the settings

# %%
names = registry.check_defenses(defenses)
abl_cfg = abl_method.AblConfig.from_params(abl)
run, trainer = runstate.resume_run(run_dir, device, progress, after=("suppress", "05_semi_supervised_suppression"))
summary = pipeline.summarize(trainer)  # V&B's figures, read by the comparison
print(f"V&B and {', '.join(names)} on {len(trainer.data.y_train)} poisoned training images; ABL's epochs "
      f"(isolation, fine-tuning, unlearning): {abl_cfg.epochs(trainer.train_cfg.epochs)}")

# %% [markdown]
# ## ABL's loss floor on one batch
# One batch of the poisoned set, under a fresh model and under V&B's trained beneficiary. The fresh
# model's loss is above $\gamma$: LGA's gradient is the cross entropy's and the step descends. The
# trained model's loss is below $\gamma$: the sign flips and the same step *ascends*, pushing the
# loss back up to the floor.

# %%
x, y = trainer.x[:128], trainer.y[:128]
fresh = build_model(trainer.train_cfg.model, trainer.num_classes, x.shape[1], trainer.train_cfg.width).to(trainer.device)
for name, model in (("fresh model", fresh), ("trained beneficiary", trainer.beneficiary)):
    model.eval()
    logits = model(trainer.normalize(x)).float().detach().requires_grad_(True)
    ce = F.cross_entropy(logits, y)
    (g_ce,) = torch.autograd.grad(ce, logits)
    (g_lga,) = torch.autograd.grad(abl_method.lga_loss(logits, y, abl_cfg.gamma), logits)
    direction = "descends" if torch.allclose(g_lga, g_ce) else "ascends"
    print(f"{name}: batch CE {float(ce):.3f} vs γ = {abl_cfg.gamma}: the LGA step {direction}")

# %% [markdown]
# ## Train and score every defense

# %%
results = registry.compare(names, trainer.data, trainer.train_cfg, trainer.device, trainer.seed, run,
                           settings={"abl": abl}, progress=progress)
frame = registry.comparison_frame(results)
display(frame.pivot(index="defense", columns="metric", values="value").round(3))

# %%
fig = plots.comparison_bars(frame[frame.metric.isin(["ACC", "ASR", "RA"])].rename(columns={"defense": "model"}))
plots.save_figure(fig, run, "06_defenses")
fig

# %% [markdown]
# ## Per-class accuracy
# A defense can give up one class, often the target, while the mean ACC hides it.

# %%
fig = plots.class_accuracy(registry.class_accuracy_frame(results, pipeline.class_names(trainer)), columns="defense")
plots.save_figure(fig, run, "06_defense_classes")
fig

# %% [markdown]
# ## What each defense isolated
# Precision and recall of each isolated set against the ground truth (V&B: its final suspicious
# set; ABL: the samples it unlearned). A defense without an isolated set has no row.

# %%
display(frame[frame.metric.str.startswith("isolation")].pivot(index="defense", columns="metric", values="value").round(3))

# %% [markdown]
# Next: **07_evaluation_report**, which puts every defense in the report's table.
