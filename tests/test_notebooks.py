"""Papermill smoke run of the notebook series with tiny parameters, through the same runner as
`make demo`; asserts on what the notebooks wrote."""
import json

import pytest

from vablib import runner
from vablib.errors import ConfigError


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    runner.run_series(run_dir, {"device": "cpu", "progress": False}, log=lambda *a: None)
    return run_dir


def test_series_writes_config_figures_and_executed_notebooks(smoke_run):
    cfg = json.loads((smoke_run / "config.json").read_text())
    assert cfg["params"]["dataset"] == "digits" and "00_setup_and_data" in cfg["environment"]
    ds = json.loads((smoke_run / "artifacts" / "dataset.json").read_text())
    assert ds["train"] == 1437 and ds["test"] == 360 and len(ds["classes"]) == 10
    for fig in ("00_samples.png", "00_class_balance.png"):
        assert (smoke_run / "figures" / fig).stat().st_size > 5_000
    executed = sorted(p.name for p in (smoke_run / "notebooks").glob("*.ipynb"))
    assert executed == sorted(p.name for p in runner.series())


def test_unknown_parameter_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="declared by none"):
        runner.run_series(tmp_path / "r", {"epochz": 3})
    assert not (tmp_path / "r").exists()


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


def test_parse_value():
    assert runner.parse_value("30") == 30 and runner.parse_value("0.1") == 0.1
    assert runner.parse_value("blended") == "blended" and runner.parse_value("False") is False
