"""Run every experiment and regenerate every figure: ``python -m experiments``.

Options are passed to each script: ``--quick``, ``--seed N``, ``--out DIR``
(default: the repository's ``figures/``; with ``--quick``, a new temporary
folder, so a quick run never overwrites the committed figures),
``--scheduler ADDRESS`` (Dask, for the sweeps).  The conformance table
reads the measured data the tests ship, or ``FP8SIM_HW_VECTORS``.

Run it from the repository root (``python -m experiments``) or, from any
directory, as ``python PATH/TO/REPO/experiments``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a path (python REPO/experiments): import the package by its folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "experiments"

from experiments import (  # noqa: E402
    accumulation_error, block_scaled_error, conformance_table, format_error, gpu_capture, outlier_sensitivity,
    scaling_demo,
)
from experiments._common import resolve_out  # noqa: E402
from fp8sim.hardware import PACKED_VECTORS  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--scheduler", default=None)
    args = ap.parse_args(argv)
    args.out = resolve_out(args.out, args.quick)
    common = ["--seed", str(args.seed), "--out", args.out] + (["--quick"] if args.quick else [])
    sweeps = common + (["--scheduler", args.scheduler] if args.scheduler else [])
    steps = [
        ("format_error", lambda: format_error.main(common)),
        ("accumulation_error", lambda: accumulation_error.main(sweeps)),
        ("outlier_sensitivity", lambda: outlier_sensitivity.main(sweeps)),
        ("block_scaled_error", lambda: block_scaled_error.main(sweeps)),
        ("scaling_demo", lambda: scaling_demo.main(["--seed", str(args.seed), "--out", args.out])),
    ]
    try:
        import torch  # noqa: F401
    except ImportError:
        print("== fp8_training: skipped, it needs PyTorch (pip install 'fp8sim[torch]')", flush=True)
    else:
        from experiments import fp8_training

        steps.append(("fp8_training", lambda: fp8_training.main(sweeps)))
    vectors = os.environ.get("FP8SIM_HW_VECTORS") or str(PACKED_VECTORS)
    steps.append(("conformance_table", lambda: conformance_table.main(["--vectors", vectors, "--out", args.out])))
    steps.append(("gpu_capture", lambda: gpu_capture.main(["--out", args.out])))
    for name, run in steps:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        run()
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"figures and JSON in {args.out}/")


if __name__ == "__main__":
    main()
