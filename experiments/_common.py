"""Helpers the experiment scripts share: output folder and the JSON record."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fp8sim


def out_dir(path) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def write_json(path, payload: dict, *, seed=None) -> Path:
    """Write ``payload`` with the command, fp8sim version, seed and machine recorded."""
    record = {
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else "",
        "fp8sim_version": fp8sim.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "seed": seed,
        **payload,
    }
    path = Path(path)
    path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def progress(iterable, **kwargs):
    """tqdm if installed, else the plain iterable."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, **kwargs)
