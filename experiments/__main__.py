"""Run every experiment and regenerate every figure: ``python -m experiments``.

Options are passed to each script: ``--quick``, ``--seed N``, ``--out DIR``
(default ``figures/``), ``--scheduler ADDRESS`` (Dask, for the sweeps).
The conformance table runs too when ``FP8SIM_HW_VECTORS`` names the data.
"""

from __future__ import annotations

import argparse
import os
import time

from . import accumulation_error, conformance_table, format_error, outlier_sensitivity, scaling_demo


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="figures")
    ap.add_argument("--scheduler", default=None)
    args = ap.parse_args(argv)
    common = ["--seed", str(args.seed), "--out", args.out] + (["--quick"] if args.quick else [])
    sweeps = common + (["--scheduler", args.scheduler] if args.scheduler else [])
    steps = [
        ("format_error", lambda: format_error.main(common)),
        ("accumulation_error", lambda: accumulation_error.main(sweeps)),
        ("outlier_sensitivity", lambda: outlier_sensitivity.main(sweeps)),
        ("scaling_demo", lambda: scaling_demo.main(["--seed", str(args.seed), "--out", args.out])),
    ]
    if os.environ.get("FP8SIM_HW_VECTORS"):
        steps.append(("conformance_table",
                      lambda: conformance_table.main(["--vectors", os.environ["FP8SIM_HW_VECTORS"], "--out", args.out])))
    for name, run in steps:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        run()
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"figures and JSON in {args.out}/")


if __name__ == "__main__":
    main()
