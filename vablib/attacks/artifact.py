"""PoisonedData: the poisoned training set and triggered test set that notebook 01 writes and
every later notebook reads (`artifacts/poisoned.npz` + `artifacts/poisoned_manifest.json`)."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np

from .. import runio
from ..errors import DataFormatError

STAGE = "01_generate_poisoned_dataset"
ARRAYS = "poisoned.npz"
MANIFEST = "poisoned_manifest.json"


@dataclass
class PoisonedData:
    x_train: np.ndarray  # uint8 N×H×W×C, poisoned (and noise/cross) images in place
    y_train: np.ndarray  # int64, labels after poisoning
    y_train_clean: np.ndarray  # int64, original labels
    poison_mask: np.ndarray  # bool N: carries the trigger
    noise_mask: np.ndarray  # bool N: WaNet noise / IAD cross samples (changed image, label kept)
    x_test: np.ndarray  # clean test images
    y_test: np.ndarray
    x_bd_test: np.ndarray  # triggered test images of non-target classes (all2all: all test images)
    y_bd_target: np.ndarray  # the attack's labels for them (ASR)
    y_bd_true: np.ndarray  # their true labels (RA)
    classes: tuple = ()
    dataset_name: str = ""
    manifest: dict = field(default_factory=dict)
    x_orig_changed: np.ndarray | None = None  # clean originals of the rows where poison_mask | noise_mask

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def changed_mask(self) -> np.ndarray:
        return self.poison_mask | self.noise_mask

    def clean_train_images(self) -> np.ndarray:
        """The original (unpoisoned) training images, rebuilt from x_train and the stored originals."""
        x = self.x_train.copy()
        if self.x_orig_changed is not None:
            x[self.changed_mask] = self.x_orig_changed
        return x

    def content_hash(self) -> str:
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.poison_mask, self.noise_mask, self.x_bd_test, self.y_bd_target):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    # ---------------------------------------------------------------- files

    def save(self, run) -> None:
        """Write the arrays and the manifest to run.artifacts (atomically, no pickles)."""
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("classes", "dataset_name", "manifest")}
        if arrays["x_orig_changed"] is None:
            del arrays["x_orig_changed"]
        runio.save_arrays(run.artifacts / ARRAYS, classes=np.asarray(self.classes, dtype=str), **arrays)
        runio.write_json(run.artifacts / MANIFEST, {**self.manifest, "dataset_name": self.dataset_name})

    @classmethod
    def exists(cls, run) -> bool:
        return (run.artifacts / ARRAYS).exists() and (run.artifacts / MANIFEST).exists()

    @classmethod
    def load(cls, run) -> "PoisonedData":
        """Read the artifact of notebook 01; a missing file names the notebook to run first."""
        arrays_path = run.require(f"artifacts/{ARRAYS}", STAGE)
        manifest = runio.read_json(run.require(f"artifacts/{MANIFEST}", STAGE))
        z = runio.load_arrays(arrays_path)
        needed = [f.name for f in dataclasses.fields(cls) if f.name not in ("dataset_name", "manifest", "x_orig_changed")]
        missing = [k for k in needed if k not in z]
        if missing:
            raise DataFormatError(f"{arrays_path} lacks {missing}: it was not written by {STAGE}; rerun that notebook.")
        data = cls(**{k: z[k] for k in needed if k != "classes"}, classes=tuple(str(c) for c in z["classes"]),
                   dataset_name=manifest.get("dataset_name", ""), manifest=manifest,
                   x_orig_changed=z.get("x_orig_changed"))
        if manifest.get("content_hash") and manifest["content_hash"] != data.content_hash():
            raise DataFormatError(f"{arrays_path} does not match {MANIFEST} (content hash differs): rerun {STAGE}.")
        return data
