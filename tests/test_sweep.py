"""Sweeps (vablib.sweep), shared notebook-01 work (vablib.shared) and the table (vablib.table).

The fast tests check grids, layouts, the cache and the table on hand-made run folders; the slow
ones run real sweeps of the notebook series on digits with a tiny budget: a 2×2 grid under a
LocalCluster killed mid-grid and restarted, and a grid with a failing point on a `dask scheduler`
and `dask worker` started here."""
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from vablib import runio, shared, sweep, table, utils
from vablib.errors import ConfigError, DataNotFoundError

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# the smallest budget whose models learn something on 300 digits (ACC about 30%), so runs differ
TINY = {"device": "cpu", "profile": "demo", "epochs": 4, "batch_size": 16, "victim_warmup_samples": 300,
        "beneficiary_milestones": [0.5]}
TRIGGERS = '''
import numpy as np
from vablib import attacks


def plus_sign(x):
    out = x.copy()
    out[:, 1:6, 3, :] = 255
    out[:, 3, 1:6, :] = 255
    return out


attacks.custom_attack("plus_sign", plus_sign)
attacks.custom_attack("broken", lambda x: x.astype(np.float32))  # not uint8: generate refuses it
'''


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> dict:
    """TINY on 30 training and 10 test images per class of digits, as an npz dataset."""
    import numpy as np

    from vablib.data import load_digits

    ds, rng = load_digits(), np.random.default_rng(0)
    def pick(y, n):
        return np.concatenate([rng.choice(np.flatnonzero(y == c), n, replace=False) for c in range(10)])

    tr, te = pick(ds.y_train, 30), pick(ds.y_test, 10)
    path = tmp_path_factory.mktemp("data") / "digits300.npz"
    np.savez(path, x_train=ds.x_train[tr], y_train=ds.y_train[tr], x_test=ds.x_test[te], y_test=ds.y_test[te])
    return {**TINY, "dataset": "npz", "data_root": str(path)}


def write_grid(path: Path, fixed: dict, axes: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"fixed": fixed, "axes": axes}, sort_keys=False))
    return path


def sweep_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vablib", "sweep", *map(str, args), "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, **kwargs)


# ---------------------------------------------------------------- grids, checked before anything runs

def test_points_are_the_product_of_the_axes_named_by_their_values(tmp_path):
    grid = sweep.parse_grid({"fixed": {"profile": "demo", "data_root": "rel/data.npz"},
                             "axes": {"attack": ["badnets", "blended"], "seed": [0, 1, 2]}})
    found = sweep.points(grid, tmp_path / "out")
    assert [p.name for p in found][:4] == ["attack-badnets__seed-0", "attack-badnets__seed-1", "attack-badnets__seed-2",
                                           "attack-blended__seed-0"]
    assert len(found) == 6 and len({p.run_dir for p in found}) == 6
    p = found[4]
    assert p.axes == {"attack": "blended", "seed": 1} and p.run_dir == (tmp_path / "out" / p.name).resolve()
    assert p.params["data_root"] == str(Path("rel/data.npz").resolve())  # workers elsewhere find the same file
    assert p.params["cache_dir"] == str((tmp_path / "out" / sweep.SHARED).resolve()) and p.params["progress"] is False


def test_a_linked_axis_sets_its_parameters_together_and_its_first_names_the_folder(tmp_path):
    (tmp_path / "g.yaml").write_text("axes:\n  attack, poison_rate: [[badnets, 0.1], [sig, 0.8]]\n  seed: [0, 1]\n")
    found = sweep.points(sweep.load_grid(tmp_path / "g.yaml"), tmp_path)
    assert [p.name for p in found] == ["attack-badnets__seed-0", "attack-badnets__seed-1", "attack-sig__seed-0",
                                       "attack-sig__seed-1"]
    assert found[2].params["poison_rate"] == 0.8 and found[2].axes == {"attack": "sig", "seed": 0}


