"""How soon ABL's isolation phase finds the poisoned samples: a fresh model trains on a run
folder's poisoned set with the LGA loss, and after every epoch prints the precision of the
lowest-loss 1%, 5% and 10% (against the ground truth; ABL itself never sees it).

    .venv/bin/python benchmarks/abl_isolation.py outputs/sweeps/digits/attack-badnets__seed-0 --epochs 10
"""
from __future__ import annotations

import argparse
import sys

import torch

import dataclasses

from vablib import abl, runio, runstate
from vablib.abl import AblConfig
from vablib.attacks import PoisonedData
from vablib.batches import to_device_uint8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a run folder with notebook 01's poisoned set")
    ap.add_argument("--epochs", type=int, default=10, help="isolation epochs")
    ap.add_argument("--lr", type=float, default=AblConfig.isolation_lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = runio.RunDir(args.run_dir)
    data = PoisonedData.load(run)
    # train_abl with every epoch but one in isolation (the one fine-tuning epoch is not reported)
    train_cfg = dataclasses.replace(runstate.recorded_train_config(run), epochs=args.epochs + 1)
    cfg = AblConfig(isolation_fraction=args.epochs / (args.epochs + 1), unlearning_fraction=0, isolation_lr=args.lr)
    x, y = to_device_uint8(data.x_train, "cpu"), torch.as_tensor(data.y_train)
    poisoned = torch.as_tensor(data.poison_mask)

    def precision_of_lowest(model, normalizer) -> dict:
        losses = abl.sample_losses(model, x, y, normalizer)
        return {f"P {ratio:.0%}": float((abl.isolate(losses, ratio) & poisoned).sum()) / max(1, int(ratio * len(y)))
                for ratio in (0.01, 0.05, 0.1)}

    print(f"{run.path.name}: {len(y)} samples, {int(poisoned.sum())} poisoned, batch {train_cfg.batch_size}, "
          f"isolation lr {args.lr}; precision of the lowest-loss 1% / 5% / 10%")
    _, _, history = abl.train_abl(data.x_train, data.y_train, data.num_classes, data.dataset_name, train_cfg, cfg,
                                  "cpu", args.seed, evaluate=precision_of_lowest, progress=False)
    for row in history[:args.epochs]:
        print(f"epoch {row['epoch']:>3}  LGA loss {row['loss']:+.3f}  " +
              "  ".join(f"{k} {row[k]:.2f}" for k in ("P 1%", "P 5%", "P 10%")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
