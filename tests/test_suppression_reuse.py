"""Runs that differ only in suppression settings are the same run up to the end of AttentionMix:
benchmarks/vab_suppression.py starts other suppression settings from a run's after_mix.pt."""
import dataclasses
import json

import pytest
import torch

from vablib import runio
from vablib.config import SUPPRESSION_FIELDS, TrainConfig, VabConfig
from vablib.vab import VabTrainer

BUDGET = TrainConfig(model="convnet", width=0.25, epochs=3, batch_size=64)
# two AttentionMix epochs (a re-selection between them), then one suppression epoch
BASE = VabConfig(victim_warmup_samples=600, mix_fraction=2 / 3, checkpoint_every=1)
# every suppression setting away from its default
OTHER = dataclasses.replace(BASE, temperature=1.0, lambda_u=0.9, lambda_u_late=2.0, lambda_switch=0.25,
                            suppress_labelled=not BASE.suppress_labelled, pseudo_confidence=0.0)
UNTIMED = {"seconds", "timings_json"}  # wall-clock times: never equal between two runs


def _run(data, vab_cfg, run_dir):
    run = runio.RunDir(run_dir)
    VabTrainer(data, BUDGET, vab_cfg, "cpu", 0, run, progress=False).run_phase("suppress")
    rows = [{k: v for k, v in r.items() if k not in UNTIMED} for r in runio.read_jsonl(run.path / "metrics.jsonl")]
    return run, rows


def _checkpoint(run, name):
    return runio.load_checkpoint(run.checkpoints / f"{name}.pt")


def _assert_same(a, b, where="state"):
    """Every tensor bit for bit, every other value equal, JSON-encoded entries compared decoded."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a.keys() - UNTIMED:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif where.endswith("_json']"):
        _assert_same(json.loads(a), json.loads(b), where)
    else:
        assert a == b, where


def _settings_without(state, fields):
    settings = json.loads(state["settings_json"])
    settings["vab"] = {k: v for k, v in settings["vab"].items() if k not in fields}
    return settings


@pytest.mark.slow
def test_runs_differing_only_in_suppression_settings_match_up_to_after_mix(tmp_path, poisoned_digits):
    changed = {f.name for f in dataclasses.fields(VabConfig) if getattr(BASE, f.name) != getattr(OTHER, f.name)}
    assert changed == SUPPRESSION_FIELDS  # the test changes each of them and nothing else
    run_a, rows_a = _run(poisoned_digits, BASE, tmp_path / "a")
    run_b, rows_b = _run(poisoned_digits, OTHER, tmp_path / "b")

    mix_a, mix_b = _checkpoint(run_a, "after_mix"), _checkpoint(run_b, "after_mix")
    assert mix_a["phases_done"] == ["warmup", "rounds", "mix"]
    # the recorded settings (and so the run key) name the suppression settings; the state does not
    assert _settings_without(mix_a, SUPPRESSION_FIELDS) == _settings_without(mix_b, SUPPRESSION_FIELDS)
    assert _settings_without(mix_a, ()) != _settings_without(mix_b, ())
    assert {"beneficiary", "ben_opt", "victim", "tracker"} <= mix_a.keys()
    _assert_same({k: v for k, v in mix_a.items() if k not in ("key", "settings_json")},
                 {k: v for k, v in mix_b.items() if k not in ("key", "settings_json")})

    mix_epochs = 2  # a re-selection (victim training and scoring) falls inside AttentionMix
    assert [r["phase"] for r in rows_a] == ["mix", "mix", "suppress"] and rows_a[1]["reselected"]
    assert rows_a[:mix_epochs] == rows_b[:mix_epochs]

    # and the suppression settings do take effect afterwards
    assert rows_a[mix_epochs:] != rows_b[mix_epochs:]
    end_a, end_b = _checkpoint(run_a, "after_suppress"), _checkpoint(run_b, "after_suppress")
    assert not all(torch.equal(end_a["beneficiary"][k], end_b["beneficiary"][k]) for k in end_a["beneficiary"])
