"""One table over many run folders (a sweep's): runs.csv, table.md and the ACC-against-ASR figure.

    python -m vablib table outputs/sweeps/NAME

- runs.csv: one row per run folder with a summary.json: every parameter, V&B's ACC / ASR / RA at
  the end and at the best-ACC epoch, the no-defense and clean-floor ACC / ASR / RA, detection
  precision / recall / AUROC at the end, seconds per phase, the git commit and the data fingerprint,
  and for each other defense of notebook 06 `defense_<name>_<acc|asr|ra>` and its isolated set's
  `defense_<name>_isolation_<precision|recall>`;
- table.md: the complete runs grouped by every axis of the sweep but `seed` (without a sweep's
  status file: every parameter that varies, but `seed`), mean ± std and n, V&B next to no defense
  and, where it was trained, the clean floor;
- defenses.csv: the same runs in long form, one row per run and defense (V&B, no defense, the clean
  floor, notebook 06's): every parameter, ACC / ASR / RA, the isolated set's precision / recall
  (V&B's suspicious set for V&B) and seconds, for grouping by defense in pandas or seaborn;
- acc_vs_asr.png: ACC against ASR, one panel per attack, one mark per run (seed) and defense.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from . import runio
from .defenses import LABELS, other_results
from .errors import DataNotFoundError

METRICS = ("acc", "asr", "ra")
REFERENCE_COLUMNS = {"vab": "vab", "none": "no_defense", "clean_floor": "clean_floor"}  # defense: column prefix
RESULT_PREFIXES = ("vab_", "no_defense_", "clean_floor_", "detection_", "seconds_", "defense_")
RESULT_COLUMNS = {"run", "complete", "epochs_done", "git_commit", "fingerprint"}
STATUS = "sweep_status.json"  # vablib.sweep.STATUS


def _cell(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _status_points(folder: Path) -> dict:
    path = folder / STATUS
    return runio.read_json(path).get("points", {}) if path.is_file() else {}


def run_row(run_dir: Path, given: dict | None = None) -> dict | None:
    """The runs.csv row of one run folder (None without a summary.json). `given`: the parameters a
    sweep gave it, for those no notebook records (e.g. train_clean_floor)."""
    if not (run_dir / "summary.json").is_file():
        return None
    summary, config = runio.read_json(run_dir / "summary.json"), runio.read_json(run_dir / "config.json")
    params = {**{k: v for k, v in (given or {}).items() if k not in ("run_dir", "cache_dir")}, **config["params"]}
    row = {"run": run_dir.name, "complete": bool(summary.get("complete")), "epochs_done": summary.get("epochs_done"),
           **{k: _cell(v) for k, v in params.items()}}
    final, best = summary["final"], summary["best_acc_epoch"]
    for m in METRICS:
        row[f"vab_{m}"], row[f"vab_best_{m}"] = final.get(m), best.get(m)
    row["vab_best_epoch"] = best.get("epoch")
    for kind in ("no_defense", "clean_floor"):
        values = summary.get(kind) or {}
        for m in METRICS:
            row[f"{kind}_{m}"] = values.get(m)
        row[f"seconds_{kind}"] = values.get("seconds")
    for k in ("precision", "recall", "auroc", "low_confidence"):
        row[f"detection_{k}"] = final.get(k)
    for result in other_results(run_dir):  # notebook 06's defenses: defense_<name>_<metric>
        name = result["defense"]
        for m in METRICS:
            row[f"defense_{name}_{m}"] = result.get(m)
        for k in ("precision", "recall"):
            row[f"defense_{name}_isolation_{k}"] = (result.get("isolation") or {}).get(k)
        row[f"seconds_defense_{name}"] = result.get("seconds")
    phases = summary.get("seconds_per_phase") or {}
    for phase, seconds in phases.items():
        row[f"seconds_{phase}"] = seconds
    row["seconds_vab"] = sum(phases.values()) if phases else None
    commits = sorted({env.get("git_commit") or "" for env in config.get("environment", {}).values()} - {""})
    row["git_commit"] = ",".join(commits) or None
    dataset = run_dir / "artifacts" / "dataset.json"
    row["fingerprint"] = runio.read_json(dataset).get("fingerprint") if dataset.is_file() else None
    return row


def collect(folder: str | os.PathLike) -> pd.DataFrame:
    """One row per run folder directly under `folder` that has a summary.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder} is not a folder of runs (a sweep's --out).")
    given = {name: p.get("params") for name, p in _status_points(folder).items()}
    rows = [row for d in sorted(folder.iterdir()) if d.is_dir()
            for row in [run_row(d, given.get(d.name))] if row is not None]
    if not rows:
        raise DataNotFoundError(f"no run folder under {folder} has a summary.json yet (notebook 06 writes it).")
    return pd.DataFrame(rows)


def other_defenses(runs: pd.DataFrame) -> list[str]:
    """Names of the defenses besides V&B and the baselines that have columns in runs.csv."""
    return sorted(c[len("defense_"):-len("_acc")] for c in runs if c.startswith("defense_") and c.endswith("_acc"))


def parameter_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c not in RESULT_COLUMNS and not c.startswith(RESULT_PREFIXES)]


def group_columns(runs: pd.DataFrame, folder: str | os.PathLike | None = None) -> list[str]:
    """The sweep's axes but seed (from its status file), else every parameter that varies but seed."""
    axes = {axis for p in _status_points(Path(folder)).values() for axis in p.get("axes", {})} if folder else set()
    names = [c for c in parameter_columns(runs) if (c in axes if axes else runs[c].astype(str).nunique() > 1)]
    return [c for c in names if c != "seed"]


