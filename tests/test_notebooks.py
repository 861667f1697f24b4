"""Papermill smoke run of the notebook series with tiny parameters, through the same runner as
`make demo`; asserts on what the notebooks wrote. The checks before notebook 00 and the one-line
errors are in test_runner.py."""
import json
from pathlib import Path

import numpy as np
import pytest

from vablib import runner
from vablib.config import VAB_PROFILES, VabConfig


SMOKE = {"device": "cpu", "progress": False, "profile": "demo", "epochs": 3, "victim_warmup_samples": 1000,
         "beneficiary_milestones": (0.5,),  # a tuple, as `-p beneficiary_milestones "(0.5,)"` gives it
         # ABL, the example registered in notebook 06's cell, and one from a defense file
         "defenses": ["none", "abl", "train_on_half", "second_half"],
         "defense_file": str(Path(__file__).resolve().parent / "example_defense.py")}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    runner.run_series(run_dir, SMOKE, log=lambda *a: None)
    return run_dir


@pytest.mark.slow
def test_series_writes_config_figures_and_executed_notebooks(smoke_run):
    cfg = json.loads((smoke_run / "config.json").read_text())
    assert cfg["params"]["dataset"] == "digits" and "00_setup_and_data" in cfg["environment"]
    # notebook 02 starts from the demo budget's V&B settings with the run's parameters on top
    assert cfg["params"]["profile"] == "demo" and cfg["params"]["victim_warmup_samples"] == 1000
    assert cfg["params"]["warmup_rounds"] == VabConfig().warmup_rounds
    assert cfg["params"]["beneficiary_lr"] == VAB_PROFILES["demo"]["beneficiary_lr"] != VabConfig().beneficiary_lr
    assert cfg["params"]["beneficiary_milestones"] == [0.5]  # reached notebook 02 as a tuple, not its string
    ds = json.loads((smoke_run / "artifacts" / "dataset.json").read_text())
    assert ds["train"] == 1437 and ds["test"] == 360 and len(ds["classes"]) == 10
    for fig in ("00_samples.png", "00_class_balance.png", "05_class_accuracy.png"):
        assert (smoke_run / "figures" / fig).stat().st_size > 5_000
    executed = sorted(p.name for p in (smoke_run / "notebooks").glob("*.ipynb"))
    assert executed == sorted(p.name for p in runner.series())
    for nb in runner.series():  # every notebook saved at least one figure
        assert list((smoke_run / "figures").glob(nb.name[:2] + "_*.png")), nb.name


