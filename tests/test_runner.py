"""The runner's checks before notebook 00, and its one-line errors: nothing here trains."""
import subprocess
import sys

import nbformat
import pytest

from vablib import attacks, errors, runner
from vablib.errors import BadInputError


@pytest.mark.parametrize("params, named", [
    ({"seed": "abc"}, "seed"),  # 00: SetupConfig
    ({"dataset": "imagenet"}, "dataset"),
    ({"poison_rate": 1.5}, "poison_rate"),  # 01: AttackConfig
    ({"attack": "badnet"}, "badnet"),
    ({"attack_params": {"alpha": 0.2}}, "alpha"),
    ({"epochs": 0}, "epochs"),  # 01: TrainConfig from the profile
    ({"profile": "fast"}, "profile"),
    ({"target_label": 10}, "target_label=10 is out of range: digits has 10 classes"),  # 01: needs the data
    ({"victim_warmup_samples": -5}, "victim_warmup_samples"),  # 02: VabConfig from the profile
    ({"split": "otsu"}, "split"),
    ({"train_baseline": "yes"}, "train_baseline"),  # a typed notebook parameter
    ({"progress": 1}, "progress"),
    ({"epochz": 3}, "declared by none"),
    ({"dataset": "npz", "data_root": "missing.npz"}, "missing.npz does not exist"),
    ({"train_size": 0}, "train_size"),  # 00: the data's size
    ({"defenses": ["none", "dbd"]}, "unknown defense 'dbd'"),  # 06: the defenses and ABL's settings
    ({"defenses": "abl"}, "must be a list"),
    ({"abl": {"gamma": -1}}, "abl gamma"),
    ({"abl": {"isolation_rate": 0.1}}, "not known"),
    ({"epochs": 2}, "no fine-tuning epoch"),
    ({"defense_file": "nope.py"}, "not a Python file"),
])
def test_check_params_refuses_a_bad_value_of_any_stage_before_anything_runs(tmp_path, params, named):
    with pytest.raises(BadInputError, match=named):
        runner.check_params(params)
    with pytest.raises(BadInputError, match=named):
        runner.run_series(tmp_path / "run", params, log=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_check_params_accepts_good_values_and_the_notebooks_own_attacks():
    runner.check_params({})
    runner.check_params({"poison_rate": 0.5, "width": 0.5, "epochs": 3, "beneficiary_milestones": (0.5,),
                         "victim_model": "convnet", "profile": "demo", "train_clean_floor": True})
    # notebook 01 registers corner_cross when it runs: the check knows it and leaves the registry as it was
    registered = "corner_cross" in attacks.available_attacks()
    runner.check_params({"attack": "corner_cross"})
    assert ("corner_cross" in attacks.available_attacks()) == registered
    # notebook 06 registers train_on_half the same way
    from vablib import defenses

    registered = "train_on_half" in defenses.available_defenses()
    runner.check_params({"defenses": ["abl", "train_on_half"]})
    assert ("train_on_half" in defenses.available_defenses()) == registered


def test_bad_input_errors_are_the_ones_that_exit_with_2():
    failed = lambda cls: runner.NotebookFailed("01_x", cls.__name__, "msg", "p")  # noqa: E731
    for cls in (errors.ConfigError, errors.DataNotFoundError, errors.DataFormatError, errors.RunConflictError,
                errors.CheckpointError):
        assert failed(cls).bad_input, cls
    for cls in (errors.TrainingDivergedError, RuntimeError, FileNotFoundError):
        assert not failed(cls).bad_input, cls


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vablib", "run", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _lines(proc) -> list[str]:
    return (proc.stdout + proc.stderr).splitlines()


def test_cli_refuses_a_bad_v_and_b_setting_in_one_line_before_notebook_00(tmp_path):
    proc = _cli("--run-dir", "run", "-p", "victim_warmup_samples", "-5", cwd=tmp_path)
    assert proc.returncode == 2
    assert _lines(proc) == ["error: victim_warmup_samples must be an integer ≥ 0, got -5."]
    assert not (tmp_path / "run").exists()


def test_cli_refuses_missing_data_before_notebook_00(tmp_path):
    proc = _cli("--run-dir", "run", "-p", "dataset", "npz", "-p", "data_root", "missing.npz", cwd=tmp_path)
    assert proc.returncode == 2
    assert _lines(proc) == ["error: npz dataset file missing.npz does not exist; set data_root to the path of your "
                            ".npz file."]
    assert not (tmp_path / "run").exists()


def test_cli_names_the_failing_notebook_and_where_its_traceback_is(tmp_path):
    from vablib import runio

    runio.RunDir(tmp_path / "run").record("00_setup_and_data", {"dataset": "digits", "seed": 1})
    proc = _cli("--run-dir", "run", "-p", "device", "cpu", cwd=tmp_path)  # seed 0 in a folder made with seed 1
    assert proc.returncode == 2
    lines = _lines(proc)
    assert len(lines) <= 3 and "Traceback" not in proc.stdout + proc.stderr
    executed = (tmp_path / "run" / "notebooks" / "00_setup_and_data.ipynb").resolve()
    assert lines[-1].startswith("error in 00_setup_and_data: RunConflictError: ")
    assert lines[-1].endswith(f"(traceback in {executed})")
    outputs = [o for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", [])]
    assert any(o.get("ename") == "RunConflictError" and o.get("traceback") for o in outputs)


def test_any_other_error_in_a_notebook_exits_with_1(tmp_path, capsys):
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('run_dir: str = "x"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('raise RuntimeError("boom\\nsecond line")'),
    ])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "books").mkdir()
    nbformat.write(book, tmp_path / "books" / "00_boom.ipynb")
    assert runner.run_command(tmp_path / "run", {}, notebook_dir=tmp_path / "books") == 1
    executed = (tmp_path / "run" / "notebooks" / "00_boom.ipynb").resolve()
    assert capsys.readouterr().err.splitlines() == [f"error in 00_boom: RuntimeError: boom (traceback in {executed})"]
    assert "second line" in executed.read_text()
