"""Run folders and safe file I/O.

Every file is written to a temporary name in the same folder and renamed into place, so a kill
while writing never leaves a truncated file that a later run would read. Loading never executes
pickled code: JSON, npz with allow_pickle=False, and torch.load(weights_only=True).
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, DataFormatError, DataNotFoundError, RunConflictError


# ---------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(obj: Any):
    """`obj` as plain JSON values: NumPy and torch values as numbers and lists, paths as strings,
    dataclasses as dicts of their fields, NaN and inf as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic JSON write; NaN/inf become null so the file stays valid JSON."""
    text = json.dumps(jsonable(obj), indent=2, sort_keys=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} is not valid JSON ({exc}); delete it or rerun the step that writes it.") from exc


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one line and fsync. A kill mid-append can only leave a partial *last* line, which
    read_jsonl drops."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(jsonable(record)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill while appending
    return rows


def rewrite_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Atomically replace a JSON-lines file (used to drop rows past a resumed checkpoint)."""
    text = "".join(json.dumps(jsonable(r)) + "\n" for r in rows)
    atomic_write_bytes(path, text.encode())


# ---------------------------------------------------------------- arrays and checkpoints

def save_arrays(path: str | os.PathLike, **arrays) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path} does not exist.")
    if not zipfile.is_zipfile(path):
        raise DataFormatError(f"{path} is not a readable .npz file (not a zip archive: corrupted or truncated).")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise DataFormatError(f"{path} holds pickled objects, which vablib refuses to load: {exc}") from exc
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError ...
        raise DataFormatError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc}).") from exc


CHECKPOINT_FORMAT = "vablib-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """torch.save of plain tensors, numbers, strings and containers only, written atomically."""
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"checkpoint {path} does not exist.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError for foreign code, RuntimeError/EOFError for truncation
        raise CheckpointError(
            f"checkpoint {path} could not be loaded safely ({type(exc).__name__}): it is corrupted, truncated, "
            "or holds pickled code, which vablib never executes. Delete it to start that step over."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vablib checkpoint (no '{CHECKPOINT_FORMAT}' marker).")
    return state


# ---------------------------------------------------------------- run folders

# Parameters that say where and how visibly a run executes, not what it computes: never recorded,
# so a rerun or a later notebook may change them (a resumed run may move to another device).
VOLATILE_PARAMS = frozenset({"device", "progress", "interactive", "run_dir", "download"})


class RunDir:
    """One folder per run: config.json, metrics, figures/, artifacts/, checkpoints/, notebooks/.

    `record(stage, params)` merges a notebook's parameters into config.json and refuses, with a clear
    error, parameters that differ from the ones the folder was made with: a run folder never
    silently mixes artifacts of two configurations.
    """

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                probe = self.path / ".write-test"
                probe.write_text("ok")
                probe.unlink()
            except OSError as exc:
                raise ConfigError(f"run_dir {self.path} cannot be written ({exc.strerror}); choose a writable folder.") from exc
        elif not self.path.is_dir():
            raise DataNotFoundError(f"run folder {self.path} does not exist.")

    # well-known places
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def sub(self, name: str) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def figures(self) -> Path:
        return self.sub("figures")

    @property
    def artifacts(self) -> Path:
        return self.sub("artifacts")

    @property
    def checkpoints(self) -> Path:
        return self.sub("checkpoints")

    def config(self) -> dict:
        return read_json(self.config_path) if self.config_path.exists() else {"params": {}, "stages": {}}

    def params(self) -> dict:
        return dict(self.config()["params"])

    def record(self, stage: str, params: dict, environment: dict | None = None) -> dict:
        """Merge `params` (as set by `stage`) into config.json; return all recorded params."""
        cfg = self.config()
        recorded, stages = cfg.setdefault("params", {}), cfg.setdefault("stages", {})
        params = jsonable(params)
        for key, value in params.items():
            if key in VOLATILE_PARAMS or key not in recorded or recorded[key] == value:
                continue
            owner = next((s for s, keys in stages.items() if key in keys), "an earlier notebook")
            raise RunConflictError(
                f"{self.path} was made with {key}={recorded[key]!r} (by {owner}), but {stage} asks for "
                f"{key}={value!r}. Use a new run_dir for the new setting, or delete {self.path} to start over."
            )
        for key, value in params.items():
            if key not in VOLATILE_PARAMS:
                recorded[key] = value
        stages[stage] = sorted(set(stages.get(stage, [])) | set(params))
        if environment:
            cfg.setdefault("environment", {})[stage] = environment
        write_json(self.config_path, cfg)
        return dict(recorded)

    def require(self, relpath: str, made_by: str) -> Path:
        """An upstream artifact, or an error naming the notebook that makes it."""
        p = self.path / relpath
        if not p.exists():
            raise DataNotFoundError(f"{p} is missing: run {made_by} with run_dir={str(self.path)!r} first.")
        return p