@pytest.mark.slow
def test_series_writes_summary_in_range_and_report(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["complete"] and summary["epochs_done"] == 3
    for block in ("final", "best_acc_epoch"):
        for k in ("acc", "asr", "ra", "precision", "recall", "fpr", "f1", "auroc"):
            assert 0.0 <= summary[block][k] <= 1.0, (block, k)
    assert summary["final"]["n_suspicious"] + summary["final"]["n_credible"] == 1437
    assert all(summary["seconds_per_phase"][p] > 0 for p in ("warmup", "rounds", "mix", "suppress"))
    nd = summary["no_defense"]
    assert nd is not None and 0.0 <= nd["acc"] <= 1.0 and 0.0 <= nd["asr"] <= 1.0
    rows = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert len(summary["final"]["class_acc"]) == 10 and all(0.0 <= a <= 1.0 for a in summary["final"]["class_acc"])
    report = (smoke_run / "report.md").read_text()
    assert "| V&B (final, epoch 3) |" in report and "no defense" in report
    target = summary["config"]["target_label"]
    assert f"target class {target}: V&B {100 * summary['final']['class_acc'][target]:.1f}%" in report


@pytest.mark.slow
def test_every_defense_is_scored_on_the_runs_data_and_reaches_the_report(smoke_run):
    results = json.loads((smoke_run / "artifacts" / "defenses.json").read_text())
    assert [r["defense"] for r in results] == ["vab", "none", "abl", "train_on_half", "second_half"]
    summary = json.loads((smoke_run / "summary.json").read_text())
    by_name = {r["defense"]: r for r in results}
    assert by_name["vab"]["acc"] == summary["final"]["acc"] and by_name["none"]["asr"] == summary["no_defense"]["asr"]
    poisoned = np.load(smoke_run / "artifacts" / "poisoned.npz")["poison_mask"]
    half = len(poisoned) // 2
    iso = by_name["second_half"]["isolation"]  # isolates the first half: scored against the ground truth
    assert iso["n_isolated"] == half and iso["recall"] == pytest.approx(poisoned[:half].sum() / poisoned.sum())
    assert by_name["abl"]["isolation"]["n_isolated"] == int(0.01 * len(poisoned))
    report = (smoke_run / "report.md").read_text()
    for r in results[2:]:
        assert f"| {r['label']} | {100 * r['acc']:.1f}% | {100 * r['asr']:.1f}% |" in report
    assert "ABL isolated 14 samples" in report
    for fig in ("06_defenses.png", "06_defense_classes.png"):
        assert (smoke_run / "figures" / fig).stat().st_size > 5_000
    before = (smoke_run / "artifacts" / "defenses.json").read_text()
    runner.run_series(smoke_run, SMOKE, only=["06"], log=lambda *a: None)  # reuses every result (their seconds too)
    assert (smoke_run / "artifacts" / "defenses.json").read_text() == before


@pytest.mark.slow
def test_rerunning_the_series_resumes_instead_of_retraining(smoke_run):
    before = (smoke_run / "metrics.jsonl").read_text()
    runner.run_series(smoke_run, SMOKE, only=["04", "05"], log=lambda *a: None)
    assert (smoke_run / "metrics.jsonl").read_text() == before


@pytest.mark.slow
def test_other_parameters_on_the_same_run_folder_are_refused(smoke_run):
    with pytest.raises(runner.NotebookFailed, match="error in 01_generate_poisoned_dataset: RunConflictError") as failed:
        runner.run_series(smoke_run, {**SMOKE, "poison_rate": 0.2}, only=["01"], log=lambda *a: None)
    assert failed.value.bad_input
    assert failed.value.path == (smoke_run / "notebooks" / "01_generate_poisoned_dataset.ipynb").resolve()


def test_committed_notebooks_have_no_outputs_and_match_their_py_sources():
    import jupytext
    import nbformat

    for nb_path in runner.series():
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{nb_path.name} has outputs"
        paired = jupytext.read(nb_path.with_suffix(".py"))
        assert [c.source for c in paired.cells] == [c.source for c in nb.cells], (
            f"{nb_path.name} and its .py differ: run `make notebooks`")
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_the_runner_reads_every_parameters_cell_as_papermill_does():
    """The runner reads the parameters cells itself (papermill's import is slow): the same names,
    type names and default texts as papermill's own view, for every notebook."""
    import papermill as pm

    for nb_path in sorted(runner.NOTEBOOK_DIR.glob("*.ipynb")):
        ours = {k: (v["inferred_type_name"], v["default"]) for k, v in runner.declared_parameters(nb_path).items()}
        theirs = {k: (v["inferred_type_name"], v["default"]) for k, v in pm.inspect_notebook(str(nb_path)).items()}
        assert ours and ours == theirs, nb_path.name


def test_notebook_02_declares_every_vab_setting_with_none():
    """Every VabConfig field is a parameter of notebook 02 whose default is None (the budget's value)."""
    book = next(p for p in runner.series() if p.name.startswith("02_"))
    declared = runner.declared_parameters(book)
    assert {name: declared.get(name, {}).get("default") for name in VabConfig.field_names()} == \
        {name: "None" for name in VabConfig.field_names()}


def test_parse_value():
    assert runner.parse_value("30") == 30 and runner.parse_value("0.1") == 0.1
    assert runner.parse_value("blended") == "blended" and runner.parse_value("False") is False
