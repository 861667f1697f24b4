import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from vablib import config, runio, runstate, utils
from vablib.errors import CheckpointError, ConfigError, DataFormatError, RunConflictError


def _accelerators(monkeypatch, cuda=False, mps=False):
    """Pretend which accelerators this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [(False, False, "cpu"), (False, True, "mps"), (True, True, "cuda")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _accelerators(monkeypatch, cuda, mps)
    assert utils.get_device("auto").type == expected


def test_named_devices_are_checked_against_what_is_available(monkeypatch):
    _accelerators(monkeypatch)
    assert utils.get_device("cpu").type == "cpu" and utils.get_device(torch.device("cpu")).type == "cpu"
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            utils.get_device(spec)
    with pytest.raises(ConfigError, match="MPS is not available"):
        utils.get_device("mps")
    _accelerators(monkeypatch, cuda=True)
    picked = utils.get_device("cuda:1")
    assert (picked.type, picked.index) == ("cuda", 1)


@pytest.mark.parametrize("spec, message", [("gpu-please", "not a device name"), (3, "must be a string")])
def test_bad_device_names_raise_one_clear_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        utils.get_device(spec)


def test_seed_everything_repeats_draws_and_rejects_bad_seeds():
    utils.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    utils.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for bad in (-1, 1.5, "0", True):
        with pytest.raises(ConfigError):
            utils.seed_everything(bad)


def test_progress_can_be_switched_off():
    bar = utils.progress(range(3), enabled=False)
    assert bar.disable and list(bar) == [0, 1, 2]


def test_write_json_is_atomic_and_handles_numpy_and_nan(tmp_path):
    p = runio.write_json(tmp_path / "a" / "b.json", {"x": np.int64(3), "y": float("nan"), "z": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": 3, "y": None, "z": [0, 1]}
    assert [f.name for f in p.parent.iterdir()] == ["b.json"]  # no temporary left behind


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    p = runio.write_json(tmp_path / "c.json", {"good": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        runio.write_json(p, {"good": 2})
    assert json.loads(p.read_text()) == {"good": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["c.json"]


def test_jsonl_drops_a_line_cut_by_a_kill(tmp_path):
    p = tmp_path / "m.jsonl"
    runio.append_jsonl(p, {"epoch": 1})
    runio.append_jsonl(p, {"epoch": 2})
    with open(p, "a") as fh:
        fh.write('{"epoch": 3, "ac')
    assert runio.read_jsonl(p) == [{"epoch": 1}, {"epoch": 2}]


def test_checkpoint_roundtrip_and_refusals(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "epoch": 4, "rng": torch.get_rng_state()}
    p = runio.save_checkpoint(tmp_path / "ck.pt", state)
    back = runio.load_checkpoint(p)
    assert back["epoch"] == 4 and torch.equal(back["model"]["w"], torch.ones(2))

    (tmp_path / "trunc.pt").write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted"):
        runio.load_checkpoint(tmp_path / "trunc.pt")

    torch.save({"epoch": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vablib checkpoint"):
        runio.load_checkpoint(tmp_path / "foreign.pt")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"format": runio.CHECKPOINT_FORMAT, "x": _Evil(marker)}, p)
    with pytest.raises(CheckpointError, match="pickled code"):
        runio.load_checkpoint(p)
    assert not marker.exists()


def test_arrays_roundtrip_and_corruption(tmp_path):
    p = runio.save_arrays(tmp_path / "a.npz", x=np.arange(5, dtype=np.uint8), m=np.array([True, False]))
    back = runio.load_arrays(p)
    assert back["x"].dtype == np.uint8 and back["m"].tolist() == [True, False]
    (tmp_path / "bad.npz").write_bytes(p.read_bytes()[:30])
    with pytest.raises(DataFormatError):
        runio.load_arrays(tmp_path / "bad.npz")


def test_run_dir_records_and_refuses_conflicting_parameters(tmp_path):
    run = runio.RunDir(tmp_path / "run")
    run.record("00_setup_and_data", {"dataset": "digits", "seed": 0, "device": "cpu"})
    run.record("00_setup_and_data", {"dataset": "digits", "seed": 0, "device": "cuda"})  # device may change
    run.record("01_generate_poisoned_dataset", {"attack": "badnets"})
    assert run.params() == {"dataset": "digits", "seed": 0, "attack": "badnets"}
    with pytest.raises(RunConflictError, match=r"seed=0 \(by 00_setup_and_data\).*seed=1"):
        run.record("00_setup_and_data", {"dataset": "digits", "seed": 1})
    assert run.params()["seed"] == 0  # the refused call changed nothing


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot be written"):
        runio.RunDir(blocker / "run")


def test_begin_stage_records_environment(tmp_path):
    cfg = config.SetupConfig(seed=2, device="cpu")
    run = runstate.begin_stage("00_setup_and_data", str(tmp_path / "r"), cfg)
    saved = json.loads(run.config_path.read_text())
    assert saved["params"]["seed"] == 2 and "torch" in saved["environment"]["00_setup_and_data"]["versions"]
    assert runstate.recorded_setup(run).seed == 2


def test_recorded_profile_is_the_one_notebook_01_resolved(tmp_path):
    from vablib.errors import DataNotFoundError

    stage = "01_generate_poisoned_dataset"
    cpu = runstate.begin_stage(stage, str(tmp_path / "cpu"), config.TrainConfig.from_profile("cpu"), {"profile": "cpu"})
    assert runstate.recorded_profile(cpu) == "cpu"
    older = runstate.begin_stage(stage, str(tmp_path / "older"), config.TrainConfig())  # no profile recorded
    assert runstate.recorded_profile(older) == "paper"
    with pytest.raises(DataNotFoundError, match="run 01_generate_poisoned_dataset"):
        runstate.recorded_profile(runio.RunDir(tmp_path / "empty"))


@pytest.mark.parametrize("kw, message", [
    ({"dataset": "imagenet"}, "dataset='imagenet' is not known"),
    ({"seed": -3}, "seed must be an integer"),
    ({"device": "tpu"}, "device"),
    ({"download": "yes"}, "True or False"),
])
def test_setup_config_rejects_bad_values(kw, message):
    with pytest.raises(ConfigError, match=message):
        config.SetupConfig(**kw)


_TRAINING_STEPS = """
import resource, sys, torch
from vablib import utils
if sys.argv[1] == "1":
    assert utils.reuse_freed_memory()
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1))
x = torch.randn(160, 3, 32, 32)  # 42 MB activations: above glibc's default 32 MB mmap ceiling
def step():
    net(x).square().mean().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again():
    def faults(setting: str) -> int:  # a fresh process each: the setting cannot be undone
        out = subprocess.run([sys.executable, "-c", _TRAINING_STEPS, setting], capture_output=True, text=True,
                             timeout=120, check=True)
        return int(out.stdout.split()[-1])

    default, reused = faults("0"), faults("1")
    assert reused < default / 5, (default, reused)
