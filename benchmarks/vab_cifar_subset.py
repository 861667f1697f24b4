"""V&B on the real CIFAR-10 subset at the CPU profile: for each attack, three models with the same
budget — no defense, V&B, and a clean model (its ASR is the natural floor) — plus detection
figures. Prints a table and writes JSON.

    .venv/bin/python benchmarks/vab_cifar_subset.py --attacks badnets wanet --out outputs/bench_vab
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vablib import attacks, baseline, pipeline, runio
from vablib.config import TrainConfig
from vablib.data import load_dataset
from vablib.vab import VabConfig, VabTrainer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset.npz"


def run_attack(ds, name: str, attack_params: dict, train_cfg: TrainConfig, vab_cfg: VabConfig, out: Path,
               seed: int, skip_baselines: bool) -> dict:
    run = runio.RunDir(out / name)
    cfg = attacks.AttackConfig(attack=name, poison_rate=0.1, target_label=0, attack_params=attack_params)
    t0 = time.time()
    data = attacks.generate(ds, cfg, seed=seed, device="cpu", run=run, progress=False)
    row = {"attack": name, "attack_params": attack_params, "poisoned": int(data.poison_mask.sum()),
           "generate_s": time.time() - t0}
    if not skip_baselines:
        for label, fn in (("no_defense", baseline.no_defense_baseline), ("clean", baseline.clean_floor)):
            cached = run.artifacts / f"bench_{label}.json"
            if cached.exists():
                row[label] = runio.read_json(cached)
            else:
                row[label] = fn(data, train_cfg, device="cpu", seed=seed, progress=False)
                runio.write_json(cached, row[label])
    trainer = VabTrainer(data, train_cfg, vab_cfg, "cpu", seed, run, progress=False)
    trainer.resume()
    trainer.run_phase("suppress")
    hist = trainer.history()
    final, best = hist[-1], max(hist, key=lambda r: r["acc"])
    row["vab"] = {k: final[k] for k in ("acc", "asr", "ra", "precision", "recall", "fpr", "f1", "auroc",
                                         "n_suspicious")}
    row["vab_best_acc_epoch"] = {k: best[k] for k in ("epoch", "acc", "asr", "ra")}
    row["vab_seconds"] = trainer.timings
    row["rounds"] = trainer.rounds
    runio.write_json(out / name / "bench_row.json", row)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--attacks", nargs="+", default=["badnets", "blended", "sig", "cl", "wanet", "iad"])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--split", default="gmm")
    ap.add_argument("--victim-folds", type=int, default=2)
    ap.add_argument("--victim-warmup-samples", type=int, default=10000)
    ap.add_argument("--suppress-labelled", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--out", default="outputs/bench_vab")
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        print(f"the CIFAR-10 subset is not at {args.data}; pass --data", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    ds = load_dataset("npz", args.data)
    train_cfg = TrainConfig(model="resnet18", width=args.width, epochs=args.epochs, batch_size=128)
    vab_cfg = VabConfig(split=args.split, victim_folds=args.victim_folds,
                        victim_warmup_samples=args.victim_warmup_samples, suppress_labelled=bool(args.suppress_labelled))
    out = Path(args.out)
    rows = []
    for name in args.attacks:
        params = attacks.CPU_ATTACK_PARAMS.get(name, {}) if hasattr(attacks, "CPU_ATTACK_PARAMS") else {}
        rows.append(run_attack(ds, name, params, train_cfg, vab_cfg, out, args.seed, args.skip_baselines))
        r = rows[-1]
        nd, cl, v = r.get("no_defense", {}), r.get("clean", {}), r["vab"]
        print(f"{name:8s} no-defense ACC {nd.get('acc', float('nan')):.3f} ASR {nd.get('asr', float('nan')):.3f} | "
              f"clean ASR floor {cl.get('asr', float('nan')):.3f} | V&B ACC {v['acc']:.3f} ASR {v['asr']:.3f} "
              f"RA {v['ra']:.3f} | detection P {v['precision']:.3f} R {v['recall']:.3f} AUROC {v['auroc']:.3f}",
              flush=True)
    runio.write_json(out / "table.json", {"train": vars(args), "rows": rows})
    print(json.dumps({"out": str(out / "table.json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
