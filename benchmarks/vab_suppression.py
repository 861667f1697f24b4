"""Suppression alone: start from the end of AttentionMix of a V&B benchmark run
(`<run>/checkpoints/after_mix.pt`) and run the suppression phase with other suppression settings.
Up to that point a run does not read them (`vablib.config.SUPPRESSION_FIELDS`), so this is the full
run with the new settings at half the cost; any other field that differs is refused. Prints ACC,
ASR and per-class test accuracy per epoch; writes into <run>-suppress-<key>/.

    .venv/bin/python benchmarks/vab_suppression.py outputs/bench/wanet/vab-<key> -p suppress_labelled False
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vablib import runio
from vablib.config import TrainConfig, as_params
from vablib.data import load_dataset
from vablib.runner import parse_value
from vablib.config import SUPPRESSION_FIELDS, VabConfig
from vablib.hashing import content_key
from vablib.vab import VabTrainer

from common import DEFAULT_DATA, poisoned


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a V&B run folder of vab_cifar_subset.py (holds vab_config.json and checkpoints/)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help=f"a suppression setting to change: one of {', '.join(sorted(SUPPRESSION_FIELDS))}")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    src = Path(args.run)
    recorded, start = src / "vab_config.json", src / "checkpoints" / "after_mix.pt"
    for path in (recorded, start):
        if not path.exists():
            print(f"{path} is missing: run benchmarks/vab_cifar_subset.py past AttentionMix first", file=sys.stderr)
            return 2
    other = sorted(k for k, _ in args.param if k not in SUPPRESSION_FIELDS)
    if other:
        print(f"{other} change more than the suppression phase; use vab_cifar_subset.py -p instead", file=sys.stderr)
        return 2
    saved = runio.read_json(recorded)
    train_cfg, source_cfg = TrainConfig(**saved["train"]), VabConfig(**saved["vab"])
    vab_cfg = VabConfig(**(as_params(source_cfg) | {k: parse_value(v) for k, v in args.param}))
    torch.set_num_threads(args.threads)
    data = poisoned(load_dataset("npz", args.data), src.parent.name, args.seed, src.parent)
    out = runio.RunDir(src.parent / f"{src.name}-suppress-{content_key(train_cfg, vab_cfg)}")
    runio.write_json(out.path / "vab_config.json", {"train": as_params(train_cfg), "vab": as_params(vab_cfg)})
    trainer = VabTrainer(data, train_cfg, vab_cfg, "cpu", args.seed, out, progress=False)
    if not trainer.resume():  # refuses a checkpoint that differs in more than the suppression settings
        trainer.load_state_dict(runio.load_checkpoint(start), allow=SUPPRESSION_FIELDS)
    trainer.run_phase("suppress", on_epoch=lambda r: print(
        f"epoch {r['epoch']:>3} acc {r['acc']:.3f} asr {r['asr']:.3f} P {r['precision']:.2f} R {r['recall']:.2f} "
        f"susp {r['n_suspicious']} per class {[round(a, 2) for a in r['class_acc']]} ({r['seconds']:.0f}s)", flush=True))
    final = trainer.history()[-1]
    print(f"{out.path}: final ACC {final['acc']:.3f} ASR {final['asr']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
