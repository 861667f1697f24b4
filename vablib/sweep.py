"""Sweeps: a grid of notebook-series runs executed on Dask, restartable, with one status file.

    python -m vablib sweep GRID.yaml --out outputs/sweeps/NAME [--workers N] [--threads-per-worker T]
    python -m vablib sweep GRID.yaml --out outputs/sweeps/NAME --scheduler tcp://HOST:8786

GRID.yaml holds `fixed` parameters and `axes` (lists of values, see `parse_grid`); every
combination of axis values is a point: one run folder `<out>/<axis>-<value>__...`, executed by
`runner.run_series`. Every point's parameters are checked before the first one starts. A point
whose summary.json is complete is skipped; any other resumes from its checkpoints. Each point is
one Dask task, submitted in grid order with falling priority. Points with the same parameters for
notebooks 00 and 01 (they differ only in V&B settings) share that work: the first of them fills
`<out>/_shared` (`vablib.shared`), and the others wait for it. `<out>/sweep_status.json` holds
each point's state and, for a failed one, its one-line error and executed notebook. Each worker
runs one point at a time, whose kernels use T torch threads.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import runio
from .errors import BadInputError, ConfigError, DataNotFoundError
from .utils import THREADS_ENV

SHARED = "_shared"
STATUS = "sweep_status.json"
SET_BY_SWEEP = ("run_dir", "cache_dir")
PATH_PARAMS = ("data_root", "attack_file")  # made absolute, so workers elsewhere find the same files
SHARED_STAGES = ("00", "01")  # the notebooks whose work points share
SWEEP_DEFAULTS = {"progress": False, "preview_all": False}  # unattended: no bars, no six-attack gallery per point


# ---------------------------------------------------------------- the grid

def _yaml_loader():
    """PyYAML's safe loader, reading 1e-3 as a float (YAML 1.1 wants a dot: 1.0e-3)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))
    return Loader


def load_grid(path: str | os.PathLike) -> dict:
    """The grid of a YAML file (see `parse_grid`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"grid file {path} does not exist.")
    try:
        grid = yaml.load(path.read_text(), Loader=_yaml_loader()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    return parse_grid(grid, path)


def parse_grid(grid: dict, path: str | os.PathLike = "the grid") -> dict:
    """{"fixed": {name: value}, "axes": [(names, rows)]}, the shape checked. An axis is
    `name: [values]`, or linked parameters that change together, `a, b: [[a1, b1], [a2, b2]]`
    (e.g. each attack with its own poison_rate); the first of them names the run folders."""
    if not isinstance(grid, dict) or set(grid) - {"fixed", "axes"}:
        raise ConfigError(f"{path} must be a mapping with the keys 'fixed' (parameters) and 'axes' (lists of values).")
    fixed, axes = grid.get("fixed") or {}, grid.get("axes") or {}
    if not isinstance(fixed, dict) or not isinstance(axes, dict):
        raise ConfigError(f"{path}: 'fixed' and 'axes' must be mappings of parameter names.")
    parsed = [_axis(path, key, values) for key, values in axes.items()]
    names = [n for axis_names, _ in parsed for n in axis_names]
    twice = sorted({n for n in names if names.count(n) > 1} | (set(fixed) & set(names)))
    taken = sorted(set(SET_BY_SWEEP) & (set(fixed) | set(names)))
    if twice or taken:
        raise ConfigError(f"{path}: {twice or taken} " + ("are set twice (fixed or in more than one axis)." if twice
                          else "are set by the sweep for every point (run_dir under --out, cache_dir <out>/_shared)."))
    return {"fixed": fixed, "axes": parsed}


def _axis(path, key: str, values) -> tuple[tuple[str, ...], list[tuple]]:
    names = tuple(n.strip() for n in str(key).split(","))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{path}: axis {key!r} must be a non-empty list of values, got {values!r}.")
    if len(names) == 1:
        rows = [(v,) for v in values]
    elif all(isinstance(v, list) and len(v) == len(names) for v in values):
        rows = [tuple(v) for v in values]
    else:
        raise ConfigError(f"{path}: each value of the linked axis {key!r} must be a list of {len(names)} values "
                          f"({', '.join(names)}), e.g. [{', '.join('...' for _ in names)}].")
    firsts = [json.dumps(row[0], sort_keys=True) for row in rows]
    if len(set(firsts)) < len(firsts):
        raise ConfigError(f"{path}: axis {key!r} repeats a value of {names[0]}: {[row[0] for row in rows]!r}.")
    return names, rows


@dataclass(frozen=True)
class Point:
    name: str
    axes: dict  # the values of the parameters that name the point (the first of each axis)
    params: dict  # every parameter given to the runner
    run_dir: Path

    def summary(self) -> dict | None:
        path = self.run_dir / "summary.json"
        return runio.read_json(path) if path.is_file() else None

    def complete(self) -> bool:
        return bool((self.summary() or {}).get("complete"))


def _slug(value) -> str:
    from .hashing import content_key

    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"
    return slug if len(slug) <= 40 else f"{slug[:24]}-{content_key(value)[:8]}"


def _absolute(name: str, value):
    return str(Path(value).expanduser().resolve()) if name in PATH_PARAMS and isinstance(value, str) else value


def points(grid: dict, out: str | os.PathLike) -> list[Point]:
    """Every combination of axis values, in the grid's order (the last axis varies fastest)."""
    out = Path(out).resolve()
    found = []
    for rows in itertools.product(*(axis_rows for _, axis_rows in grid["axes"])):
        named, values = {}, {}
        for (names, _), row in zip(grid["axes"], rows):
            named[names[0]] = row[0]
            values.update(zip(names, row))
        name = "__".join(f"{k}-{_slug(v)}" for k, v in named.items()) or "run"
        given = {**SWEEP_DEFAULTS, **grid["fixed"], **values}
        params = {k: _absolute(k, v) for k, v in given.items()}
        found.append(Point(name, named, {**params, "cache_dir": str(out / SHARED)}, out / name))
    return found


