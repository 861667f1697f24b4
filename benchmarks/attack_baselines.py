"""No-defense baselines of the six attacks on the CIFAR-10 subset, on CPU: does each attack work?

For each attack: poison the subset with `vablib.attacks.CPU_SETTINGS` (the paper's defaults stay
the library defaults; `--reference` uses them instead), train the no-defense baseline (ResNet-18,
SGD with the step schedule, crop-and-flip augmentation) and report ACC / ASR / RA at the last epoch and at the
best-ACC epoch (as the paper reports).

    .venv/bin/python benchmarks/attack_baselines.py --epochs 40 --width 0.25 --out outputs/bench
    .venv/bin/python benchmarks/attack_baselines.py --data digits --attacks badnets blended --mode all2all

`--mode all2all` relabels y → (y + 1) mod K; `--no-augment` trains without crop and flip.

Each attack gets the run folder <out>/<attack>[-reference][-all2all][-no-augment]: CL's clean
model, IAD's generators and the baseline (artifacts/baseline.json) are cached there, keyed by what
produced them, so benchmarks/vab_cifar_subset.py with the same budget reuses them. Prints a table
and writes <out>/attack_baselines[...].json, named alike, after every attack (a killed run keeps
what it finished).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from vablib import runio
from vablib.attacks import ATTACKS, CPU_SETTINGS, MODES, AttackConfig, generate, poison_summary
from vablib.baseline import no_defense_baseline
from vablib.config import as_params

from common import DEFAULT_DATA, add_budget_arguments, budget, load_data

REFERENCE = {"poison_rate": 0.1, "attack_params": {}}


def variant(args) -> str:
    """The suffix naming a non-default run: the reference settings, all-to-all, no augmentation."""
    return "".join(f"-{part}" for part, on in (("reference", args.reference), (args.mode, args.mode != "all2one"),
                                                ("no-augment", args.no_augment)) if on)


def run_attack(ds, name: str, args) -> dict:
    run = runio.RunDir(Path(args.out) / f"{name}{variant(args)}")
    settings = REFERENCE if args.reference else CPU_SETTINGS[name]
    cfg = AttackConfig(name, poison_rate=settings["poison_rate"], target_label=0, attack_budget="cpu",
                       attack_mode=args.mode, attack_params=settings["attack_params"])
    t0 = time.time()
    data = generate(ds, cfg, seed=args.seed, device="cpu", run=run, progress=False)
    t_attack = time.time() - t0
    train_cfg = dataclasses.replace(budget(args), augment=not args.no_augment)
    result = no_defense_baseline(data, train_cfg, device="cpu", seed=args.seed, run=run, progress=False,
                                 on_epoch=lambda r: print(f"  {name} epoch {r['epoch']:>3}: acc {r['acc']:.3f} "
                                                          f"asr {r['asr']:.3f} ra {r['ra']:.3f} ({r['seconds']:.0f}s)",
                                                          flush=True))
    best = max(result["history"], key=lambda r: r["acc"])
    summary = poison_summary(data)
    return {"attack": name, "poison_rate": cfg.poison_rate, "attack_params": cfg.attack_params,
            "poisoned": summary["poisoned"], "noise_or_cross": summary["noise/cross samples"],
            "acc": result["acc"], "asr": result["asr"], "ra": result["ra"],
            "best_acc_epoch": best["epoch"], "acc_at_best": best["acc"], "asr_at_best": best["asr"],
            "ra_at_best": best["ra"], "train_config": as_params(train_cfg),
            "attack_seconds": t_attack, "train_seconds": result["seconds"], "seconds": time.time() - t0,
            "trigger_info": data.manifest["trigger_info"]}


def table(rows: list[dict]) -> str:
    head = (f"{'attack':<8} {'rate':>5} {'poisoned':>8} {'ACC':>6} {'ASR':>6} {'RA':>6} | {'ACC*':>6} {'ASR*':>6} "
            f"{'RA*':>6} {'seconds':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['attack']:<8} {r['poison_rate']:>5.2f} {r['poisoned']:>8} {r['acc']:>6.3f} {r['asr']:>6.3f} "
                     f"{r['ra']:>6.3f} | {r['acc_at_best']:>6.3f} {r['asr_at_best']:>6.3f} {r['ra_at_best']:>6.3f} "
                     f"{r['seconds']:>8.0f}")
    lines.append("(* at the best-ACC epoch)")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the CIFAR-10 subset .npz, digits or fashion_mnist")
    ap.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    add_budget_arguments(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="store_true", help="the reference settings (10%% poisoning, default params)")
    ap.add_argument("--mode", default="all2one", choices=list(MODES), help="the attack mode")
    ap.add_argument("--no-augment", action="store_true", help="train without the budget's crop and flip")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (use 1 on a CPU shared with other jobs)")
    ap.add_argument("--out", default="outputs/bench", help="folder of the per-attack run folders and the table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds, _ = load_data(args.data)
    table_path = Path(args.out) / f"attack_baselines{variant(args)}.json"
    rows = []
    for name in args.attacks:
        print(f"[{name}] {REFERENCE if args.reference else CPU_SETTINGS[name]}", flush=True)
        rows.append(run_attack(ds, name, args))
        runio.write_json(table_path, {"data": args.data, "threads": args.threads,
                                      "settings": "reference" if args.reference else CPU_SETTINGS, "rows": rows})
    print(table(rows))
    print(json.dumps({"rows": [{k: r[k] for k in ("attack", "acc", "asr", "ra", "seconds")} for r in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
