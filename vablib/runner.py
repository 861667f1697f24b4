"""Run the notebook series headlessly with papermill into one run folder.

    python -m vablib run --run-dir outputs/x -p attack blended -p epochs 30

Every parameter goes to the notebooks whose `parameters` cell declares it. Before notebook 00
runs, `check_params` builds every stage's config from the given values over the declared
defaults, so an unknown name or a bad value is one line and nothing runs. A notebook that fails
raises `NotebookFailed`: its error and the executed notebook (in <run-dir>/notebooks/) that holds
the traceback, in one line. Exit code 2 for bad input (`vablib.errors.BadInputError`), 1 otherwise.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from .errors import BadInputError, ConfigError, VablibError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
_BAD_INPUT = {cls.__name__ for cls in BadInputError.__subclasses__()}
# a parameter's annotation → the types a given value may have (papermill writes tuples as lists)
_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict, "list": (list, tuple),
          "tuple": (tuple, list)}


class NotebookFailed(VablibError):
    """A notebook of the series raised `ename: evalue`; `path` is the executed notebook that holds
    the traceback."""

    def __init__(self, notebook: str, ename: str, evalue: str, path: Path):
        first_line = (evalue.strip().splitlines() or [""])[0]
        super().__init__(f"error in {notebook}: {ename}: {first_line}")
        self.notebook, self.ename, self.evalue, self.path = notebook, ename, evalue, path

    @property
    def bad_input(self) -> bool:
        return self.ename in _BAD_INPUT


def parse_value(text: str):
    """'30' → 30, '0.1' → 0.1, 'True' → True, "{'a': 1}" → dict; anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def series(notebook_dir: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    books = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if only:
        chosen = [p for p in books if any(p.name.startswith(o) for o in only)]
        unknown = [o for o in only if not any(p.name.startswith(o) for p in books)]
        if unknown:
            raise ConfigError(f"no notebook starts with {unknown}; the series is {[p.name for p in books]}.")
        books = chosen
    if not books:
        raise ConfigError(f"no numbered notebooks (NN_name.ipynb) found in {notebook_dir}.")
    return books


def _code_cells(notebook: Path) -> list[dict]:
    """The notebook's code cells as JSON (not through nbformat, whose schema checks take seconds to import)."""
    return [c for c in json.loads(Path(notebook).read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def declared_parameters(notebook: Path) -> dict:
    """The `parameters` cell's `name: type = default` lines, as papermill reads them:
    {name: {"inferred_type_name": type, "default": the default's source text}}."""
    cell = next((c for c in _code_cells(notebook) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return {}
    text = _source(cell)
    return {node.target.id: {"inferred_type_name": ast.unparse(node.annotation),
                             "default": ast.get_source_segment(text, node.value)}
            for node in ast.parse(text).body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None}


def check_params(params: dict, notebooks: list[Path] | None = None) -> None:
    """Raise the ConfigError that `params` would meet in any notebook of `notebooks` (default: the
    series), before any of them runs: names that no notebook declares, every stage's config built
    from `params` over the declared defaults, and the type of each value whose declared default is
    not None. The data is loaded for its own checks (a file exists, target_label < classes) unless
    it is to be downloaded; what only a run can find (a conflicting run folder) stays in the notebooks."""
    notebooks = notebooks or series()
    declared, defaults = {}, {}
    for nb in notebooks:
        for name, spec in declared_parameters(nb).items():
            declared.setdefault(name, spec)
            try:
                defaults.setdefault(name, ast.literal_eval(spec["default"]))
            except (ValueError, SyntaxError):  # an expression: left to the notebook
                pass
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ConfigError(f"parameter(s) {unknown} are declared by none of the notebooks; "
                          f"known parameters: {', '.join(sorted(set(declared) - {'run_dir'}))}.")
    _check_configs({**defaults, **params}, notebooks)
    for name, value in params.items():
        kind = declared[name]["inferred_type_name"]
        if defaults.get(name) is not None and not _is_a(value, kind):
            raise ConfigError(f"{name} must be a {kind} like its default {declared[name]['default']}, got {value!r}.")


def _is_a(value, kind: str) -> bool:
    """Whether `value` fits the annotation `kind` (True and False are bools, not numbers)."""
    if kind not in _TYPES:
        return True
    return isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))


def _check_configs(values: dict, notebooks: list[Path]) -> None:
    """Build each stage's config as its notebook does, from the values of its fields."""
    from . import attacks, config, defenses
    from .abl import AblConfig
    from .shared import load_attack_file
    from .utils import get_device

    def given(cls) -> dict:
        return {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}

    setup = config.SetupConfig(**given(config.SetupConfig))
    load_attack_file(values.get("attack_file"))  # registers the attacks it holds
    with attacks.registry.stand_ins(_attacks_registered_in(notebooks)):
        attack = attacks.AttackConfig(**given(attacks.AttackConfig))
        if not setup.download:  # the data's own checks (missing file, label range, pool sizes)
            attack.validate_for(setup.load_data())
    device, profile = get_device(values.get("device", "auto")), values.get("profile", "auto")
    train_cfg = config.TrainConfig.from_profile(profile, device, **given(config.TrainConfig))
    config.VabConfig.from_profile(profile, device, **given(config.VabConfig))
    defenses.load_defense_file(values.get("defense_file"))  # registers the defenses it holds
    if "defenses" in values:
        with defenses.stand_ins(_defenses_registered_in(notebooks)):
            names = defenses.check_defenses(values["defenses"])
        abl = AblConfig.from_params(values.get("abl"))
        if "abl" in names:
            abl.epochs(train_cfg.epochs)  # a budget too short for its three phases


def _registrations(notebooks: list[Path], function: str):
    """The calls `function("name", ...)` with a literal name in the notebooks' code cells."""
    for nb in notebooks:
        for cell in _code_cells(nb):
            try:
                tree = ast.parse(_source(cell))
            except SyntaxError:  # IPython syntax (magics)
                continue
            for call in (node for node in ast.walk(tree) if isinstance(node, ast.Call)):
                if getattr(call.func, "attr", getattr(call.func, "id", None)) == function and call.args \
                        and isinstance(call.args[0], ast.Constant):
                    yield call


def _attacks_registered_in(notebooks: list[Path]) -> dict[str, bool]:
    """Attacks that a notebook registers when it runs, `custom_attack("name", ...)` with a literal
    name: {name: clean_label}."""
    found = {}
    for call in _registrations(notebooks, "custom_attack"):
        clean_label = next((k.value for k in call.keywords if k.arg == "clean_label"), None)
        found[call.args[0].value] = isinstance(clean_label, ast.Constant) and clean_label.value is True
    return found


def _defenses_registered_in(notebooks: list[Path]) -> set[str]:
    """Defenses that a notebook registers when it runs, `custom_defense("name", ...)`."""
    return {call.args[0].value for call in _registrations(notebooks, "custom_defense")}


def plan(params: dict, run_dir: Path, notebooks: list[Path]) -> list[tuple[Path, dict]]:
    """Which parameters go to which notebook."""
    steps = []
    for nb in notebooks:
        names = declared_parameters(nb)
        # papermill writes a tuple into the notebook as its string; a list it writes as a list
        # (the configs turn lists of milestones back into tuples)
        nb_params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items() if k in names}
        if "interactive" in names:  # headless: static output instead of widgets unless asked
            nb_params.setdefault("interactive", False)
        if "run_dir" in names:
            nb_params["run_dir"] = str(run_dir)
        steps.append((nb, nb_params))
    return steps


def run_series(run_dir: str | os.PathLike, params: dict | None = None, only: list[str] | None = None,
               notebook_dir: Path = NOTEBOOK_DIR, log=print) -> Path:
    """Check every parameter, then execute the notebooks in order into run_dir/notebooks/; `log`
    gets one line as each notebook starts. Raises ConfigError (nothing ran) or NotebookFailed."""
    import papermill as pm

    from .runio import RunDir

    params = dict(params or {})
    check_params(params, series(notebook_dir))
    run_dir = Path(run_dir).resolve()
    steps = plan(params, run_dir, series(notebook_dir, only))
    out_dir = RunDir(run_dir).sub("notebooks")  # fails now if the folder cannot be written
    for nb, nb_params in steps:
        log(f"[vablib] {nb.stem} {nb_params}")
        try:
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=nb_params, cwd=os.getcwd(),
                                kernel_name="python3", progress_bar=False, log_output=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no kernel start-up warnings
        except pm.PapermillExecutionError as exc:
            raise NotebookFailed(nb.stem, exc.ename, exc.evalue, out_dir / nb.name) from None
    return run_dir


def run_command(run_dir, params: dict, only=None, notebook_dir: Path = NOTEBOOK_DIR) -> int:
    """`run_series` for the command line: a failure is one line on stderr (for a notebook, with the
    path of its traceback); returns the exit code: 0, 2 for bad input, 1 for anything else."""
    logging.getLogger("papermill").setLevel(logging.ERROR)
    try:
        run_series(run_dir, params, only, notebook_dir, log=lambda line: print(line, flush=True))
    except NotebookFailed as exc:
        print(f"{exc} (traceback in {exc.path})", file=sys.stderr)
        return 2 if exc.bad_input else 1
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = Path(run_dir) / "summary.json"
    if summary.is_file() and (json.loads(summary.read_text()).get("final") or {}).get("low_confidence"):
        print(f"warning: low detection confidence at the end of this run; see {Path(run_dir) / 'report.md'}.",
              file=sys.stderr)
    return 0
