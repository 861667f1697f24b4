"""What the two plug-in registries share (attacks: `attacks.custom_attack`, defenses:
`defenses.custom_defense`): the checks on a new name, the .py file that registers plug-ins for a
batch run (`-p attack_file`, `-p defense_file`), and the source text a cache key is taken from."""
from __future__ import annotations

import hashlib
import inspect
import runpy
from pathlib import Path

from .errors import ConfigError, DataNotFoundError


def check_new_name(kind: str, name, registry: dict, example: str) -> None:
    """A plug-in's name is a plain identifier and not a built-in's (re-registering a custom one
    replaces it)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"a custom {kind} needs a name that is a plain identifier such as {example!r}, got {name!r}.")
    if name in registry and registry[name].builtin:
        raise ConfigError(f"{name!r} is a built-in {kind}; give your {kind} another name.")


def run_file(path: str | None, parameter: str, kind: str, registry: dict, call: str) -> dict:
    """Run the .py file given as `parameter`, which must register at least one `kind` in
    `registry` by calling `call`. Returns what a run records of it ({"<parameter>_sha256": ...}),
    {} without a file."""
    if path is None:
        return {}
    file = Path(path)
    if file.suffix != ".py" or not file.is_file():
        raise DataNotFoundError(f"{parameter} {str(path)!r} is not a Python file; give the path of a .py file that "
                                f"calls {call}.")
    before = dict(registry)
    runpy.run_path(str(file), run_name=f"vablib_{parameter}")
    if not [name for name, entry in registry.items() if before.get(name) is not entry]:
        raise ConfigError(f"{parameter} {str(path)!r} registered no {kind}: call {call} in it.")
    return {f"{parameter}_sha256": hashlib.sha256(file.read_bytes()).hexdigest()[:16]}


def source_of(fn) -> str:
    """A function's source (its name where there is none), to record or to key a cache by."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", repr(fn))
