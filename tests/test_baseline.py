"""The no-defense baseline and the clean floor: BadNets on digits must work, a clean model must not
follow the trigger, results are cached in the run folder by key."""
import json

import numpy as np
import pytest

from vablib import attacks as A
from vablib.baseline import clean_floor, no_defense_baseline, train_classifier
from vablib.config import TrainConfig
from vablib.errors import ConfigError
from vablib.runio import RunDir

BUDGET = TrainConfig(model="convnet", width=0.5, epochs=8, batch_size=64, lr_milestones=(0.7,))


@pytest.fixture(scope="module")
def badnets_digits(digits):
    return A.generate(digits, A.AttackConfig("badnets"), 0, progress=False)


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory, badnets_digits):
    run = RunDir(tmp_path_factory.mktemp("baseline") / "run")
    return run, no_defense_baseline(badnets_digits, BUDGET, "cpu", seed=0, run=run, progress=False)


@pytest.mark.slow
def test_badnets_on_digits_reaches_a_high_asr(baseline_run):
    _, result = baseline_run
    assert result["asr"] > 0.9
    assert result["acc"] > 0.7
    assert result["epochs"] == BUDGET.epochs and len(result["history"]) == BUDGET.epochs
    assert {"acc", "asr", "ra", "loss", "lr"} <= set(result["history"][-1])


@pytest.mark.slow
def test_baseline_json_is_written_and_reused(baseline_run, badnets_digits):
    run, result = baseline_run
    saved = json.loads((run.artifacts / "baseline.json").read_text())
    assert saved["acc"] == result["acc"] and saved["key"] == result["key"]
    calls = []
    again = no_defense_baseline(badnets_digits, BUDGET, "cpu", seed=0, run=run, progress=False, on_epoch=calls.append)
    assert not calls and again["asr"] == result["asr"]  # reused, not retrained
    other = TrainConfig(model="convnet", width=0.5, epochs=1, batch_size=64)
    retrained = no_defense_baseline(badnets_digits, other, "cpu", seed=0, run=run, progress=False,
                                    on_epoch=calls.append)
    assert len(calls) == 1 and retrained["key"] != result["key"]


@pytest.mark.slow
def test_clean_floor_trains_on_the_original_data(badnets_digits, tmp_path):
    run = RunDir(tmp_path / "run")
    result = clean_floor(badnets_digits, BUDGET, "cpu", seed=0, run=run, progress=False)
    assert result["asr"] < 0.3 and result["acc"] > 0.7
    assert (run.artifacts / "clean_floor.json").exists()


def test_train_classifier_checks_its_inputs(digits):
    with pytest.raises(ConfigError, match="TrainConfig"):
        train_classifier(digits.x_train, digits.y_train, None, {"epochs": 1}, "cpu", 0, 10)
    with pytest.raises(ConfigError, match="uint8"):
        train_classifier(digits.x_train.astype(np.float32), digits.y_train, None, BUDGET, "cpu", 0, 10)
