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
# # 00 · Set-up and data
#
# This is the first notebook of the vablib series. It walks through the V&B defense ("The Victim
# and The Beneficiary", ICCV 2023) from a poisoned dataset to a clean model. Here you will:
#
# 1. choose the dataset, seed and device for the whole run, and record them in the run folder;
# 2. load the data into vablib's single in-memory form (uint8 images N×H×W×C, int64 labels);
# 3. look at a few images and at the class balance.
#
# Every notebook of the series reads and writes one **run folder** (`run_dir`). Running the series
# again on the same folder reuses what is there; asking for different parameters on the same
# folder is refused, so a folder never mixes two configurations.
#
# The default dataset is scikit-learn's bundled handwritten digits (1,797 images, upscaled to
# 32×32): it needs no download and trains in seconds on a CPU. For CIFAR-10 set
# `dataset = "cifar10"` and `data_root` to the folder that holds `cifar-10-batches-py`.

# %% [markdown]
# ## vablib and the paper
# Nothing of V&B runs here. The paper's experiments use CIFAR-10, ResNet-18 and 200 epochs on a
# GPU; the default here is the digits dataset, and notebook 01 picks a training budget (`paper`,
# `cpu` or `demo`) that scales the schedule to the machine: [docs/method.md](../docs/method.md),
# "The schedule as fractions of the E beneficiary epochs".

# %% tags=["parameters"]
run_dir: str = "../outputs/tutorial"  # the run folder shared by every notebook of the series
dataset: str = "digits"  # digits | cifar10 | gtsrb | mnist | fashion_mnist | npz | folder
data_root: str = "../data"  # folder of torchvision data / ImageFolder root / path of an .npz file
download: bool = False  # let torchvision download the dataset into data_root (needs internet)
train_size: int = None  # keep the first this many training images (e.g. 6000 of Fashion-MNIST); None: all
test_size: int = None  # keep the first this many test images; None: all
seed: int = 0  # seeds every random choice of the run
device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:1 | mps
progress: bool = True  # show progress bars

# %% [markdown]
# ## Configuration
# The next cell checks every parameter (a typo gives one clear error here, before any work),
# records them with library versions, device and git commit in `run_dir/config.json`, and seeds
# everything.

# %%
import vablib
from vablib import config, data, plots, runio, runstate, utils

cfg = config.SetupConfig(dataset=dataset, data_root=data_root, download=download, train_size=train_size,
                         test_size=test_size, seed=seed, device=device, progress=progress)
dev = cfg.torch_device
utils.set_cpu_threads()
utils.seed_everything(cfg.seed)
run = runstate.begin_stage("00_setup_and_data", run_dir, cfg, device=dev)
for name, version in utils.library_versions().items():
    print(f"{name:>12}: {version}")
print(f"{'device':>12}: {dev}")
print(f"{'run folder':>12}: {run.path.resolve()}")

# %% [markdown]
# ## Load the data
# `vablib.data.load_dataset` returns the same structure for every source. If a real dataset is
# missing, the error names the folder and how to obtain it; nothing is downloaded unless you set
# `download = True`.

# %%
ds = cfg.load_data()
summary = ds.summary()
runio.write_json(run.artifacts / "dataset.json", {**summary, "classes": list(ds.classes)})
summary

# %% [markdown]
# ## A look at the images
# Eight random training images per class. Poisoning attacks in the next notebook paste, blend or
# warp triggers into images like these.

# %%
fig = plots.samples_per_class(ds.x_train, ds.y_train, ds.classes, per_class=8, seed=cfg.seed)
plots.save_figure(fig, run, "00_samples")
fig

# %% [markdown]
# ## Class balance
# V&B's all-to-one attacks relabel poisoned images to one target class; a balanced dataset makes
# the target class's growth easy to see later.

# %%
counts = plots.class_counts(ds.y_train, ds.y_test, ds.classes)
fig = plots.class_balance(counts)
plots.save_figure(fig, run, "00_class_balance")
fig

# %% [markdown]
# ## What was written
# `config.json` (parameters, versions, device, commit), `artifacts/dataset.json` (sizes and a
# fingerprint of the arrays, so later notebooks can check they see the same data) and two figures.
# Next: **01_generate_poisoned_dataset**.

# %%
sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file())
