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
        "command": _command_line(),
        "git_commit": _git_commit(),
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


def _command_line():
    """The full command that ran: ``python -m experiments --quick``, ``python experiments/x.py ...``."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if argv and Path(argv[0]).name.startswith("python"):
        argv[0] = "python"
    return " ".join(argv)


def _git_commit():
    """The checkout's commit (with ``-dirty`` when files other than figures/ differ from it), or None
    outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        # the figures a run writes do not count: they are its output
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!figures"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


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


class Executor:
    """Where independent sweep points run: a Dask cluster or a local process pool.

    ``Executor(None)`` uses ``concurrent.futures.ProcessPoolExecutor``;
    ``Executor("tcp://host:8786")`` sends the points to that Dask
    distributed scheduler through its ``concurrent.futures`` executor.
    ``map`` keeps the input order, so results do not depend on where points ran.
    """

    def __init__(self, scheduler=None, workers=None):
        self.scheduler = scheduler
        if scheduler:
            try:
                from distributed import Client
            except ImportError:  # pragma: no cover
                raise SystemExit("--scheduler needs Dask: pip install 'dask[distributed]'") from None
            self._client = Client(scheduler)
            self._pool = self._client.get_executor()
        else:
            import os
            from concurrent.futures import ProcessPoolExecutor

            self._client = None
            self._pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count())

    def map(self, fn, items, desc="points"):
        items = list(items)
        futures = [self._pool.submit(fn, item) for item in items]
        return [f.result() for f in progress(futures, desc=desc, total=len(futures), leave=False)]

    def close(self):
        self._pool.shutdown()
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def point_rng(seed, *keys):
    """A generator that depends only on the seed and the sweep point's integer keys."""
    return np.random.default_rng([int(seed)] + [int(k) for k in keys])


def interleaved_median_seconds(fns, repeats, warmup=True):
    """Median wall time of each of ``fns`` (a dict of name -> callable) over ``repeats`` rounds in
    which every function runs once, in turn (after one untimed run of each, or of the names in the
    set ``warmup``): a ratio of two of them then compares runs made side by side, not minutes apart
    on a machine whose speed drifts."""
    import statistics

    for name, fn in fns.items():
        if warmup is True or (warmup and name in warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def median_seconds(fn, repeats, warmup=True):
    """Median wall time of ``fn()`` over ``repeats`` runs (after one untimed run)."""
    import statistics

    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


#: where full runs write their figures and JSON: the repository's figures/ folder, from any directory
FIGURES = Path(__file__).resolve().parent.parent / "figures"


def resolve_out(out, quick):
    """The output folder: ``out`` if given; else a fresh temporary folder for ``--quick`` runs
    (a quick run never overwrites the committed figures), else :data:`FIGURES`."""
    if out is not None:
        return out
    if quick:
        import tempfile

        path = tempfile.mkdtemp(prefix="fp8sim-quick-")
        print(f"--quick without --out: writing to {path}")
        return path
    return str(FIGURES)


def script_parser(doc, *, quick=None, sweeps=False, seed=True):
    """The options the experiment scripts share: ``--out``; ``--seed`` unless the
    script draws nothing; ``--quick`` (with ``quick`` as its help); ``--scheduler``
    for the sweeps.  ``--out`` defaults to :data:`FIGURES`, and for ``--quick``
    to a temporary folder (:func:`resolve_out`)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def parse_args(self, args=None, namespace=None):
            ns = super().parse_args(args, namespace)
            ns.out = resolve_out(ns.out, getattr(ns, "quick", False))
            return ns

    ap = _Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if quick:
        ap.add_argument("--quick", action="store_true", help=quick)
    if seed:
        ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="output folder (default: the repository's figures/; "
                                                 "with --quick, a new temporary folder)")
    if sweeps:
        ap.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a local process pool)")
    return ap


def save_figure(fig, path, dpi=110, legend_from=None, legend_title=None):
    """Lay out, write and close a matplotlib figure; with ``legend_from`` (an axis), one legend of its
    lines below the panels, titled ``legend_title``, clear of the data."""
    import matplotlib.pyplot as plt

    if legend_from is None:
        fig.tight_layout()
    else:
        handles, labels = legend_from.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, title=legend_title)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_band(ax, x, mean, lo, hi, label):
    """A line of the mean over seeds and, where the seeds differ, a band from their minimum to maximum."""
    (line,) = ax.plot(x, mean, "-o", ms=4, label=label)
    if np.any(np.asarray(lo) != np.asarray(hi)):
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)


def run_sweep(argv, doc, compute, name, plot):
    """The shared ``main`` of the sweep scripts: parse the standard options, run
    ``compute(quick, seed, executor)``, write ``name``.json and ``name``.png."""
    args = script_parser(doc, quick="small shapes, seconds (for tests)", sweeps=True).parse_args(argv)
    with Executor(args.scheduler) as ex:
        result = compute(args.quick, args.seed, ex)
    out = out_dir(args.out)
    write_json(out / f"{name}.json", result, seed=args.seed)
    plot(result, out / f"{name}.png")
    return result
