"""Throughput of vablib's V&B phases against a reference-style pipeline, same model, data, batch
size and device, in one run.

The reference-style path is written here in the manner of the paper's public code: a DataLoader
with per-sample PIL transforms, entropy and statistics computed sample by sample in Python (one
host sync per sample), and separate forward passes per step, some repeated on the same batch with
the same weights. vablib's path is the library itself (uint8 data on the device, batched
augmentation, one no-grad pass for both views, inference mode and large batches for scoring,
channels_last and bf16 autocast on CUDA).

    .venv/bin/python benchmarks/throughput.py --device cpu --width 1.0 --n 512
    .venv/bin/python benchmarks/throughput.py --device cuda --n 5170 --compile

Prints a table and a JSON line; --out writes the JSON to a file.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vablib import runio
from vablib.attentionmix import attention_mix
from vablib.batches import NORMALIZATION
from vablib.config import TrainConfig, VabConfig
from vablib.data import load_dataset
from vablib.models import build_model
from vablib.utils import get_device
from vablib.vab import VabTrainer

from common import DEFAULT_DATA

PHASES = ("scoring", "victim_epoch", "attentionmix_epoch", "suppression_epoch")


# ---------------------------------------------------------------- the data both paths use

def poisoned_subset(ds, n: int, seed: int = 0):
    """n training images with a 3×3 BadNets patch on 10% of them (labels → 0) and 20% of the set
    marked suspicious, as a V&B run would have it mid-training."""
    rng = np.random.default_rng(seed)
    reps = math.ceil(n / len(ds.y_train))
    x = np.concatenate([ds.x_train] * reps)[:n].copy()
    y = np.concatenate([ds.y_train] * reps)[:n].copy()
    poison = np.zeros(n, bool)
    poison[rng.choice(n, n // 10, replace=False)] = True
    x[poison, -4:-1, -4:-1, :] = 255
    y[poison] = 0
    suspicious = poison.copy()
    suspicious[rng.choice(np.flatnonzero(~poison), n // 10, replace=False)] = True
    data = types.SimpleNamespace(
        x_train=x, y_train=y, poison_mask=poison, x_test=ds.x_test[:256], y_test=ds.y_test[:256],
        x_bd_test=ds.x_test[:0], y_bd_target=ds.y_test[:0], y_bd_true=ds.y_test[:0], classes=ds.classes,
        dataset_name="cifar10" if ds.name.startswith("cifar10") else ds.name, num_classes=ds.num_classes,
        manifest={"attack": "bench"})
    return data, torch.as_tensor(suspicious)


# ---------------------------------------------------------------- reference-style path

class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.x[i] if self.x.shape[-1] == 3 else self.x[i][..., 0])
        return self.transform(img), int(self.y[i]), i


def reference_loader(x, y, train: bool, batch_size: int, workers: int, mean, std, two_views: bool = False):
    import torchvision.transforms as T

    ops = ([T.RandomCrop(x.shape[1], padding=4), T.RandomHorizontalFlip()] if train else []) + \
        [T.ToTensor(), T.Normalize(mean, std)]
    tf = T.Compose(ops)
    if two_views:
        base = tf
        tf = lambda img: (base(img), base(img))  # noqa: E731
    return torch.utils.data.DataLoader(PILDataset(x, y, tf), batch_size=batch_size, shuffle=train,
                                       num_workers=workers, drop_last=False)


class ReferenceStyle:
    """The reference's habits: PIL transforms per sample, Python loops with a host sync per sample,
    and separate (partly repeated) forward passes."""

    def __init__(self, data, suspicious, width, device, batch_size, workers):
        k, ch = data.num_classes, data.x_train.shape[3]
        self.device, self.bs, self.workers, self.k = device, batch_size, workers, k
        mean, std = NORMALIZATION.get(data.dataset_name, ((0.5,) * ch, (0.5,) * ch))
        self.mean, self.std = mean, std
        self.data, self.suspicious = data, suspicious.numpy()
        self.victim = build_model("resnet18", k, ch, width).to(device)
        self.ben = build_model("resnet18", k, ch, width).to(device)
        self.vopt = torch.optim.Adam(self.victim.parameters(), 1e-3, weight_decay=5e-4)
        self.bopt = torch.optim.SGD(self.ben.parameters(), 0.1, momentum=0.9, weight_decay=5e-4)

    def loader(self, mask, train, two_views=False):
        idx = np.flatnonzero(mask)
        return reference_loader(self.data.x_train[idx], self.data.y_train[idx], train, self.bs, self.workers,
                                self.mean, self.std, two_views)

    def scoring(self):
        self.victim.eval()
        scores = []
        with torch.no_grad():
            for x, _, _ in self.loader(np.ones(len(self.data.y_train), bool), train=False):
                p = torch.softmax(self.victim(x.to(self.device)), 1)
                for i in range(len(p)):  # per-sample entropy, one host sync each
                    scores.append(float(-(p[i] * torch.log(p[i] + 1e-12)).sum() / self.k))
        return len(scores)

    def victim_epoch(self):
        self.victim.train()
        n, correct, loss_sum = 0, 0, 0.0
        for x, y, _ in self.loader(np.ones(len(self.data.y_train), bool), train=False):
            x, y = x.to(self.device), y.to(self.device)
            loss = F.cross_entropy(self.victim(x), y)
            self.vopt.zero_grad()
            loss.backward()
            self.vopt.step()
            loss_sum += loss.item()
            pred = self.victim(x).argmax(1)  # statistics from a second forward pass
            for i in range(len(y)):  # per-sample counting
                correct += int(pred[i] == y[i])
            n += len(y)
        return n

    def _features(self, x):
        with torch.no_grad():
            return self.ben.features(x)

    def attentionmix_epoch(self):
        self.ben.train()
        n = 0
        for (x1, x2), y, _ in self.loader(~self.suspicious, train=True, two_views=True):
            x1, x2, y = x1.to(self.device), x2.to(self.device), y.to(self.device)
            t = F.one_hot(y, self.k).float()
            f1, f2 = self._features(x1), self._features(x2)  # two separate no-grad passes
            m1, t1, _ = attention_mix(x1, t, f1, torch.randperm(len(y), device=self.device))
            m2, t2, _ = attention_mix(x2, t, f2, torch.randperm(len(y), device=self.device))
            loss = -(torch.cat([t1, t2]) * F.log_softmax(self.ben(torch.cat([m1, m2])), 1)).sum(1).mean()
            self.bopt.zero_grad()
            loss.backward()
            self.bopt.step()
            n += len(y)
        return n

    def suppression_epoch(self):
        self.ben.train()
        self.victim.eval()
        lab = self.loader(~self.suspicious, train=True, two_views=True)
        plain_l = self.loader(~self.suspicious, train=False)
        unl = self.loader(self.suspicious, train=True, two_views=True)
        plain_u = self.loader(self.suspicious, train=False)
        n = 0
        unl_it, pu_it = iter(unl), iter(plain_u)
        for ((x1, x2), y, _), (xp, _, _) in zip(lab, plain_l):
            try:
                (u1, u2), _, _ = next(unl_it)
                up, _, _ = next(pu_it)
            except StopIteration:
                unl_it, pu_it = iter(unl), iter(plain_u)
                (u1, u2), _, _ = next(unl_it)
                up, _, _ = next(pu_it)
            x1, x2, xp, y = x1.to(self.device), x2.to(self.device), xp.to(self.device), y.to(self.device)
            u1, u2, up = u1.to(self.device), u2.to(self.device), up.to(self.device)
            with torch.no_grad():
                q = torch.softmax(self.victim(xp) / 3, 1)  # separate victim passes
                qu = torch.softmax(self.victim(up) / 3, 1)
                pu = (torch.softmax(self.ben(u1), 1) + torch.softmax(self.ben(u2), 1)) / 2
            t = (F.one_hot(y, self.k).float() - q).clamp(0, 1)
            tu = (F.one_hot(pu.argmax(1), self.k).float() - qu[:len(pu)]).clamp(0, 1)
            f1, f2 = self._features(x1), self._features(x2)
            m1, t1, _ = attention_mix(x1, t, f1, torch.randperm(len(y), device=self.device))
            m2, t2, _ = attention_mix(x2, t, f2, torch.randperm(len(y), device=self.device))
            logits = self.ben(torch.cat([m1, m2]))
            lx = -(torch.cat([t1, t2]) * F.log_softmax(logits, 1)).sum(1).mean()
            lu = -(torch.cat([tu, tu]) * F.log_softmax(self.ben(torch.cat([u1, u2])), 1)).sum(1).mean()
            loss = lx + 0.1 * lu
            self.bopt.zero_grad()
            loss.backward()
            self.bopt.step()
            pred = logits[:len(y)].argmax(1)
            correct = 0
            for i in range(len(y)):  # per-sample statistics, one host sync each
                correct += int(pred[i] == y[i])
            n += len(y)
        return n


# ---------------------------------------------------------------- vablib path

class VablibPath:
    def __init__(self, data, suspicious, width, device, batch_size, compile_model):
        train_cfg = TrainConfig(model="resnet18", width=width, epochs=200, batch_size=batch_size)
        vab_cfg = VabConfig(victim_warmup_samples=0, victim_batch_size=batch_size)
        self.t = VabTrainer(data, train_cfg, vab_cfg, device, 0, None, progress=False)
        self.t.tracker.suspicious = suspicious.to(self.t.device)
        self.t.tracker.ema = torch.rand(len(suspicious), device=self.t.device)
        if compile_model:
            self.t.beneficiary = torch.compile(self.t.beneficiary)
            self.t.victim.model = torch.compile(self.t.victim.model)

    def scoring(self):
        return len(self.t.victim.entropy(self.t.x, self.t.normalize))

    def victim_epoch(self):
        self.t.train_victim(torch.arange(len(self.t.x), device=self.t.device), warmup=True)
        return len(self.t.x)

    def attentionmix_epoch(self):
        self.t.mix_epoch(1)
        return int((~self.t.suspicious).sum())

    def suppression_epoch(self):
        self.t.suppress_epoch(self.t.train_cfg.epochs)
        return int((~self.t.suspicious).sum())


# ---------------------------------------------------------------- measuring

def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # Linux: reset VmHWM, the process's peak RSS
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the whole run's peak


def measure(fn, device, repeats: int) -> dict:
    reset_peak_memory(device)
    fn()  # warm-up (cudnn autotune, compile, allocator)
    sync(device)
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"images": n, "seconds": best, "img_per_s": n / best, "peak_mb": peak_memory_mb(device)}


def profile_epoch(path: VablibPath, device, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        path.attentionmix_epoch()
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="npz dataset (falls back to digits when absent)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier")
    ap.add_argument("--n", type=int, default=512, help="training images per epoch")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference-style path")
    ap.add_argument("--compile", action="store_true", help="torch.compile vablib's models")
    ap.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    ap.add_argument("--scaling", nargs="*", type=int, default=[1000, 2000, 5000],
                    help="training-set sizes for the linear-cost check (vablib AttentionMix epoch)")
    ap.add_argument("--scaling-width", type=float, default=None, help="width for the scaling check (default --width)")
    ap.add_argument("--profile", action="store_true", help="print a profile of one vablib AttentionMix epoch")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    device = get_device(args.device)
    torch.manual_seed(0)
    ds = load_dataset("npz", args.data) if Path(args.data).exists() else load_dataset("digits")
    data, suspicious = poisoned_subset(ds, args.n)
    results = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "width": args.width, "n": args.n, "batch_size": args.batch_size, "phases": {}}
    print(f"device {device}, ResNet-18 width {args.width}, {args.n} images, batch {args.batch_size}")
    # the reference-style path first: building vablib's trainer switches the process to vablib's
    # CPU allocator setting (utils.reuse_freed_memory), which the reference code does not have
    ref = ReferenceStyle(data, suspicious, args.width, device, args.batch_size, args.workers)
    ref_results = {phase: measure(getattr(ref, phase), device, args.repeats) for phase in args.phases}
    del ref
    fast = VablibPath(data, suspicious, args.width, device, args.batch_size, args.compile)
    print(f"{'phase':20s} {'reference img/s':>16s} {'vablib img/s':>14s} {'ratio':>7s} {'ref MB':>8s} {'vablib MB':>10s}")
    for phase in args.phases:
        r, v = ref_results[phase], measure(getattr(fast, phase), device, args.repeats)
        ratio = v["img_per_s"] / r["img_per_s"]
        results["phases"][phase] = {"reference": r, "vablib": v, "ratio": ratio}
        print(f"{phase:20s} {r['img_per_s']:16.1f} {v['img_per_s']:14.1f} {ratio:7.2f} {r['peak_mb']:8.0f} "
              f"{v['peak_mb']:10.0f}", flush=True)
    if args.scaling:
        width = args.scaling_width or args.width
        results["scaling"] = {}
        for n in args.scaling:
            d, s = poisoned_subset(ds, n)
            m = measure(VablibPath(d, s, width, device, args.batch_size, args.compile).attentionmix_epoch, device, 1)
            results["scaling"][n] = {"seconds_per_epoch": m["seconds"], "seconds_per_1k": 1000 * m["seconds"] / n}
            print(f"scaling (width {width}): {n} images → {m['seconds']:.2f} s/epoch "
                  f"({1000 * m['seconds'] / n:.2f} s per 1k images)", flush=True)
    if args.profile:
        print(profile_epoch(fast, device))
    if args.out:
        runio.write_json(args.out, results)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
