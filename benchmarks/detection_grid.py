"""The detection grid: datasets × attacks × seeds, detection alone (no beneficiary), each split
rule judged on the same victim.

`record` runs the victim as a full V&B run would (warm-up, rounds, then one re-selection before
each beneficiary epoch that has one) and saves every scoring's raw entropy. The victim trains on
`victim_set`, which every target rule below leaves unchanged, so `table` replays any tracker on the
recorded scorings and gets exactly the split a full run with that rule would get. It prints, per
run and rule, the beneficiary's suspicious set at the end and at its worst over the scorings the
beneficiary trains on (recall final / lowest, precision), the inferred target, the confidence
(the target's share of the victim's set at the end, and how many scorings were low-confidence),
and the victim's own ranking of the poisoned images, which no rule changes (AUROC of the EMA score,
lowest-end, over every sample and within the target label): where it is low the victim failed,
where it is high and recall is low the rule did.

    .venv/bin/python benchmarks/detection_grid.py record --data fashion_mnist --attacks badnets --seeds 0
    .venv/bin/python benchmarks/detection_grid.py table

`--mode all2all` records all-to-all attacks (runs named DATA-ATTACK-all2all-sN); `--profile NAME`
another budget than the data's (`DATA_PROFILES`; give it its own `--out`).

`-p NAME VALUE` records a victim with other V&B settings (e.g. `-p victim_batchnorm running
--out outputs/bench/detection_grid_running`, the reference's batch-norm statistics).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vablib import attacks
from vablib.config import TrainConfig, VabConfig
from vablib.detection import EntropyTracker
from vablib.metrics import auroc
from vablib.runner import parse_value
from vablib.schedule import Schedule
from vablib.vab import VabTrainer

from common import DEFAULT_DATA, load_data, poisoned

DATA_PROFILES = {"digits": "demo", "cifar10_subset": "cpu", "fashion_mnist": "cpu"}
RULES = {  # name: VabConfig overrides of the tracker (on top of the profile's)
    "votes": {"target_inference": "votes"},
    "separation": {"target_inference": "separation"},
}


def data_spec(name: str) -> str:
    return str(DEFAULT_DATA) if name == "cifar10_subset" else name


def reselections(train_cfg, vab_cfg) -> int:
    schedule = Schedule(train_cfg.epochs, vab_cfg)
    return sum(schedule.reselects_before(e) for e in range(1, train_cfg.epochs + 1))


def record(args) -> None:
    folder = Path(args.out)
    for name in args.data:
        profile = args.profile or DATA_PROFILES[name]
        train_cfg = TrainConfig.from_profile(profile)
        vab_cfg = VabConfig.from_profile(profile, **{k: parse_value(v) for k, v in args.param})
        ds, short = load_data(data_spec(name))
        for attack in args.attacks:
            for seed in args.seeds:
                tail = ("" if args.mode == "all2one" else f"-{args.mode}") + f"-s{seed}"
                path = folder / f"{name}-{attack}{tail}.npz"
                if path.exists():
                    continue
                t0 = time.time()
                data = poisoned(ds, attack, seed, folder / "poisoned" / f"{attack}-{short}{tail}", args.mode)
                trainer = VabTrainer(data, train_cfg, vab_cfg, "cpu", seed, run=None, progress=False)
                scores = []
                update = trainer.tracker.update

                def keep(entropy, update=update):
                    scores.append(entropy.cpu().float().numpy())
                    return update(entropy)

                trainer.tracker.update = keep
                trainer.run_phase("rounds")
                for _ in range(reselections(train_cfg, vab_cfg)):
                    trainer.reselect()
                np.savez_compressed(
                    path, entropy=np.stack(scores), labels=data.y_train, poisoned=data.poison_mask,
                    n_victim_set=np.array([q["n_victim_set"] for q in trainer.scorings]),
                    first_beneficiary=np.array(vab_cfg.warmup_rounds - 1), vab=json.dumps(dataclasses.asdict(vab_cfg)))
                print(f"{path.name}: {len(scores)} scorings in {time.time() - t0:.0f} s", flush=True)


def replay(rec, overrides: dict) -> list[dict]:
    """The tracker of the recorded run's settings with `overrides`, fed the recorded scorings; the
    quality of the beneficiary's set after each."""
    vab_cfg = VabConfig(**{**json.loads(str(rec["vab"])), **overrides})
    labels, poisoned_mask = torch.as_tensor(rec["labels"]), torch.as_tensor(rec["poisoned"]).bool()
    tracker = EntropyTracker.from_config(vab_cfg, labels)
    poisoned_labels = torch.unique(labels[poisoned_mask])
    in_target = labels == poisoned_labels[0] if len(poisoned_labels) == 1 else None  # all-to-one only
    rows = []
    for s, entropy in enumerate(rec["entropy"]):
        suspicious = tracker.update(torch.as_tensor(entropy))
        if int(tracker.victim_set.sum()) != int(rec["n_victim_set"][s]):
            raise RuntimeError("the replayed victim set differs from the recorded run's: this rule changes the victim")
        hit = int((suspicious & poisoned_mask).sum())
        # the victim's ranking (lower EMA entropy = more suspicious), over all samples and within the target label
        ranking = {"auroc": auroc(-tracker.ema, poisoned_mask),
                   "auroc_target": float("nan") if in_target is None else
                   auroc(-tracker.ema[in_target], poisoned_mask[in_target])}
        rows.append({"recall": hit / max(1, int(poisoned_mask.sum())), "precision": hit / max(1, int(suspicious.sum())),
                     "n": int(suspicious.sum()), "target": tracker.target, **ranking, **tracker.confidence()})
    return rows


