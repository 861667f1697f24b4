"""One content hash for everything that names what produced an artifact.

`content_key` keys cached models (CL's clean model, IAD's generators, the no-defense and clean-floor
models) and V&B checkpoints, so none is reused for other data or settings.
"""
from __future__ import annotations

import hashlib
import json

from .runio import jsonable


def content_key(*parts) -> str:
    """16 hex digits of the SHA-256 of the parts as sorted JSON. Parts may be JSON-able values,
    NumPy or torch values, paths or dataclasses (hashed as their fields); anything else by str()."""
    text = json.dumps(jsonable(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