def test_points_that_differ_only_in_vab_settings_form_one_group(tmp_path):
    fixed = {k: v for k, v in TINY.items() if k != "device"}  # device changes no result: not a group of its own
    axes = {"seed": [0, 1], "lambda_u": [0.1, 0.5], "device": ["cpu", "auto"]}
    grid = sweep.parse_grid({"fixed": fixed, "axes": axes})
    groups = list(sweep.groups(sweep.points(grid, tmp_path)).values())
    assert [sorted({p.axes["seed"] for p in g}) for g in groups] == [[0], [1]]
    assert [len(g) for g in groups] == [4, 4]


def test_points_are_submitted_in_grid_order_each_as_one_task(tmp_path):
    fixed = {k: v for k, v in TINY.items() if k != "device"}
    grid = sweep.parse_grid({"fixed": fixed, "axes": {"seed": [0, 1, 2], "lambda_u": [0.1, 0.5]}})
    found = sweep.points(grid, tmp_path)
    plan = sweep.submissions(found)
    assert [t["point"].name for t in plan] == [p.name for p in found]  # each point once, in grid order
    assert [t["after_leader"] for t in plan] == [False, True] * 3  # lambda_u 0.5 reuses 0.1's notebooks 00-01
    # a worker runs the ready task of highest priority first: every seed-0 point before any seed-1 point
    assert [t["priority"] for t in plan] == [3, 3, 2, 2, 1, 1]