def span(rows: list[dict], key: str) -> str:
    """The lowest and the last value of `key` over the rows, as "low-end"."""
    return f"{min(r[key] for r in rows):.2f}-{rows[-1][key]:.2f}"


def table(args) -> None:
    folder = Path(args.out)
    print(f"{'run':<28} {'rule':<10} {'R final':>7} {'R low':>6} {'P final':>7} {'P low':>6} {'target':>6} "
          f"{'abstain':>7} {'margin':>6} {'D split':>7} {'T share':>7} {'low conf':>8} {'AUROC':>9} {'in target':>9}")
    for path in sorted(folder.glob(f"{args.runs}.npz")):
        rec = np.load(path)
        first = int(rec["first_beneficiary"])
        for rule, overrides in RULES.items():
            rows = replay(rec, overrides)[first:]
            end = rows[-1]
            print(f"{path.stem:<28} {rule:<10} {end['recall']:7.3f} {min(r['recall'] for r in rows):6.3f} "
                  f"{end['precision']:7.3f} {min(r['precision'] for r in rows):6.3f} {end['target']:>6} "
                  f"{sum(r['target'] < 0 for r in rows):>3}/{len(rows):<3} {end['target_margin']:6.2f} "
                  f"{end['split_separation']:7.2f} {end.get('target_share', float('nan')):7.2f} "
                  f"{sum(r['low_confidence'] for r in rows):>4}/{len(rows):<3} {span(rows, 'auroc'):>9} "
                  f"{span(rows, 'auroc_target'):>9}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the victims and save their scorings")
    rec.add_argument("--data", nargs="+", default=list(DATA_PROFILES), choices=list(DATA_PROFILES))
    rec.add_argument("--attacks", nargs="+", default=["badnets", "blended", "wanet"], choices=list(attacks.ATTACKS))
    rec.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    rec.add_argument("--mode", default="all2one", choices=list(attacks.MODES), help="the attack mode")
    rec.add_argument("--profile", help="the budget (default: the data's, DATA_PROFILES)")
    rec.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a V&B setting on top of the profile's")
    tab = sub.add_parser("table", help="replay the rules on the recorded scorings")
    tab.add_argument("--runs", default="*", help='a glob over the recorded runs, e.g. "cifar10_subset-*"')
    for p in (rec, tab):
        p.add_argument("--out", default="outputs/bench/detection_grid")
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "record" and "cifar10_subset" in args.data and not DEFAULT_DATA.exists():
        print(f"the CIFAR-10 subset is not at {DEFAULT_DATA}", file=sys.stderr)
        return 2
    record(args) if args.command == "record" else table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
