"""Run the notebook series headlessly with papermill into one run folder.

    python -m vablib run --run-dir outputs/x -p attack blended -p epochs 30

Every parameter goes to the notebooks whose `parameters` cell declares it; a parameter that no
notebook declares is an error raised before anything runs. Executed notebooks are written to
<run-dir>/notebooks/.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

from .errors import ConfigError

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


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


def declared_parameters(notebook: Path) -> dict:
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def plan(params: dict, run_dir: Path, notebooks: list[Path], series_notebooks: list[Path] | None = None
         ) -> list[tuple[Path, dict]]:
    """Which parameters go to which notebook; raises on parameters that no notebook of the whole
    series declares (a typo), so rerunning part of a series with the same command line works."""
    declared = {nb: declared_parameters(nb) for nb in (series_notebooks or notebooks)}
    known = set().union(*(set(d) for d in declared.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"parameter(s) {unknown} are declared by none of the notebooks; "
                          f"known parameters: {', '.join(sorted(known - {'run_dir'}))}.")
    steps = []
    for nb in notebooks:
        names = declared[nb]
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
    import papermill as pm

    from .runio import RunDir

    run_dir = Path(run_dir).resolve()
    steps = plan(dict(params or {}), run_dir, series(notebook_dir, only), series(notebook_dir))
    run = RunDir(run_dir)  # fails now if the folder cannot be written
    out_dir = run.sub("notebooks")
    for nb, nb_params in steps:
        t0 = time.time()
        log(f"[vablib] {nb.name} {nb_params}")
        pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=nb_params, cwd=os.getcwd(),
                            kernel_name="python3", progress_bar=False, log_output=False)
        log(f"[vablib] {nb.name} done in {time.time() - t0:.1f}s → {out_dir / nb.name}")
    return run_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vablib", description="vablib command line")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the notebook series with papermill into one run folder")
    r.add_argument("--run-dir", required=True, help="the run folder (created if missing; reruns resume)")
    r.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a notebook parameter, e.g. -p attack blended -p epochs 30 (repeatable)")
    r.add_argument("--only", nargs="+", help="run only the notebooks whose names start with these, e.g. 00 01")
    r.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help="folder holding the notebook series")
    args = ap.parse_args(argv)
    params = {k: parse_value(v) for k, v in args.param}
    try:
        run_series(args.run_dir, params, args.only, Path(args.notebooks))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
