"""Detection alone (the CIFAR-10 subset unless --data says otherwise): the victim's warm-up, its rounds, then N
re-selections, without the beneficiary (which never affects the split), so a victim setting can be
judged in minutes instead of a full V&B run. The split is the same one a full run with the same
settings and thread count gets. Prints per scoring the split's precision / recall / AUROC and the
log10 entropy quantiles (0, 1, 50, 99, 100 %) of poisoned and clean samples; writes JSON with --json.

    .venv/bin/python benchmarks/vab_detection.py --attack wanet --reselections 39 --seed 1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vablib import attacks, runio
from vablib.config import as_params
from vablib.runner import parse_value
from vablib.config import VabConfig
from vablib.vab import VabTrainer

from common import DEFAULT_DATA, add_budget_arguments, budget, load_data, poisoned

QUANTILES = torch.tensor([0.0, 0.01, 0.5, 0.99, 1.0])


def log_quantiles(scores: torch.Tensor) -> list[float]:
    return [round(float(v), 2) for v in torch.quantile(torch.log10(scores.clamp_min(1e-30)), QUANTILES)]


def describe(quality: dict, trainer: VabTrainer | None = None) -> dict:
    """A scoring's split quality; with `trainer`, also the quantiles of its current EMA scores."""
    row = {k: quality[k] for k in ("scoring", "precision", "recall", "auroc", "n_suspicious", "n_victim_set",
                                   "inferred_target")}
    if trainer is not None:
        ema, poisoned = trainer.tracker.ema.cpu(), trainer.poisoned.cpu()
        row |= {"poisoned_log10": log_quantiles(ema[poisoned]), "clean_log10": log_quantiles(ema[~poisoned])}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help='an npz dataset, "digits" (the embedded default) or "fashion_mnist" (Debian\'s, first 6,000 / 1,000)')
    ap.add_argument("--attack", default="badnets", choices=list(attacks.ATTACKS))
    ap.add_argument("--reselections", type=int, default=20,
                    help="re-selections (victim training + scoring) after the warm-up rounds")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a VabConfig field on top of the profile's V&B settings (config.VAB_PROFILES; repeatable)")
    add_budget_arguments(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="outputs/bench", help="folder of the per-attack run folders (poisoned sets are cached there)")
    ap.add_argument("--json", help="write the scorings to this JSON file")
    args = ap.parse_args(argv)
    if args.data not in ("digits", "fashion_mnist") and not Path(args.data).exists():
        print(f"the CIFAR-10 subset is not at {args.data}; pass --data", file=sys.stderr)
        return 2
    vab_cfg = VabConfig.from_profile(args.profile, **{k: parse_value(v) for k, v in args.param})
    train_cfg = budget(args)
    torch.set_num_threads(args.threads)
    ds, name = load_data(args.data)
    cache = Path(args.out) / (args.attack if args.data == str(DEFAULT_DATA) else f"{args.attack}-{name}")
    data = poisoned(ds, args.attack, args.seed, cache)
    trainer = VabTrainer(data, train_cfg, vab_cfg, "cpu", args.seed, run=None, progress=False)
    t0 = time.time()
    trainer.run_phase("rounds")
    rows = [describe(q) for q in trainer.scorings[:-1]] + [describe(trainer.scorings[-1], trainer)]
    for _ in range(args.reselections):
        rows.append(describe(trainer.reselect(), trainer))
    for r in rows:
        quantiles = f"  log10 H poisoned {r['poisoned_log10']} clean {r['clean_log10']}" if "clean_log10" in r else ""
        print(f"scoring {r['scoring']:>3}  P {r['precision']:.3f} R {r['recall']:.3f} AUROC {r['auroc']:.3f} "
              f"n {r['n_suspicious']:>5} victim set {r['n_victim_set']:>5} target {r['inferred_target']:>2}{quantiles}")
    result = {"attack": args.attack, "vab": as_params(vab_cfg), "scorings": rows, "seconds": round(time.time() - t0, 1)}
    if args.json:
        runio.write_json(args.json, result)
    print(json.dumps({k: result[k] for k in ("attack", "seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
