"""What notebooks 02-06 show and write: tidy frames of a `VabTrainer`'s state for the figures,
and the run's outputs (`summarize` → summary.json, `write_report` → report.md). The trainer itself
comes from `vablib.runstate.resume_run`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from . import runio
from .attentionmix import attention_maps, attention_mix
from .defenses import other_results
from .errors import DataNotFoundError
from .vab import PHASES, VabTrainer


# ---------------------------------------------------------------- tidy data for figures

def entropy_frame(trainer: VabTrainer) -> pd.DataFrame:
    """One row per training sample: smoothed entropy, its log10, min-max normalised score,
    ground truth (for the reader only) and the current split."""
    ema = trainer.tracker.ema.double().cpu().numpy()
    return pd.DataFrame({
        "entropy": ema,
        "log10_entropy": np.log10(np.clip(ema, 1e-30, None)),
        "normalized": trainer.tracker.normalized.cpu().numpy(),
        "kind": np.where(trainer.poisoned.cpu().numpy(), "poisoned", "clean"),
        "suspicious": trainer.suspicious.cpu().numpy(),
    })


def threshold_quality(frame: pd.DataFrame, threshold: float) -> dict:
    """Precision/recall/FPR if the split were 'normalised score ≤ threshold' (for the slider)."""
    from .metrics import detection_metrics

    flagged = torch.as_tensor(frame["normalized"].to_numpy() <= threshold)
    return detection_metrics(flagged, torch.as_tensor(frame["kind"].to_numpy() == "poisoned"))


@torch.no_grad()
def attention_examples(trainer: VabTrainer, n: int = 8, seed: int = 0):
    """n credible training images, the beneficiary's attention maps, and their AttentionMix
    (mixed in pixel space so the figure shows real images)."""
    gen = torch.Generator().manual_seed(seed)
    credible = torch.nonzero(~trainer.suspicious).flatten().cpu()
    pick = credible[torch.randperm(len(credible), generator=gen)[:n]].to(trainer.device)
    raw = trainer.x[pick]
    feats = trainer.attention_features(trainer.normalize(raw))
    att = attention_maps(feats, raw.shape[-2:])
    targets = torch.nn.functional.one_hot(trainer.y[pick], trainer.num_classes).float()
    perm = torch.randperm(len(pick), generator=gen).to(trainer.device)
    mixed, mixed_t, info = attention_mix(raw.float(), targets, feats, perm, trainer.vab_cfg.attention_threshold)
    to_hwc = lambda t: t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
    titles = [f"{int(a)}+{int(b)} w={float(w):.2f}" for a, b, w in
              zip(trainer.y[pick].cpu(), trainer.y[pick][perm].cpu(), info["w"].cpu())]
    return to_hwc(raw.float()), att[:, 0].cpu().numpy(), to_hwc(mixed), titles


# ---------------------------------------------------------------- summary and report

def _optional_json(run, name: str) -> dict | None:
    path = run.artifacts / name
    return runio.read_json(path) if path.exists() else None


def summarize(trainer: VabTrainer) -> dict:
    """summary.json: final and best-ACC-epoch values, the baseline's figures, detection quality
    and seconds per phase. Written atomically to the run folder."""
    rows = trainer.history()
    if not rows:
        raise DataNotFoundError(f"{trainer.run.path}/metrics.jsonl is empty: run notebooks 04 and 05 first.")
    keys = ("acc", "asr", "ra", "class_acc", "precision", "recall", "fpr", "f1", "auroc", "n_suspicious", "n_credible",
            "inferred_target", "split_separation", "vote_share", "target_share", "target_leads",
            "low_confidence", "low_reasons")
    final = rows[-1]
    best = max(rows, key=lambda r: (r["acc"], -r["epoch"]))
    summary = {
        "epochs_done": trainer.epoch,
        "epochs_planned": trainer.train_cfg.epochs,
        "complete": trainer.epoch == trainer.train_cfg.epochs and "suppress" in trainer.phases_done,
        "final": {k: final.get(k) for k in ("epoch", *keys)},
        "best_acc_epoch": {k: best.get(k) for k in ("epoch", *keys)},
        "no_defense": _optional_json(trainer.run, "baseline.json"),
        "clean_floor": _optional_json(trainer.run, "clean_floor.json"),
        "defenses": other_results(trainer.run.path),
        "detection_scorings": trainer.scorings,
        "seconds_per_phase": trainer.timings,
        "split_mode": trainer.vab_cfg.split,
        "config": {"train": dataclasses.asdict(trainer.train_cfg), "vab": dataclasses.asdict(trainer.vab_cfg),
                   "attack": trainer.data.manifest.get("attack"), "seed": trainer.seed,
                   "target_label": target_label(trainer)},
    }
    runio.write_json(trainer.run.path / "summary.json", summary)
    return summary


def comparison_frame(summary: dict) -> pd.DataFrame:
    """Tidy ACC/ASR/RA rows for V&B (final), no defense, the clean floor and notebook 06's other
    defenses, where available."""
    rows = []
    models = [("V&B", summary["final"]), ("no defense", summary.get("no_defense")),
              ("clean floor", summary.get("clean_floor"))] + [(r["label"], r) for r in summary.get("defenses") or []]
    for name, values in models:
        for metric in ("acc", "asr", "ra"):
            if values and values.get(metric) is not None:
                rows.append({"model": name, "metric": metric.upper(), "value": float(values[metric])})
    return pd.DataFrame(rows)


def write_report(run, summary: dict, figures: list[str]) -> str:
    """A markdown report of the run in run_dir/report.md; returns its text."""
    f, b = summary["final"], summary["best_acc_epoch"]
    nd, cf = summary.get("no_defense") or {}, summary.get("clean_floor") or {}
    pct = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    cfg = summary["config"]
    lines = [
        f"# V&B report: {cfg['attack']} on {run.params().get('dataset')}",
        "",
        f"Beneficiary {cfg['train']['model']} (width {cfg['train']['width']}), {summary['epochs_done']}/"
        f"{summary['epochs_planned']} epochs, split mode `{summary['split_mode']}`, seed {cfg['seed']}.",
        "",
        "| model | ACC | ASR | RA |",
        "|---|---|---|---|",
        f"| V&B (final, epoch {f['epoch']}) | {pct(f['acc'])} | {pct(f['asr'])} | {pct(f['ra'])} |",
        f"| V&B (best ACC, epoch {b['epoch']}) | {pct(b['acc'])} | {pct(b['asr'])} | {pct(b['ra'])} |",
        f"| no defense | {pct(nd.get('acc'))} | {pct(nd.get('asr'))} | {pct(nd.get('ra'))} |",
        f"| clean model (ASR floor) | {pct(cf.get('acc'))} | {pct(cf.get('asr'))} | {pct(cf.get('ra'))} |",
        *[f"| {r['label']} | {pct(r['acc'])} | {pct(r['asr'])} | {pct(r['ra'])} |" for r in summary.get("defenses") or []],
        "",
        *_isolation_lines(summary),
        "Detection at the end (suspicious set vs the true poison mask): "
        f"precision {f['precision']:.3f}, recall {f['recall']:.3f}, FPR {f['fpr']:.3f}, F1 {f['f1']:.3f}, "
        f"AUROC {f['auroc']:.3f}; {f['n_suspicious']} suspicious / {f['n_credible']} credible.",
        "",
        _target_class_line(summary),
        "",
        _confidence_line(summary),
        "",
        "Seconds per phase: " + ", ".join(f"{p} {summary['seconds_per_phase'].get(p, 0):.0f}" for p in PHASES) + ".",
        "",
    ] + [f"![{name}](figures/{name}.png)" for name in figures]
    text = "\n".join(lines) + "\n"
    runio.atomic_write_bytes(run.path / "report.md", text.encode())
    return text


def _isolation_lines(summary: dict) -> list[str]:
    isolating = [r for r in summary.get("defenses") or [] if r.get("isolation")]
    return [f"{r['label']} isolated {r['isolation']['n_isolated']} samples: precision "
            f"{r['isolation']['precision']:.3f}, recall {r['isolation']['recall']:.3f}." for r in isolating] + \
        ([""] if isolating else [])


def _confidence_line(summary: dict) -> str:
    """Whether the defender can trust the final split, from the scores alone (no ground truth),
    naming what made it unsure (`EntropyTracker.confidence`'s reasons)."""
    f = summary["final"]
    if f.get("low_confidence") is None:
        return "Detection confidence: not recorded."
    d, share = f["split_separation"], f.get("vote_share")
    if not f["low_confidence"]:
        votes = f", the target won {share:.0%} of the scorings' votes" if share is not None else ""
        return f"Detection confidence: the split's scores separate clearly (separation {d:.2f}{votes})."
    lead = f" (the most-voted label won {share:.0%} of the scorings' votes)" if share is not None else ""
    said = {
        "modes": f"the scores the suspicious set is drawn from do not fall clearly into two modes (separation "
                 f"{d:.2f} < 2)",
        "no_target": f"no target label stood out{lead}, so every label was suspect",
        "scattered": f"the target label {f.get('inferred_target')} holds only {f.get('target_share') or 0:.0%} of the "
                     "victim's own set, so the victim has not singled it out (as on an all-to-all attack, whose "
                     "poisoned samples carry every label)"}
    text = "; ".join(said[r] for r in f.get("low_reasons") or []) or "the run did not record why"
    return (f"**Warning: low detection confidence.** {text[:1].upper() + text[1:]}: the split may miss "
            "poisoned samples, and V&B may not have removed the backdoor.")


def _target_class_line(summary: dict) -> str:
    """The target class's test accuracy for V&B and no defense: V&B's cost falls mostly there."""
    target = summary["config"].get("target_label")
    final = summary["final"].get("class_acc") or []
    if target is None or not 0 <= target < len(final):
        return "Target-class accuracy: not recorded (an all-to-all attack has no single target)."
    nd = (summary.get("no_defense") or {}).get("class_acc") or []
    nd_text = f"{100 * nd[target]:.1f}%" if target < len(nd) else "—"
    return (f"Accuracy on the clean test images of the target class {target}: V&B {100 * final[target]:.1f}%, "
            f"no defense {nd_text}.")


def scorings_frame(trainer: VabTrainer) -> pd.DataFrame:
    """Split quality after every scoring so far."""
    cols = ["scoring", "precision", "recall", "fpr", "f1", "auroc", "n_suspicious", "n_credible"]
    df = pd.DataFrame(trainer.scorings)
    return df[[c for c in cols if c in df] + [c for c in df if c not in cols]]


def threshold_table(frame: pd.DataFrame, thresholds) -> pd.DataFrame:
    return pd.DataFrame([{"threshold": t, **threshold_quality(frame, t)} for t in thresholds])


def saved_frame(run, name: str, trainer: VabTrainer) -> pd.DataFrame:
    """The entropy frame saved under artifacts/<name>.csv the first time, so re-running a notebook
    after later phases still shows the scores of its own phase."""
    path = run.artifacts / f"{name}.csv"
    if path.exists():
        return pd.read_csv(path)
    frame = entropy_frame(trainer)
    runio.atomic_write_bytes(path, frame.to_csv(index=False).encode())
    return frame


def history_frame(trainer: VabTrainer) -> pd.DataFrame:
    return pd.DataFrame(trainer.history())


def class_accuracy_frame(trainer: VabTrainer) -> pd.DataFrame:
    """Tidy per-class test accuracy per epoch (for `plots.class_accuracy`); the attack's target
    class is marked in its name."""
    names = class_names(trainer)
    return pd.DataFrame([{"epoch": r["epoch"], "class": names[c], "acc": a}
                         for r in trainer.history() for c, a in enumerate(r.get("class_acc", []))])


def target_label(trainer: VabTrainer) -> int | None:
    """The attack's target label; None for all-to-all attacks, which have no single target."""
    manifest = trainer.data.manifest
    return None if manifest.get("attack_mode") == "all2all" else manifest.get("target_label")


def class_names(trainer: VabTrainer) -> list[str]:
    target = target_label(trainer)
    return [f"{name} (target)" if k == target else str(name) for k, name in enumerate(trainer.data.classes)]


def baseline_metrics(run) -> dict | None:
    """ACC/ASR/RA of the no-defense baseline (artifacts/baseline.json from notebook 01), if trained."""
    found = _optional_json(run, "baseline.json")
    return {k: found.get(k) for k in ("acc", "asr", "ra")} if found else None
