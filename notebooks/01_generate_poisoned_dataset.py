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
# # 01 · Generate a poisoned dataset
#
# V&B defends against **poisoning backdoor attacks**: an attacker hides a trigger in a small share
# of the training images and (for *dirty-label* attacks) relabels them to a target class. A model
# trained on that set classifies clean images normally but predicts the target class whenever the
# trigger is present. This notebook plays the attacker:
#
# 1. choose one of six attacks of the paper (or write your own trigger in a cell);
# 2. poison the training set of the run and build the triggered test set that measures the attack;
# 3. look at clean, poisoned and difference images, and at what changed;
# 4. check that the attack works: train an undefended model (the **no-defense baseline**) with the
#    same budget the V&B beneficiary will get, and measure ACC, ASR and RA.
#
# | attack | kind | what it does |
# |---|---|---|
# | `badnets` | dirty label | pastes a small patch |
# | `blended` | dirty label | blends a fixed image into the picture |
# | `sig` | clean label | adds a faint horizontal sinusoid to target-class images |
# | `cl` | clean label | makes target-class images hard with an adversarial perturbation, then adds corner patches |
# | `wanet` | dirty label | warps the image with a smooth random field |
# | `iad` | dirty label | a trained generator makes a different trigger for every image |
#
# Clean-label attacks never change a label; their `poison_rate` counts against the target class
# (the SIG reference poisons 10 % of it). Dirty-label rates count against the whole training set.

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder of notebook 00
attack: str = "badnets"  # badnets | blended | sig | cl | wanet | iad | a name registered below or in attack_file
attack_file: str = None  # a .py file that registers attacks with attacks.custom_attack; None: none
poison_rate: float = 0.1  # share of the training set (dirty label) or of the target class (clean label)
target_label: int = 0  # the class the backdoor points to
attack_mode: str = "all2one"  # all2one | all2all (label y → (y + 1) mod K)
attack_budget: str = "cpu"  # cpu | paper: how long CL's clean model and IAD's generator train
attack_params: dict = {}  # overrides of the attack's settings, e.g. {"patch_size": 3, "location": "bottom_right"}
profile: str = "auto"  # training budget: auto (paper on CUDA, cpu elsewhere) | paper | cpu | demo
model: str = None  # classifier (resnet18, preact_resnet18, wrn16_4, convnet ...); None for the profile's
width: float = None  # channel width multiplier; None for the profile's
epochs: int = None  # training epochs; None for the profile's
batch_size: int = None  # batch size; None for the profile's
train_baseline: bool = True  # train the no-defense baseline (does the attack work?)
train_clean_floor: bool = False  # also train the same budget on the clean data
cache_dir: str = None  # where runs with the same data, attack, seed and budget share this notebook's work; None: none
device: str = "auto"  # auto | cpu | cuda | mps
progress: bool = True  # show progress bars
interactive: bool = True  # an attack picker for the gallery (needs Jupyter widgets)
preview_all: bool = True  # a gallery of all six attacks (CL and IAD train tiny models for it: ~20 s on a CPU)

# %% [markdown]
# ## Set-up
# The dataset and seed come from notebook 00 (recorded in `config.json`); the data loaded now must
# have the fingerprint 00 recorded, so this notebook never poisons other data than the run's.

# %%
import numpy as np
import pandas as pd

import vablib
from vablib import attacks, baseline, config, plots, runio, runstate, shared, utils

run = runio.RunDir(run_dir)
setup = runstate.recorded_setup(run)
dev = utils.get_device(device)
utils.set_cpu_threads()
ds = attacks.recorded_dataset(run)
print(f"vablib {vablib.__version__} · torch {utils.library_versions()['torch']} · device {dev}")
print(f"dataset {ds.name}: {len(ds.y_train)} train / {len(ds.y_test)} test images of shape {ds.image_shape}, "
      f"seed {setup.seed}")

# %% [markdown]
# ## Your own attack in one call
# A trigger is just a function from a uint8 batch (N×H×W×C) to a uint8 batch of the same shape.
# `attacks.custom_attack(name, fn)` turns it into an attack (dirty label; pass `clean_label=True`
# for a clean-label one) that every later step accepts like a built-in: set `attack = "corner_cross"`
# in the parameters to run the whole series with it. The example draws a small white plus sign near
# the top-right corner; write the function for a whole batch at once (NumPy slicing), not per image.
# The same call in a `.py` file, given as `attack_file`, adds an attack to a batch run or a sweep
# without editing this notebook (`python -m vablib run -p attack_file my_trigger.py -p attack my_trigger`).

# %%
def corner_cross(x: np.ndarray) -> np.ndarray:
    """A white 5×5 plus sign near the top-right corner."""
    out = x.copy()
    w = out.shape[2]
    out[:, 1:6, w - 4, :] = 255
    out[:, 3, w - 6:w - 1, :] = 255
    return out


attacks.custom_attack("corner_cross", corner_cross)
fig = attacks.attack_gallery(ds.x_train[:6], corner_cross(ds.x_train[:6]), title="corner_cross: a custom attack")
fig

# %% [markdown]
# ## Configuration
# `AttackConfig` checks every attack setting (an unknown name or key gives one error listing the
# known ones); `TrainConfig` is the training budget that the no-defense baseline here and the V&B
# beneficiary later share. Both are recorded in `config.json`, with the content hash of the
# `attack_file` if one is given (it is loaded first, so its attacks are known). Below: every setting
# of the chosen attack, the reference defaults with your overrides applied.

