"""Figures: functions that take arrays or tidy DataFrames and return a matplotlib Figure.
They never call plt.show(); notebooks display and `save_figure` writes them to the run folder."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .detection import CLEAR_SEPARATION, MIN_VOTE_SHARE

_THEMED = False


def theme() -> None:
    """Set the seaborn theme once for every vablib figure."""
    global _THEMED
    if not _THEMED:
        sns.set_theme(style="whitegrid", context="notebook")
        _THEMED = True


def save_figure(fig, run_or_dir, name: str) -> Path:
    """Save as PNG under <run>/figures/<name>.png (atomically) and return the path."""
    import io

    from .runio import atomic_write_bytes

    folder = run_or_dir.figures if hasattr(run_or_dir, "figures") else Path(run_or_dir)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(folder / f"{name}.png", buf.getvalue())


def _show_image(ax, img: np.ndarray) -> None:
    img = np.asarray(img)
    if img.shape[-1] == 1:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(img)
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(images: np.ndarray, titles=None, ncols: int = 8, size: float = 1.3, suptitle: str | None = None):
    """A grid of uint8 H×W×C images with optional titles."""
    theme()
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _show_image(ax, images[i])
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def samples_per_class(x: np.ndarray, y: np.ndarray, classes, per_class: int = 8, seed: int = 0):
    """`per_class` random training images of every class, one row per class."""
    rng = np.random.default_rng(seed)
    picks, titles = [], []
    for k, name in enumerate(classes):
        idx = np.flatnonzero(y == k)
        chosen = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j in range(per_class):
            picks.append(x[chosen[j]] if j < len(chosen) else np.zeros_like(x[0]))
            titles.append(name if j == 0 else "")
    return image_grid(np.stack(picks), titles, ncols=per_class)


def class_balance(df: pd.DataFrame):
    """Bar chart of a tidy frame with columns class, split, count."""
    theme()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * df["class"].nunique() + 3), 3.2))
    sns.barplot(data=df, x="class", y="count", hue="split", ax=ax)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.tick_params(axis="x", rotation=45 if df["class"].astype(str).str.len().max() > 3 else 0)
    fig.tight_layout()
    return fig


def class_counts(y_train: np.ndarray, y_test: np.ndarray, classes) -> pd.DataFrame:
    """Tidy per-class counts for `class_balance`."""
    rows = []
    for split, y in (("train", y_train), ("test", y_test)):
        counts = np.bincount(y, minlength=len(classes))
        rows += [{"class": classes[k], "split": split, "count": int(c)} for k, c in enumerate(counts)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- V&B figures

def entropy_histogram(df: pd.DataFrame, threshold: float | None = None, column: str = "log10_entropy"):
    """Histogram of per-sample scores by ground truth (columns: `column`, kind ∈ clean/poisoned),
    with an optional vertical threshold line."""
    theme()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    sns.histplot(data=df, x=column, hue="kind", bins=60, stat="density", common_norm=False, element="step", ax=ax,
                 palette={"clean": "tab:blue", "poisoned": "tab:red"})
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1)
    ax.set_xlabel(column.replace("_", " "))
    fig.tight_layout()
    return fig


def detection_scorings(df: pd.DataFrame):
    """Split quality after each scoring (columns: scoring, precision, recall, fpr, auroc)."""
    theme()
    long = df.melt(id_vars="scoring", value_vars=[c for c in ("precision", "recall", "fpr", "auroc") if c in df],
                   var_name="metric", value_name="value")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.lineplot(data=long, x="scoring", y="value", hue="metric", marker="o", ax=ax)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("scoring")
    fig.tight_layout()
    return fig


def detection_confidence(df: pd.DataFrame, clear: float = CLEAR_SEPARATION, min_share: float = MIN_VOTE_SHARE):
    """What the defender sees without the ground truth, after each scoring (columns: scoring,
    split_separation, and separation / target_margin / vote_share / target_share where recorded):
    how clearly the split's scores fall into two modes (Ashman's D) and, with the target votes, the
    most-voted label's share of them and the named target's share of the victim's set, each with
    the line below which the kit warns (and, for the votes, names no target)."""
    theme()
    cols = [c for c in ("split_separation", "separation", "target_margin") if c in df]
    shares = [c for c in ("vote_share", "target_share") if c in df and df[c].notna().any()]
    fig, axes = plt.subplots(1, 2 if shares else 1, figsize=(11 if shares else 7, 3.2), squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1]} if shares else None)
    ax = axes[0, 0]
    long = df.melt(id_vars="scoring", value_vars=cols, var_name="measure", value_name="D")
    sns.lineplot(data=long, x="scoring", y="D", hue="measure", marker="o", ax=ax)
    ax.axhline(clear, color="black", ls="--", lw=1)
    ax.text(ax.get_xlim()[0], clear, " low confidence below", va="bottom", fontsize=8)
    ax.set_ylabel("separation (Ashman's D)")
    if shares:
        ax = axes[0, 1]
        long = df.melt(id_vars="scoring", value_vars=shares, var_name="share of", value_name="share")
        sns.lineplot(data=long, x="scoring", y="share", hue="share of", marker="o", ax=ax)
        ax.axhline(min_share, color="black", ls="--", lw=1)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share")
    fig.tight_layout()
    return fig


def training_curves(df: pd.DataFrame, metrics=("acc", "asr", "ra"), baseline: dict | None = None):
    """Per-epoch curves from metrics.jsonl rows; dashed lines show the no-defense baseline."""
    theme()
    long = df.melt(id_vars=["epoch"], value_vars=[m for m in metrics if m in df], var_name="metric", value_name="value")
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    sns.lineplot(data=long, x="epoch", y="value", hue="metric", ax=ax)
    if "phase" in df and (df["phase"] == "suppress").any():
        ax.axvline(df.loc[df["phase"] == "suppress", "epoch"].min() - 0.5, color="grey", ls=":", lw=1)
        ax.text(df.loc[df["phase"] == "suppress", "epoch"].min(), 1.01, "suppression", fontsize=8, color="grey")
    palette = dict(zip(long["metric"].unique(), sns.color_palette()))
    for m, v in (baseline or {}).items():
        if m in palette and v is not None:
            ax.axhline(v, color=palette[m], ls="--", lw=1, alpha=0.7)
    ax.set_ylim(-0.02, 1.05)
    fig.tight_layout()
    return fig


def class_accuracy(df: pd.DataFrame, columns: str = "epoch"):
    """Heatmap of per-class test accuracy (columns: class, acc and `columns`, e.g. epoch or
    defense): shows a class that a defense sacrifices, which the mean ACC hides."""
    theme()
    grid = df.pivot(index="class", columns=columns, values="acc").reindex(df["class"].unique())
    grid = grid[list(dict.fromkeys(df[columns]))]  # columns in the frame's order
    fig, ax = plt.subplots(figsize=(min(14, 2.5 + 0.22 * grid.shape[1]), 0.9 + 0.3 * grid.shape[0]))
    sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": "test accuracy"}, ax=ax)
    ax.set_xlabel(columns)
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


def attention_mix_examples(images: np.ndarray, attention: np.ndarray, mixed: np.ndarray, titles=None):
    """Rows: image, attention map, mixed image (images uint8 H×W×C, attention H×W in [0, 1])."""
    theme()
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n, 4.8), squeeze=False)
    for i in range(n):
        _show_image(axes[0, i], images[i])
        axes[1, i].imshow(attention[i], cmap="magma", vmin=0, vmax=1)
        axes[1, i].set_xticks([])
        axes[1, i].set_yticks([])
        _show_image(axes[2, i], mixed[i])
        if titles is not None:
            axes[0, i].set_title(str(titles[i]), fontsize=8)
    for row, name in enumerate(("image", "attention", "mixed")):
        axes[row, 0].set_ylabel(name)
    fig.tight_layout()
    return fig


def comparison_bars(df: pd.DataFrame):
    """Grouped bars: columns model, metric, value (e.g. V&B vs no defense vs clean floor)."""
    theme()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    sns.barplot(data=df, x="metric", y="value", hue="model", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7)
    ax.set_ylim(0, 1.1)
    fig.tight_layout()
    return fig
