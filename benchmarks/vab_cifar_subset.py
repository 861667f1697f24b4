"""V&B on the real CIFAR-10 subset at the CPU profile: for each attack, three models with the same
budget — no defense, V&B, and a clean model (its ASR is the natural floor) — plus detection
figures. Prints a table and writes JSON.

    .venv/bin/python benchmarks/vab_cifar_subset.py --attacks badnets wanet --out outputs/bench
    .venv/bin/python benchmarks/vab_cifar_subset.py --attacks wanet -p suspect_labels any   # the reference's split
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vablib import attacks, baseline, runio
from vablib.config import TrainConfig, as_params
from vablib.data import load_dataset
from vablib.runner import parse_value
from vablib.config import VabConfig
from vablib.hashing import content_key
from vablib.vab import VabTrainer

from common import DEFAULT_DATA, add_budget_arguments, budget, poisoned


def run_attack(ds, name: str, train_cfg: TrainConfig, vab_cfg: VabConfig, out: Path,
               seed: int, skip_baselines: bool) -> dict:
    """No defense and the clean floor in <out>/<attack> (cached there, shared with
    attack_baselines.py), V&B in <out>/<attack>/vab-<config key> (resumes when rerun)."""
    run = runio.RunDir(out / name)
    t0 = time.time()
    data = poisoned(ds, name, seed, run.path)
    row = {"attack": name, **attacks.CPU_SETTINGS[name], "poisoned": int(data.poison_mask.sum()),
           "generate_s": time.time() - t0}
    if not skip_baselines:
        row["no_defense"] = baseline.no_defense_baseline(data, train_cfg, "cpu", seed, run=run, progress=False)
        row["clean"] = baseline.clean_floor(data, train_cfg, "cpu", seed, run=run, progress=False)
        for kind in ("no_defense", "clean"):
            row[kind] = {k: v for k, v in row[kind].items() if k != "history"}
    vab_run = runio.RunDir(run.path / f"vab-{content_key(train_cfg, vab_cfg)}")
    runio.write_json(vab_run.path / "vab_config.json", {"train": as_params(train_cfg), "vab": as_params(vab_cfg)})
    trainer = VabTrainer(data, train_cfg, vab_cfg, "cpu", seed, vab_run, progress=False)
    trainer.resume()
    trainer.run_phase("suppress", on_epoch=lambda r: print(
        f"  {name} epoch {r['epoch']:>3} {r['phase']:8s} acc {r['acc']:.3f} asr {r['asr']:.3f} "
        f"P {r['precision']:.3f} R {r['recall']:.3f} susp {r['n_suspicious']} ({r['seconds']:.0f}s)", flush=True))
    hist = trainer.history()
    final, best = hist[-1], max(hist, key=lambda r: r["acc"])
    row["vab"] = {k: final[k] for k in ("acc", "asr", "ra", "class_acc", "precision", "recall", "fpr", "f1", "auroc",
                                         "n_suspicious")}
    row["vab_best_acc_epoch"] = {k: best[k] for k in ("epoch", "acc", "asr", "ra", "class_acc")}
    row["vab_seconds"] = trainer.timings
    row["scorings"] = trainer.scorings
    row["vab_run"] = str(vab_run.path)
    runio.write_json(vab_run.path / "bench_row.json", row)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--attacks", nargs="+", default=list(attacks.ATTACKS), choices=list(attacks.ATTACKS))
    add_budget_arguments(ap)
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a VabConfig field on top of the profile's V&B settings (config.VAB_PROFILES; repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--out", default="outputs/bench", help="folder of the per-attack run folders")
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        print(f"the CIFAR-10 subset is not at {args.data}; pass --data", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    ds = load_dataset("npz", args.data)
    train_cfg = budget(args)
    vab_cfg = VabConfig.from_profile(args.profile, **{k: parse_value(v) for k, v in args.param})
    out = Path(args.out)
    rows = []
    for name in args.attacks:
        rows.append(run_attack(ds, name, train_cfg, vab_cfg, out, args.seed, args.skip_baselines))
        r = rows[-1]
        nd, cl, v = r.get("no_defense", {}), r.get("clean", {}), r["vab"]
        print(f"{name:8s} no-defense ACC {nd.get('acc', float('nan')):.3f} ASR {nd.get('asr', float('nan')):.3f} | "
              f"clean ASR floor {cl.get('asr', float('nan')):.3f} | V&B ACC {v['acc']:.3f} ASR {v['asr']:.3f} "
              f"RA {v['ra']:.3f} | detection P {v['precision']:.3f} R {v['recall']:.3f} AUROC {v['auroc']:.3f}",
              flush=True)
    table_path = out / f"vab_table-{content_key(train_cfg, vab_cfg)}.json"
    runio.write_json(table_path, {"args": vars(args), "rows": rows})
    print(json.dumps({"out": str(table_path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