# %%
attack_source = shared.load_attack_file(attack_file)  # {} without a file
attack_cfg = attacks.AttackConfig(attack=attack, poison_rate=poison_rate, target_label=target_label,
                                  attack_mode=attack_mode, attack_budget=attack_budget, attack_params=attack_params)
profile_name = config.resolve_profile(profile, dev)  # recorded: notebook 02 starts from its V&B settings
train_cfg = config.TrainConfig.from_profile(profile_name, model=model, width=width, epochs=epochs,
                                            batch_size=batch_size)
run = runstate.begin_stage("01_generate_poisoned_dataset", run_dir, attack_cfg, train_cfg,
                           {"profile": profile_name, **attack_source}, device=dev)
pd.DataFrame({"setting": list(attack_cfg.params()), "value": [str(v) for v in attack_cfg.params().values()]})

# %% [markdown]
# ## Poison the training set
# `generate` draws the poisoned samples with the run's seed (the same seed gives the same indices
# and images), applies the trigger, relabels (dirty label only), adds WaNet's noise or IAD's cross
# samples (changed images that keep their labels, so the model learns the trigger and nothing
# looser), and builds the triggered test set: the non-target test images with the trigger. CL and
# IAD train a model first; it is cached in the run folder. With a `cache_dir` (a sweep sets one for
# all its points), a run with the same data, attack, seed and budget may already have done this and
# trained the baselines below: its files are linked into this run folder instead.

# %%
cache = shared.WorkCache.for_run(cache_dir, ds, attack_cfg, setup.seed, train_cfg, attack_source)
if cache.fetch(run):
    data = attacks.PoisonedData.load(run)
else:
    data = attacks.generate(ds, attack_cfg, setup.seed, device=dev, run=run, progress=progress)
    data.manifest.update(attack_source)
    data.save(run)
pd.Series(attacks.poison_summary(data), name=attack_cfg.attack).to_frame()

# %% [markdown]
# ## What the trigger looks like
# Top: clean training images; middle: the same images poisoned; bottom: the pixel difference,
# amplified five times so faint triggers (SIG, WaNet, IAD) become visible.

# %%
clean, poisoned = attacks.poisoned_examples(data, 8)
fig = attacks.attack_gallery(clean, poisoned, title=f"{attack_cfg.attack}: clean / poisoned / |difference|×5")
plots.save_figure(fig, run, "01_gallery")
fig

# %% [markdown]
# ## All six attacks side by side
# One row per attack, made on a small subset with the reference settings. CL and IAD train a tiny
# model for this preview only, so their rows show the kind of trigger, not its final strength.
# With `interactive = True` a picker shows any attack in the three-row layout above;
# `preview_all = False` skips the preview (a sweep does, unless its grid sets it).

# %%
if preview_all:
    examples = attacks.preview(ds, attacks.ATTACKS, n=4, target_label=attack_cfg.target_label, seed=setup.seed,
                               device=dev)
    examples[attack_cfg.attack] = (clean[:4], poisoned[:4])
    fig = attacks.overview_gallery(examples)
    plots.save_figure(fig, run, "01_all_attacks")
    if interactive:
        attacks.interactive_gallery(examples)
    display(fig)  # noqa: F821 (IPython's display)

# %% [markdown]
# ## Poison statistics
# Per class: how many images were poisoned (by original class), how many are noise/cross samples,
# and the label counts before and after poisoning. An all-to-one dirty-label attack grows the
# target class; a clean-label attack leaves every count as it was.

# %%
attacks.poison_table(data)

# %%
fig = attacks.label_shift_figure(data)
plots.save_figure(fig, run, "01_label_shift")
fig

# %% [markdown]
# ## The artifact
# `artifacts/poisoned.npz` holds the poisoned training images and labels, the original labels, the
# masks of poisoned and noise/cross samples, the clean test set and the triggered test set (with
# target and true labels); `artifacts/poisoned_manifest.json` records the attack, its settings, the
# seed, the indices and the fingerprint of the clean data. Notebooks 02-06 read both.

# %%
keys = ("attack", "poison_rate", "rate_base", "n_poison", "n_noise", "target_label", "attack_mode", "seed",
        "fingerprint", "content_hash")
pd.Series({k: data.manifest[k] for k in keys}, name="manifest").to_frame()

# %% [markdown]
# ## Does the attack work?
# The **no-defense baseline** trains the classifier on the poisoned set with the same budget as the
# V&B beneficiary. A working attack gives a high ASR (triggered non-target images classified as the
# target) at a normal clean accuracy; RA is the share of triggered images still classified
# correctly. The optional **clean floor** trains on the unpoisoned data: the accuracy a defense can
# hope for. Results go to `artifacts/baseline.json` and `clean_floor.json` and are reused when this
# notebook runs again with the same data and budget.

# %%
results = {}
if train_baseline:
    results["no defense"] = baseline.no_defense_baseline(data, train_cfg, dev, setup.seed, run=run, progress=progress)
if train_clean_floor:
    results["clean floor"] = baseline.clean_floor(data, train_cfg, dev, setup.seed, run=run, progress=progress)
cache.publish(run)  # what later runs with the same data, attack, seed and budget can reuse
pd.DataFrame({name: {k: r[k] for k in ("acc", "asr", "ra", "epochs", "seconds")} for name, r in results.items()}).T

# %%
if "no defense" in results:
    fig = plots.training_curves(baseline.history_frame(results["no defense"]))
    plots.save_figure(fig, run, "01_baseline_curves")
    display(fig)  # noqa: F821 (IPython's display)

# %% [markdown]
# ## What was written
# Next: **02_victim_warmup_and_entropy**, which starts the defense on this poisoned set.

# %%
sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file() and "notebooks" not in p.parts)