def aggregate(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Complete runs grouped by `by`: n and mean and std of every V&B, no-defense, clean-floor (where
    trained) and detection metric."""
    done = runs[runs["complete"].astype(bool)]
    others = other_defenses(runs)
    kinds = (*REFERENCE_COLUMNS.values(), *(f"defense_{d}" for d in others))
    metrics = [f"{kind}_{m}" for m in METRICS for kind in kinds] + \
              ["detection_precision", "detection_recall", "detection_auroc"] + \
              [f"defense_{d}_isolation_{k}" for d in others for k in ("precision", "recall")]
    metrics = [m for m in metrics if m in done and done[m].notna().any()]
    grouped = done.groupby(by, dropna=False, sort=False) if by else done.groupby(lambda _: "all")
    out = grouped[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out.insert(0, "n", grouped.size())
    return out.reset_index() if by else out.reset_index(drop=True)


def _head(metric: str) -> str:
    """A table.md column head: 'V&B ACC', 'detection RECALL', 'abl isolation PRECISION'."""
    kind, m = metric.rsplit("_", 1)
    kind = {"vab": "V&B", "no_defense": "no defense"}.get(kind, kind.removeprefix("defense_").replace("_", " "))
    return f"{kind} {m.upper()}"


def markdown(summary: pd.DataFrame, by: list[str], title: str) -> str:
    """table.md: one row per group, "mean ± std" in percent (std left out when n = 1)."""
    def pct(row, m):
        mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
        if mean is None or pd.isna(mean):
            return "—"
        return f"{100 * mean:.1f}" + ("" if std is None or pd.isna(std) else f" ± {100 * std:.1f}")

    metrics = [c[:-5] for c in summary.columns if c.endswith("_mean")]
    heads = [_head(m) for m in metrics]
    lines = [f"# {title}", "", f"Complete runs grouped by {', '.join(by) or 'nothing'}: mean ± std over the runs "
             "(seeds) of each group, in percent; n runs.", "",
             "| " + " | ".join([*by, "n", *heads]) + " |", "|" + "---|" * (len(by) + 1 + len(heads))]
    for _, row in summary.iterrows():
        lines.append("| " + " | ".join([*(str(row[c]) for c in by), str(int(row["n"])),
                                        *(pct(row, m) for m in metrics)]) + " |")
    return "\n".join(lines) + "\n"


def defense_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """defenses.csv: one row per run and defense that has an ACC, with the run's parameters."""
    params = parameter_columns(runs)
    prefixes = {**REFERENCE_COLUMNS, **{d: f"defense_{d}" for d in other_defenses(runs)}}
    rows = []
    for _, r in runs.iterrows():
        for name, prefix in prefixes.items():
            if pd.isna(r.get(f"{prefix}_acc")):
                continue
            isolation = "detection" if name == "vab" else f"{prefix}_isolation"
            rows.append({"run": r["run"], "complete": r["complete"], **{c: r[c] for c in params},
                         "defense": name, "label": LABELS.get(name, name),
                         **{m: r[f"{prefix}_{m}"] for m in METRICS},
                         **{f"isolation_{k}": r.get(f"{isolation}_{k}") for k in ("precision", "recall")},
                         "seconds": r.get(f"seconds_{prefix}")})
    return pd.DataFrame(rows)


def acc_asr_figure(runs: pd.DataFrame):
    """ACC against ASR, one panel per attack, one mark per complete run and defense (V&B, no
    defense, the clean floor where trained, and notebook 06's): a good defense sits top left."""
    import seaborn as sns

    from .plots import theme

    theme()
    frame = defense_frame(runs[runs["complete"].astype(bool)])
    frame = frame.assign(ACC=100 * frame["acc"], ASR=100 * frame["asr"])
    grid = sns.relplot(data=frame, x="ASR", y="ACC", col="attack", hue="label", style="label", s=70,
                       col_wrap=min(3, frame["attack"].nunique()), height=3.2, facet_kws={"sharey": False})
    grid.set(xlim=(-3, 103))
    grid.set_axis_labels("ASR (%)", "ACC (%)")
    return grid.figure


def write_tables(folder: str | os.PathLike) -> dict[str, Path]:
    """Write runs.csv, defenses.csv, table.md and acc_vs_asr.png into `folder`; returns their paths."""
    import matplotlib.pyplot as plt

    from .plots import save_figure

    folder = Path(folder)
    runs = collect(folder)
    by = group_columns(runs, folder)
    paths = {"runs.csv": runio.atomic_write_bytes(folder / "runs.csv", runs.to_csv(index=False).encode()),
             "defenses.csv": runio.atomic_write_bytes(folder / "defenses.csv",
                                                      defense_frame(runs).to_csv(index=False).encode())}
    title = f"{folder.name}: {int(runs['complete'].sum())} complete runs of {len(runs)}"
    text = markdown(aggregate(runs, by), by, title)
    paths["table.md"] = runio.atomic_write_bytes(folder / "table.md", text.encode())
    if runs["complete"].any():
        fig = acc_asr_figure(runs)
        paths["acc_vs_asr.png"] = save_figure(fig, folder, "acc_vs_asr")
        plt.close(fig)
    return paths


def load_runs(folder: str | os.PathLike) -> pd.DataFrame:
    """runs.csv of a sweep folder, as written by `write_tables`."""
    path = Path(folder) / "runs.csv"
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist: run `python -m vablib table {folder}` first.")
    return pd.read_csv(path)