def check_points(found: list[Point], out: str | os.PathLike) -> None:
    """Every problem that can be found before running, as one ConfigError: folder names that
    collide, any point's parameter that a notebook would refuse, and points whose folders an
    earlier sweep into `out` made with other parameters."""
    from .runner import check_params, series

    by_name = {}
    for p in found:
        if p.name in by_name:
            raise ConfigError(f"points {by_name[p.name].axes} and {p.axes} would share the run folder {p.name}; "
                              "give the axis values names that differ in letters or digits.")
        by_name[p.name] = p
    notebooks = series()
    for p in found:
        try:
            check_params(p.params, notebooks)
        except BadInputError as exc:
            raise ConfigError(f"point {p.name}: {exc}") from None
    status = Path(out) / STATUS
    earlier = runio.read_json(status).get("points", {}) if status.is_file() else {}
    for p in found:
        before = earlier.get(p.name, {}).get("params")
        now = runio.jsonable(p.params)
        if before is not None and before != now:
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise ConfigError(f"{p.run_dir} was run by an earlier sweep with other values of {changed}; "
                              "use another --out for the new grid.")


def groups(found: list[Point]) -> dict[str, list[Point]]:
    """Points by their parameters for notebooks 00 and 01 (device and progress aside)."""
    from .runio import VOLATILE_PARAMS
    from .runner import declared_parameters, series

    names = set().union(*(declared_parameters(nb) for nb in series(only=list(SHARED_STAGES))))
    out = {}
    for p in found:
        key = json.dumps({k: v for k, v in runio.jsonable(p.params).items() if k in names and k not in VOLATILE_PARAMS},
                         sort_keys=True)
        out.setdefault(key, []).append(p)
    return out


def submissions(todo: list[Point]) -> list[dict]:
    """The tasks `run_sweep` submits, one per point, each the point's whole series: per group the
    leader first, then the group's other points, which wait for it (`after_leader`) and reuse its
    notebooks 00-01. The priority falls with the group's place in the grid: a worker takes the
    earliest point it has, so a finished task is a finished point and one worker runs the grid in
    grid order. (A separate task for notebooks 00-01 would let a worker run every group's
    baselines before any V&B: a worker queues every task that is ready, and a V&B task is ready
    only once its 00-01 are done.)"""
    out = []
    found = list(groups(todo).values())
    for rank, group in enumerate(found):
        out += [{"point": p, "after_leader": i > 0, "priority": len(found) - rank} for i, p in enumerate(group)]
    return out


# ---------------------------------------------------------------- one point, on a worker

def _report(topic: str, point: str, notebook: str) -> None:
    from distributed import get_worker

    with contextlib.suppress(ValueError):  # not on a worker (a direct call)
        get_worker().log_event(topic, {"point": point, "notebook": notebook})


def one_line(exc: BaseException) -> str:
    text = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", None) else (str(exc) or type(exc).__name__)
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def run_point(name: str, run_dir: str, params: dict, threads: int, topic: str, after=None) -> dict:
    """Run (or resume) one point's notebooks; never raises: returns {"state": "done"|"failed",
    "point", "error", "notebook", "seconds"}. `after` is the result of the group's leader, which
    ran the notebooks 00-01 this point shares: when it failed in one of them, this point fails
    with its error without running."""
    from . import runner

    if after is not None and after["state"] == "failed" and after["notebook"] and \
            Path(after["notebook"]).name.startswith(SHARED_STAGES):
        return {**after, "point": name,
                "error": f"notebooks 00-01, shared with {after['point']}, failed there: {after['error']}"}
    for var in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # inherited by the notebooks' kernels
        os.environ[var] = str(threads)
    t0, current = time.time(), {}

    def log(line: str) -> None:
        found = re.search(r"\[vablib\] (\d\d_\w+)", line)
        if found:
            current["notebook"] = found.group(1)
            _report(topic, name, found.group(1))

    try:
        runner.run_series(run_dir, params, log=log)
    except Exception as exc:  # the point fails, the sweep goes on
        executed = getattr(exc, "path", None)  # runner.NotebookFailed names the executed notebook
        if executed is None and current:  # e.g. a kernel that died
            executed = Path(run_dir) / "notebooks" / f"{current['notebook']}.ipynb"
        return {"state": "failed", "point": name, "error": one_line(exc), "notebook": executed and str(executed),
                "seconds": time.time() - t0}
    return {"state": "done", "point": name, "error": None, "notebook": None, "seconds": time.time() - t0}


