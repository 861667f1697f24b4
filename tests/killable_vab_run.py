"""A small V&B run for the SIGKILL test: resumes from its run folder, prints a line at each point
where the test may kill it, and writes summary.json at the end. Usage: killable_vab_run.py RUN_DIR"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import make_badnets_like  # noqa: E402

from vablib import pipeline, runio  # noqa: E402
from vablib.config import TrainConfig, VabConfig  # noqa: E402
from vablib.data import load_digits  # noqa: E402
from vablib.vab import VabTrainer  # noqa: E402

torch.set_num_threads(1)
data = make_badnets_like(load_digits())
trainer = VabTrainer(data, TrainConfig(model="convnet", width=0.25, epochs=4, batch_size=64),
                     VabConfig(victim_warmup_samples=3000, checkpoint_every=1), "cpu", 0,
                     runio.RunDir(sys.argv[1]), progress=False)
print(f"resumed {trainer.resume()} at epoch {trainer.epoch}", flush=True)
trainer.run_phase("suppress", on_epoch=lambda r: print(f"epoch {r['epoch']}", flush=True))
pipeline.summarize(trainer)
print("done", flush=True)
