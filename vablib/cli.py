"""The command line: `python -m vablib run|sweep|table`.

    python -m vablib run --run-dir outputs/x -p attack blended     # one run folder (vablib.runner)
    python -m vablib sweep GRID.yaml --out outputs/sweeps/NAME      # a grid of runs on Dask (vablib.sweep)
    python -m vablib table outputs/sweeps/NAME                      # runs.csv, defenses.csv, table.md, figure

Exit codes: 0 done, 2 bad input (nothing ran), 1 anything else (for a sweep: a point failed).
"""
from __future__ import annotations

import argparse
import sys

from .errors import BadInputError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vablib", description="vablib command line")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute the notebook series with papermill into one run folder")
    r.add_argument("--run-dir", required=True, help="the run folder (created if missing; reruns resume)")
    r.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a notebook parameter, e.g. -p attack blended -p epochs 30 (repeatable)")
    r.add_argument("--only", nargs="+", help="run only the notebooks whose names start with these, e.g. 00 01")
    r.add_argument("--notebooks", help="folder holding the notebook series (default: the kit's)")
    s = sub.add_parser("sweep", help="run a grid of parameters, one run folder per point, on Dask")
    s.add_argument("grid", help="YAML file: fixed: {name: value}, axes: {name: [values]}")
    s.add_argument("--out", required=True, help="the sweep folder (rerunning the command resumes it)")
    s.add_argument("--workers", type=int, help="LocalCluster workers, each running one point at a time "
                   "(default: what fits the cores)")
    s.add_argument("--threads-per-worker", type=int, help="torch threads of each point's notebooks "
                   "(default: cores / workers; 1 with --scheduler)")
    s.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://HOST:8786, instead of "
                   "a LocalCluster")
    s.add_argument("--dry-run", action="store_true", help="check the grid and list its points; run nothing")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = sub.add_parser("table", help="runs.csv, defenses.csv, table.md and acc_vs_asr.png of a folder of runs")
    t.add_argument("folder", help="a sweep's --out (or any folder of run folders)")
    return ap


def sweep_command(args) -> int:
    from . import sweep, table

    grid = sweep.load_grid(args.grid)
    points = sweep.points(grid, args.out)
    sweep.check_points(points, args.out)
    if args.dry_run:
        for p in points:
            print(f"{'done' if p.complete() else 'todo'}  {p.name}")
        return 0
    status = sweep.run_sweep(points, args.out, args.grid, args.workers, args.threads_per_worker, args.scheduler,
                             progress=not args.no_progress)
    counts = status.data["counts"]
    print(f"sweep {args.out}: {counts['done']} of {len(points)} points done, {counts['failed']} failed "
          f"(status: {status.path})")
    for name in status.data["failed"]:
        p = status.data["points"][name]
        print(f"failed {name}: {p['error']}" + (f" (traceback: {p['notebook']})" if p["notebook"] else ""),
              file=sys.stderr)
    if counts["done"]:
        print("table: " + ", ".join(str(p) for p in table.write_tables(args.out).values()))
    return 1 if status.data["failed"] else 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        from pathlib import Path

        from . import runner

        params = {k: runner.parse_value(v) for k, v in args.param}
        return runner.run_command(args.run_dir, params, args.only,
                                  Path(args.notebooks) if args.notebooks else runner.NOTEBOOK_DIR)
    try:
        if args.command == "sweep":
            return sweep_command(args)
        from .table import write_tables

        for path in write_tables(args.folder).values():
            print(path)
        return 0
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