# ---------------------------------------------------------------- the sweep, on the client

class Status:
    """<out>/sweep_status.json, rewritten atomically at every change (from two threads: the
    progress events and the main loop)."""

    def __init__(self, out: Path, found: list[Point], grid_path: str):
        self.path, self._lock = out / STATUS, threading.Lock()
        self.data = {"grid": str(grid_path), "out": str(out), "points": {
            p.name: {"state": "done" if p.complete() else "pending", "run_dir": str(p.run_dir), "axes": p.axes,
                     "params": p.params, "notebook": None, "error": None} for p in found}}
        self.write()

    def set(self, name: str, **fields) -> None:
        with self._lock:
            self.data["points"][name].update(fields)
            self.write()

    def running(self, name: str, notebook: str) -> bool:
        """A point started a notebook; False for an event that arrived after the point's result."""
        with self._lock:
            if self.data["points"][name]["state"] not in ("pending", "running"):
                return False
            self.data["points"][name].update(state="running", notebook=notebook)
            self.write()
            return True

    def write(self) -> None:
        states = [p["state"] for p in self.data["points"].values()]
        self.data["counts"] = {s: states.count(s) for s in ("done", "failed", "running", "pending")}
        self.data["failed"] = sorted(n for n, p in self.data["points"].items() if p["state"] == "failed")
        runio.write_json(self.path, self.data)


def _check_count(name: str, value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def layout(workers: int | None, threads: int | None, n_points: int, cores: int | None = None) -> tuple[int, int]:
    """(workers, torch threads per point) for a LocalCluster: what is given, the rest filled so
    that workers × threads ≤ cores, preferring more points at once."""
    cores = cores or os.cpu_count() or 1
    _check_count("--workers", workers)
    _check_count("--threads-per-worker", threads)
    if workers is None:
        workers = max(1, min(max(n_points, 1), cores // (threads or 1)))
    return workers, threads or max(1, cores // workers)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int):
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"no Dask scheduler answers at {scheduler} ({type(exc).__name__}).") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def run_sweep(found: list[Point], out: str | os.PathLike, grid_path: str = "", workers: int | None = None,
              threads: int | None = None, scheduler: str | None = None, progress: bool = True) -> Status:
    """Run the points that are not complete and return the status (see the module docstring)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    todo = [p for p in found if not p.complete()]
    if scheduler:
        if workers is not None:
            raise ConfigError("--workers sizes a LocalCluster; with --scheduler the cluster's workers run the points.")
        _check_count("--threads-per-worker", threads)
        threads = threads or 1
    else:
        workers, threads = layout(workers, threads, len(todo))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    status = Status(out, found, grid_path)
    if not todo:
        return status
    token = uuid.uuid4().hex[:8]
    topic = f"vablib-sweep-{token}"
    bar = tqdm(total=len(found), initial=len(found) - len(todo), disable=not progress, desc="sweep", unit="point",
               dynamic_ncols=True)
    running, lock = {}, threading.Lock()  # point → the notebook it runs now; events come on another thread

    def show(point: str, notebook: str | None) -> None:
        with lock:
            running[point] = notebook
            bar.set_postfix_str(", ".join(f"{p} {nb[:2]}" for p, nb in sorted(running.items()) if nb))

    def on_event(event) -> None:
        msg = event[1]
        if status.running(msg["point"], msg["notebook"]):
            show(msg["point"], msg["notebook"])

    with _client(scheduler, workers) as client:
        client.subscribe_topic(topic, on_event)
        futures, leader = {}, None
        for task in submissions(todo):
            p = task["point"]
            fut = client.submit(run_point, p.name, str(p.run_dir), p.params, threads, topic,
                                after=leader if task["after_leader"] else None, key=f"point-{p.name}-{token}",
                                pure=False, priority=task["priority"])
            leader = leader if task["after_leader"] else fut
            futures[fut] = p
        for fut, result in as_completed(futures, with_results=True, raise_errors=False):
            p = futures[fut]
            if isinstance(result, BaseException):  # the worker died (KilledWorker) or the task could not start
                result = {"state": "failed", "error": one_line(result), "notebook": None}
            show(p.name, None)
            status.set(p.name, state=result["state"], error=result["error"], notebook=result["notebook"],
                       seconds=result.get("seconds"))
            bar.update(1)
        client.unsubscribe_topic(topic)
    bar.close()
    return status
