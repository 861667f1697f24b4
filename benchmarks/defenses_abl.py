"""ABL beside no defense (and V&B, where the run folder has it), with the harness notebook 06 uses
(`vablib.defenses`). Prints one row per run and writes <out>/abl_table.json.

- On a dataset, for attacks × seeds: each (attack, seed) gets a run folder under --out holding the
  poisoned set, the no-defense model and the ABL result, reused when run again.
- On finished run folders (`--runs`, e.g. a sweep's points): their own poisoned set, budget and
  seed; V&B's result is read from the folder and `artifacts/defenses.json` is written there, as
  notebook 06 does, so `python -m vablib table` then has ABL's columns.

    .venv/bin/python benchmarks/defenses_abl.py --attacks badnets blended wanet --seeds 0
    .venv/bin/python benchmarks/defenses_abl.py --runs outputs/sweeps/digits/*/ --out outputs/sweeps/digits
    .venv/bin/python benchmarks/defenses_abl.py --attacks badnets --abl "{'isolation_ratio': 0.1}"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vablib import defenses, runio, runstate
from vablib.abl import AblConfig
from vablib.attacks import PoisonedData
from vablib.runner import parse_value

from common import DEFAULT_DATA, add_budget_arguments, budget, load_data, poisoned


def report(name: str, results: list[dict]) -> dict:
    """Print one line of ACC / ASR (and isolation) per defense; return the row."""
    row = {"run": name}
    parts = []
    for r in results:
        iso = r.get("isolation") or {}
        row[r["defense"]] = {k: r[k] for k in ("acc", "asr", "ra", "seconds")} | {
            "precision": iso.get("precision"), "recall": iso.get("recall"), "n_isolated": iso.get("n_isolated")}
        text = f"{r['defense']} {100 * r['acc']:5.1f} / {100 * r['asr']:5.1f}"
        if iso:
            text += f" (isolated {iso['n_isolated']}, P {iso['precision']:.2f} R {iso['recall']:.2f})"
        parts.append(text)
    seconds = f"   ABL {row['abl']['seconds']:.0f} s" if "abl" in row else ""
    print(f"{name:28s} " + "   ".join(parts) + seconds, flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="digits, fashion_mnist or an npz path")
    ap.add_argument("--runs", nargs="+", help="finished run folders to compare in, instead of --data")
    ap.add_argument("--attacks", nargs="+", default=["badnets", "blended", "wanet"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--defenses", nargs="+", default=["none", "abl"], help="with --data: which to train")
    ap.add_argument("--abl", default="None", help="ABL settings over AblConfig's defaults, a Python dict literal")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="outputs/bench/defenses")
    add_budget_arguments(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = parse_value(args.abl)
    AblConfig.from_params(settings)  # one sentence for a bad setting, before anything trains
    rows = []
    if args.runs:
        for folder in args.runs:
            run = runio.RunDir(folder)
            data = PoisonedData.load(run)
            results = defenses.compare(["none", "abl"], data, runstate.recorded_train_config(run), "cpu",
                                       runstate.recorded_setup(run).seed, run, {"abl": settings}, progress=False)
            rows.append(report(run.path.name, results))
    else:
        train_cfg = budget(args)
        ds, data_name = load_data(args.data)
        for attack in args.attacks:
            for seed in args.seeds:
                run = runio.RunDir(Path(args.out) / f"{data_name}-{train_cfg.epochs}ep-{attack}-s{seed}")
                data = poisoned(ds, attack, seed, run.path)
                results = [defenses.evaluate_defense(name, data, train_cfg, "cpu", seed, run,
                                                     settings if name == "abl" else None, progress=False)
                           for name in args.defenses]
                rows.append(report(f"{attack}-s{seed}", results))
    runio.write_json(Path(args.out) / "abl_table.json", {"settings": settings, "train": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