def test_a_point_fails_with_its_leaders_error_only_when_the_shared_notebooks_failed(tmp_path, monkeypatch):
    for var in (utils.THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # run_point sets them for its kernels
        monkeypatch.setenv(var, "1")
    failed = {"state": "failed", "point": "lead", "error": "ConfigError: bad", "seconds": 1.0}
    early = sweep.run_point("other", str(tmp_path / "x"), {}, 1, "t",
                            after={**failed, "notebook": str(tmp_path / "01_generate_poisoned_dataset.ipynb")})
    assert early["state"] == "failed" and early["point"] == "other"
    assert early["error"] == "notebooks 00-01, shared with lead, failed there: ConfigError: bad"
    # the leader failed later (its own V&B): this point runs; here it fails on its own, at its empty parameters
    late = sweep.run_point("other", str(tmp_path / "x"), {"no_such_parameter": 1}, 1, "t",
                           after={**failed, "notebook": str(tmp_path / "04_beneficiary_attentionmix.ipynb")})
    assert late["state"] == "failed" and "shared with" not in late["error"] and "no_such_parameter" in late["error"]


@pytest.mark.parametrize("text, message", [
    ("fixed: {seed: 0}\naxes: {seed: [1, 2]}\n", "set twice"),
    ("axes: {seed: [0, 1], 'attack, seed': [[badnets, 0]]}\n", "set twice"),
    ("axes: {seed: 3}\n", "non-empty list"),
    ("axes: {seed: [1, 1]}\n", "repeats a value"),
    ("axes: {'attack, poison_rate': [[badnets, 0.1], [sig]]}\n", "list of 2 values"),
    ("axes: {'attack, poison_rate': [[badnets, 0.1], [badnets, 0.2]]}\n", "repeats a value of attack"),
    ("fixed: {run_dir: x}\n", "set by the sweep"),
    ("grid: {seed: [1]}\n", "'fixed'"),
    ("axes: {seed: [0, 1\n", "not valid YAML"),
])
def test_malformed_grids_are_one_error(tmp_path, text, message):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        sweep.load_grid(path)
    assert "\n" not in str(err.value)


def test_yaml_exponents_are_numbers(tmp_path):
    (tmp_path / "g.yaml").write_text("fixed: {victim_lr: 1e-3, lambda_u: -2E+1}\n")
    assert sweep.load_grid(tmp_path / "g.yaml")["fixed"] == {"victim_lr": 0.001, "lambda_u": -20.0}


def test_a_bad_value_in_one_point_names_the_point_and_nothing_is_created(tmp_path):
    out = tmp_path / "out"
    grid = sweep.parse_grid({"fixed": TINY, "axes": {"seed": [0], "poison_rate": [0.1, 1.5]}})
    with pytest.raises(ConfigError, match=r"point seed-0__poison_rate-1.5: poison_rate must be a number in \(0, 1\]"):
        sweep.check_points(sweep.points(grid, out), out)
    with pytest.raises(ConfigError, match="declared by none of the notebooks"):
        sweep.check_points(sweep.points(sweep.parse_grid({"fixed": {"epochz": 2}}), out), out)
    assert not out.exists()


def test_values_that_would_share_a_folder_are_refused(tmp_path):
    grid = sweep.parse_grid({"axes": {"attack_params": [{"patch": "a b"}, {"patch": "a/b"}]}})
    with pytest.raises(ConfigError, match="would share the run folder"):
        sweep.check_points(sweep.points(grid, tmp_path), tmp_path)


def test_a_changed_grid_on_an_earlier_sweep_folder_is_refused(tmp_path):
    grid = sweep.parse_grid({"fixed": {**TINY, "epochs": 3}, "axes": {"seed": [0]}})
    earlier = {"seed-0": {"params": sweep.points(grid, tmp_path)[0].params}}
    runio.write_json(tmp_path / sweep.STATUS, {"points": earlier})
    sweep.check_points(sweep.points(grid, tmp_path), tmp_path)  # the same grid resumes
    grid["fixed"]["epochs"] = 5
    with pytest.raises(ConfigError, match=r"other values of \['epochs'\]"):
        sweep.check_points(sweep.points(grid, tmp_path), tmp_path)


def test_the_command_line_refuses_a_bad_grid_in_one_line_before_running(tmp_path):
    grid = write_grid(tmp_path / "g.yaml", TINY, {"seed": [0, 1], "victim_warmup_samples": [1000, -5]})
    done = sweep_cli(grid, "--out", tmp_path / "out", timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "victim_warmup_samples" in done.stderr
    assert not (tmp_path / "out").exists()


def test_layout_fills_the_cores():
    assert sweep.layout(None, None, n_points=4, cores=2) == (2, 1)
    assert sweep.layout(None, None, n_points=1, cores=8) == (1, 8)
    assert sweep.layout(1, None, n_points=4, cores=2) == (1, 2)
    assert sweep.layout(None, 2, n_points=4, cores=8) == (4, 2)
    with pytest.raises(ConfigError, match="--workers"):
        sweep.layout(0, None, n_points=4, cores=2)


def test_threads_come_from_the_environment_when_set(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(utils.THREADS_ENV, "1")
        assert utils.set_cpu_threads() == 1 and torch.get_num_threads() == 1
        assert utils.set_cpu_threads(2) == 2  # an explicit count wins
        monkeypatch.setenv(utils.THREADS_ENV, "two")
        with pytest.raises(ConfigError, match=utils.THREADS_ENV):
            utils.set_cpu_threads()
    finally:
        torch.set_num_threads(before)


def test_one_line_errors():
    class Executed(Exception):
        ename, evalue = "ConfigError", "poison_rate must be a number\nin (0, 1]"

    assert sweep.one_line(Executed()) == "ConfigError: poison_rate must be a number"
    assert sweep.one_line(ValueError("\n  bad value \nmore")) == "bad value"


# ---------------------------------------------------------------- shared notebook-01 work and attack files

class FakeRun:
    def __init__(self, path: Path):
        self.path = path
        self.artifacts = path / "artifacts"
        self.artifacts.mkdir(parents=True)


def test_the_work_cache_links_published_items_and_keeps_a_runs_own(tmp_path):
    first, second, third = (FakeRun(tmp_path / n) for n in ("a", "b", "c"))
    for name in ("poisoned.npz", "poisoned_manifest.json", "baseline.json"):
        (first.artifacts / name).write_text(f"first {name}")
    cache = shared.WorkCache(tmp_path / "cache", "k1")
    assert not cache.fetch(second)  # nothing published yet
    cache.publish(first)
    assert cache.fetch(second)
    for name in ("poisoned.npz", "baseline.json"):
        assert os.path.samefile(first.artifacts / name, second.artifacts / name)
    assert not (second.artifacts / "clean_floor.json").exists()
    (third.artifacts / "baseline.json").write_text("third's own")
    assert cache.fetch(third) and (third.artifacts / "baseline.json").read_text() == "third's own"
    (third.artifacts / "clean_floor.json").write_text("third's floor")
    runio.atomic_write_bytes(third.artifacts / "poisoned.npz", b"another poisoning")  # as vablib writes: a new file
    cache.publish(third)  # adds what the cache lacks; the first poisoned set stays
    assert (cache.root / "poisoned" / "poisoned.npz").read_text() == "first poisoned.npz"
    assert (cache.root / "clean_floor" / "clean_floor.json").read_text() == "third's floor"
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_without_a_cache_dir_nothing_is_shared(tmp_path):
    run = FakeRun(tmp_path / "a")
    (run.artifacts / "baseline.json").write_text("x")
    cache = shared.WorkCache(None, "k")
    cache.publish(run)
    assert not cache.fetch(run) and sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_an_attack_file_registers_its_attacks_and_is_hashed(tmp_path):
    from vablib import attacks

    path = tmp_path / "triggers.py"
    path.write_text(TRIGGERS)
    recorded = shared.load_attack_file(str(path))
    assert recorded == {"attack_file_sha256": hashlib.sha256(TRIGGERS.encode()).hexdigest()[:16]}
    assert attacks.AttackConfig("plus_sign").attack == "plus_sign"
    assert shared.load_attack_file(None) == {}
    with pytest.raises(DataNotFoundError, match="not a Python file"):
        shared.load_attack_file(str(tmp_path / "missing.py"))
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="registered no attack"):
        shared.load_attack_file(str(tmp_path / "empty.py"))


# ---------------------------------------------------------------- the table on hand-made run folders

def fake_run(folder: Path, attack: str, seed: int, acc: float, asr: float, nd_asr: float, complete: bool = True,
             clean_floor: dict | None = None):
    final = {"epoch": 2, "acc": acc, "asr": asr, "ra": 1 - asr, "precision": 0.9, "recall": 0.8, "auroc": 0.95}
    runio.write_json(folder / "summary.json", {
        "complete": complete, "epochs_done": 2, "final": final,
        "best_acc_epoch": {**final, "epoch": 1, "acc": acc + 0.01},
        "no_defense": {"acc": 0.9, "asr": nd_asr, "ra": 0.05, "seconds": 3.0}, "clean_floor": clean_floor,
        "seconds_per_phase": {"warmup": 1.0, "rounds": 2.0, "mix": 3.0, "suppress": 4.0}})
    runio.write_json(folder / "config.json", {"params": {"attack": attack, "seed": seed, "epochs": 2,
                                                         "attack_params": {"patch_size": 3}},
                                              "environment": {"00": {"git_commit": "abc"}}})
    runio.write_json(folder / "artifacts" / "dataset.json", {"fingerprint": "f00"})


def test_the_table_holds_the_runs_numbers_grouped_by_all_but_seed(tmp_path):
    values = {("badnets", 0): (0.80, 0.02, 1.0), ("badnets", 1): (0.84, 0.04, 0.98), ("blended", 0): (0.70, 0.10, 0.9)}
    for (attack, seed), (acc, asr, nd) in values.items():
        fake_run(tmp_path / f"attack-{attack}__seed-{seed}", attack, seed, acc, asr, nd)
    fake_run(tmp_path / "attack-blended__seed-1", "blended", 1, 0.1, 0.9, 0.9, complete=False)
    paths = table.write_tables(tmp_path)
    runs = table.load_runs(tmp_path)
    assert len(runs) == 4 and runs["complete"].sum() == 3
    row = runs.set_index("run").loc["attack-badnets__seed-1"]
    assert (row["vab_acc"], row["vab_best_acc"], row["no_defense_asr"], row["detection_recall"]) == (
        0.84, 0.84 + 0.01, 0.98, 0.8)
    assert row["seconds_suppress"] == 4.0 and row["git_commit"] == "abc" and row["fingerprint"] == "f00"
    assert json.loads(row["attack_params"]) == {"patch_size": 3}
    assert table.group_columns(runs, tmp_path) == ["attack"]
    text = paths["table.md"].read_text()
    acc = [values[("badnets", s)][0] for s in (0, 1)]
    expected = f"| badnets | 2 | {100 * statistics.mean(acc):.1f} ± {100 * statistics.stdev(acc):.1f} |"
    assert expected in text
    assert "| blended | 1 | 70.0 | 90.0 |" in text  # one complete run: no std; the incomplete one left out
    assert "clean floor" not in text  # no run trained it: no empty columns
    assert paths["acc_vs_asr.png"].stat().st_size > 5_000


def test_the_table_puts_the_clean_floor_beside_vab_where_it_was_trained(tmp_path):
    for seed, floor_asr in ((0, 0.02), (1, 0.06)):
        fake_run(tmp_path / f"seed-{seed}", "badnets", seed, 0.8, 0.05, 1.0,
                 clean_floor={"acc": 0.85, "asr": floor_asr, "ra": 0.84, "seconds": 5.0})
    text = table.write_tables(tmp_path)["table.md"].read_text()
    heads = [h.strip() for h in text.splitlines()[4].strip("|").split("|")]
    cells = [c.strip() for c in text.splitlines()[6].strip("|").split("|")]
    assert heads[:4] == ["n", "V&B ACC", "no defense ACC", "clean floor ACC"]
    assert cells[heads.index("clean floor ASR")] == f"4.0 ± {100 * statistics.stdev([0.02, 0.06]):.1f}"
    assert cells[heads.index("V&B ASR")] == "5.0 ± 0.0"


def test_other_defenses_get_their_columns_and_table_cells(tmp_path):
    for seed, abl_acc in ((0, 0.6), (1, 0.7)):
        run = tmp_path / f"attack-badnets__seed-{seed}"
        fake_run(run, "badnets", seed, 0.8, 0.02, 1.0)
        runio.write_json(run / "artifacts" / "defenses.json", [
            {"defense": "vab", "acc": 0.8, "asr": 0.02, "ra": 0.9},  # summary.json's: not repeated
            {"defense": "abl", "acc": abl_acc, "asr": 0.5, "ra": 0.3, "seconds": 7.0,
             "isolation": {"precision": 0.25, "recall": 0.1, "n_isolated": 14}},
            {"defense": "my_own", "acc": 0.5, "asr": 0.1, "ra": 0.4, "seconds": 2.0, "isolation": None}])
    paths = table.write_tables(tmp_path)
    runs = table.load_runs(tmp_path).set_index("run")
    assert table.other_defenses(runs) == ["abl", "my_own"] and "defense_vab_acc" not in runs
    row = runs.loc["attack-badnets__seed-1"]
    assert (row["defense_abl_acc"], row["defense_abl_isolation_recall"], row["seconds_defense_abl"]) == (0.7, 0.1, 7.0)
    assert pd.isna(row["defense_my_own_isolation_precision"])
    assert "defense_abl_acc" not in table.parameter_columns(runs.reset_index())
    text = paths["table.md"].read_text()
    assert "| abl ACC |" in text and "| my own ACC |" in text and "| abl isolation PRECISION |" in text
    heads = [h.strip() for h in text.splitlines()[4].strip("|").split("|")]
    cells = [c.strip() for c in text.splitlines()[6].strip("|").split("|")]
    assert cells[heads.index("abl ACC")] == f"{100 * statistics.mean([0.6, 0.7]):.1f} ± {100 * statistics.stdev([0.6, 0.7]):.1f}"


def test_defenses_csv_has_one_row_per_run_and_defense(tmp_path):
    for seed, abl_acc in ((0, 0.6), (1, 0.7)):
        run = tmp_path / f"attack-badnets__seed-{seed}"
        fake_run(run, "badnets", seed, 0.8 + seed / 100, 0.02, 1.0)
        runio.write_json(run / "artifacts" / "defenses.json", [
            {"defense": "abl", "acc": abl_acc, "asr": 0.5, "ra": 0.3, "seconds": 7.0,
             "isolation": {"precision": 0.25, "recall": 0.1, "n_isolated": 14}}])
    table.write_tables(tmp_path)
    rows = pd.read_csv(tmp_path / "defenses.csv").set_index(["run", "defense"])
    # the clean floor was not trained (summary.json's clean_floor is None): no row for it
    assert sorted(rows.index) == [(f"attack-badnets__seed-{s}", d) for s in (0, 1) for d in ("abl", "none", "vab")]
    vab, abl, none = (rows.loc[("attack-badnets__seed-1", d)] for d in ("vab", "abl", "none"))
    assert (vab["acc"], vab["isolation_recall"], vab["seconds"], vab["label"]) == (0.81, 0.8, 10.0, "V&B")
    assert (abl["acc"], abl["isolation_precision"], abl["seconds"], abl["attack"], abl["seed"]) == (
        0.7, 0.25, 7.0, "badnets", 1)
    assert (none["asr"], none["seconds"]) == (1.0, 3.0) and pd.isna(none["isolation_recall"])


def test_the_sweep_notebook_is_outside_the_series_synced_and_without_outputs():
    import jupytext
    import nbformat

    from vablib import runner

    nb_path = ROOT / "notebooks" / "sweep_analysis.ipynb"
    assert nb_path not in runner.series()
    nb = nbformat.read(nb_path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert [c.source for c in jupytext.read(nb_path.with_suffix(".py")).cells] == [c.source for c in nb.cells]


# ---------------------------------------------------------------- real sweeps (slow)

def wait_for(condition, timeout: float, what: str, every: float = 1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def killed_and_restarted(tmp_path_factory, tiny_digits):
    """A 2×2 grid (seed × the beneficiary's lr, a V&B setting) under a LocalCluster of 2 workers,
    SIGKILLed once a point is complete and another is not, then started again with the same command."""
    import psutil

    tmp = tmp_path_factory.mktemp("sweep")
    grid = write_grid(tmp / "grid.yaml", tiny_digits, {"seed": [0, 1], "beneficiary_lr": [0.1, 0.03]})
    out = tmp / "out"
    found = sweep.points(sweep.load_grid(grid), out)
    cmd = [sys.executable, "-m", "vablib", "sweep", str(grid), "--out", str(out), "--workers", "2",
           "--threads-per-worker", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: any(p.complete() for p in found) or proc.poll() is not None, 600, "a first complete point")
        assert proc.poll() is None, "the sweep ended before it could be killed"
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # the workers and their notebook kernels end with the sweep instead of writing on
    _, alive = psutil.wait_procs(children, timeout=60)
    for p in alive:
        p.kill()
    assert not alive, f"processes outlived the killed sweep: {[p.pid for p in alive]}"
    finished = {p.name: (p.run_dir / "summary.json").read_bytes() for p in found if p.complete()}
    assert 0 < len(finished) < len(found)
    restarted = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return {"out": out, "points": found, "finished": finished, "restarted": restarted}


@pytest.mark.slow
def test_a_killed_sweep_restarted_completes_with_the_finished_results_unchanged(killed_and_restarted):
    done, found = killed_and_restarted["restarted"], killed_and_restarted["points"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(p.complete() for p in found)
    for name, before in killed_and_restarted["finished"].items():
        assert (killed_and_restarted["out"] / name / "summary.json").read_bytes() == before, name
    status = runio.read_json(killed_and_restarted["out"] / sweep.STATUS)
    assert status["counts"]["done"] == 4 and status["failed"] == []


@pytest.mark.slow
def test_points_differing_in_vab_settings_share_the_poisoned_set_and_baseline(killed_and_restarted):
    out = killed_and_restarted["out"]
    for seed in (0, 1):
        a, b = (out / f"seed-{seed}__beneficiary_lr-{lr}" / "artifacts" for lr in (0.1, 0.03))
        for name in ("poisoned.npz", "baseline.json"):
            assert os.path.samefile(a / name, b / name), (seed, name)
    assert not os.path.samefile(out / "seed-0__beneficiary_lr-0.1/artifacts/baseline.json",
                                out / "seed-1__beneficiary_lr-0.1/artifacts/baseline.json")


@pytest.mark.slow
def test_the_sweep_table_equals_the_runs_summaries(killed_and_restarted):
    out = killed_and_restarted["out"]
    runs = table.load_runs(out).set_index("run")
    summaries = {p.name: json.loads((p.run_dir / "summary.json").read_text()) for p in killed_and_restarted["points"]}
    assert sorted(runs.index) == sorted(summaries)
    for name, s in summaries.items():
        row = runs.loc[name]
        assert row["vab_acc"] == s["final"]["acc"] and row["vab_asr"] == s["final"]["asr"]
        assert row["vab_best_acc"] == s["best_acc_epoch"]["acc"] and row["detection_auroc"] == s["final"]["auroc"]
        assert row["no_defense_asr"] == s["no_defense"]["asr"] and row["seconds_mix"] == s["seconds_per_phase"]["mix"]
    text = (out / "table.md").read_text()
    for lr in (0.1, 0.03):
        acc = [summaries[f"seed-{seed}__beneficiary_lr-{lr}"]["final"]["acc"] for seed in (0, 1)]
        assert f"| {lr} | 2 | {100 * statistics.mean(acc):.1f} ± {100 * statistics.stdev(acc):.1f} |" in text
    assert (out / "acc_vs_asr.png").stat().st_size > 5_000


@pytest.mark.slow
def test_the_sweep_analysis_notebook_runs_on_the_sweep(killed_and_restarted, tmp_path):
    import papermill as pm

    executed = tmp_path / "sweep_analysis.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "sweep_analysis.ipynb"), str(executed), kernel_name="python3",
                        parameters={"sweep_dir": str(killed_and_restarted["out"])}, progress_bar=False)
    outputs = [o for c in json.loads(executed.read_text())["cells"] for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.fixture
def dask_cluster():
    """A real `dask scheduler` and `dask worker` (2 threads) on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(VENV_BIN / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "2", "--no-dashboard", "--host",
                                       "127.0.0.1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_a_failing_point_is_reported_while_the_others_finish_on_a_dask_scheduler(dask_cluster, tiny_digits, tmp_path):
    triggers = tmp_path / "triggers.py"
    triggers.write_text(TRIGGERS)
    grid = write_grid(tmp_path / "grid.yaml", {**tiny_digits, "attack_file": str(triggers)},
                      {"attack": ["plus_sign", "broken"]})
    out = tmp_path / "out"
    done = sweep_cli(grid, "--out", out, "--scheduler", dask_cluster, timeout=900)
    assert done.returncode == 1, done.stderr[-2000:]
    status = runio.read_json(out / sweep.STATUS)
    assert status["failed"] == ["attack-broken"] and status["points"]["attack-plus_sign"]["state"] == "done"
    failed = status["points"]["attack-broken"]
    assert "ConfigError" in failed["error"] and "uint8" in failed["error"] and "\n" not in failed["error"]
    assert failed["notebook"].endswith("01_generate_poisoned_dataset.ipynb") and Path(failed["notebook"]).is_file()
    assert "failed attack-broken" in done.stderr and failed["notebook"] in done.stderr
    sha = hashlib.sha256(TRIGGERS.encode()).hexdigest()[:16]
    run = out / "attack-plus_sign"
    assert json.loads((run / "summary.json").read_text())["complete"]
    assert json.loads((run / "config.json").read_text())["params"]["attack_file_sha256"] == sha
    assert json.loads((run / "artifacts" / "poisoned_manifest.json").read_text())["attack_file_sha256"] == sha
