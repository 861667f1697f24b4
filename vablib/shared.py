"""What notebook 01 takes from outside its run folder: an attack file, and the work it shares.

Runs that differ only in V&B settings (notebooks 02-06) poison the same data the same way and
train the same no-defense and clean-floor models. With a `cache_dir` (a sweep sets one), notebook
01 keeps these in `<cache_dir>/<key>/`, keyed by the content hash of the data, the attack (and its
attack file), the seed and the training budget, and links them into the run folder instead of
computing them again. Each item is published by renaming a finished temporary folder into place,
so two runs computing the same item at once never leave a partial one: the first wins and the
second keeps its own copy. A run folder's own complete copy is never replaced.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


ITEMS = {"poisoned": ("poisoned.npz", "poisoned_manifest.json"), "no_defense": ("baseline.json",),
         "clean_floor": ("clean_floor.json",)}


def load_attack_file(path: str | None) -> dict:
    """Run a .py file that registers one or more attacks with `attacks.custom_attack`, so
    `attack=<its name>` works without editing a notebook. Returns what the run records of it:
    {"attack_file_sha256": ...}, or {} without a file."""
    from .attacks import registry
    from .plugins import run_file

    return run_file(path, "attack_file", "attack", registry._REGISTRY,
                    "vablib.attacks.custom_attack(name, trigger_fn)")


def _link(src: Path, dst: Path) -> None:
    """dst becomes a hard link to src (a copy across file systems), replaced atomically. Safe
    because vablib never writes a file in place: every write renames a new file over the old."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


class WorkCache:
    """Notebook 01's shareable artifacts under `<cache_dir>/<key>/<item>/`; a no-op without a
    cache_dir, so notebook 01 works the same with and without one."""

    def __init__(self, cache_dir: str | os.PathLike | None, key: str):
        self.root = Path(cache_dir) / key if cache_dir else None

    @classmethod
    def for_run(cls, cache_dir, ds, attack_cfg, seed: int, train_cfg, attack_source: dict) -> "WorkCache":
        from .hashing import content_key

        key = content_key("01_generate_poisoned_dataset", ds.fingerprint(), attack_cfg, attack_cfg.params(), seed,
                          train_cfg, attack_source.get("attack_file_sha256"))
        return cls(cache_dir, key)

    def _complete(self, folder: Path, item: str) -> bool:
        return all((folder / name).is_file() for name in ITEMS[item])

    def fetch(self, run) -> bool:
        """Link the cached items into run.artifacts (a run's own complete item is kept); True when
        the run folder now holds the poisoned set, so notebook 01 loads it instead of poisoning."""
        if self.root is None:
            return False
        for item, names in ITEMS.items():
            if self._complete(self.root / item, item) and not self._complete(run.artifacts, item):
                for name in names:
                    _link(self.root / item / name, run.artifacts / name)
        return self._complete(run.artifacts, "poisoned")

    def publish(self, run) -> None:
        """Offer the run's complete items that the cache lacks (the first to arrive is kept)."""
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        for item, names in ITEMS.items():
            if self._complete(self.root / item, item) or not self._complete(run.artifacts, item):
                continue
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{item}."))
            for name in names:
                _link(run.artifacts / name, staging / name)
            try:
                os.rename(staging, self.root / item)
            except OSError:  # another run published it first
                shutil.rmtree(staging, ignore_errors=True)
