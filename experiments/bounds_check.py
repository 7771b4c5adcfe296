"""How tight fp8sim's error bounds are on random data.

    python experiments/bounds_check.py [--seed 0]

For (32 x K) @ (K x 32) E4M3 GEMMs through the H100 unit (fast chain and
promotion every 128), K = 4096, three input distributions: the largest
error against the exact sum, and the ratio bound / error (minimum over the
outputs: how close the bound comes; median: how much it typically
overestimates), for the deterministic and the probabilistic bound (lam = 5).
"""

from __future__ import annotations

import math

import numpy as np

import fp8sim
from fp8sim.bounds import dot_error_bound
from fp8sim.hardware import tensor_core

try:
    from ._common import out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json


def exact_dot(a, b):
    return np.array([[math.fsum(a[i] * b[:, j]) for j in range(b.shape[1])] for i in range(a.shape[0])])


def run(seed, K=4096):
    rng = np.random.default_rng(seed)
    unit = tensor_core("H100", "e4m3")
    rows = []
    for dist in ("normal", "shifted normal (mean 0.65)", "uniform [0, 1)"):
        def draw(shape):
            x = {"normal": rng.standard_normal(shape), "uniform [0, 1)": rng.random(shape),
                 "shifted normal (mean 0.65)": rng.standard_normal(shape) + 0.65}[dist]
            return fp8sim.quantize(x, "e4m3", overflow="saturate")

        a, b = draw((32, K)), draw((K, 32))
        exact = exact_dot(a, b)
        for plan, promote in (("fast", None), ("promote 128", 128)):
            err = np.abs(fp8sim.matmul(a, b, unit=unit, promote_every=promote) - exact)
            row = {"distribution": dist, "plan": plan, "max_error": float(err.max())}
            for kind in ("deterministic", "probabilistic"):
                bound = dot_error_bound(a, b, unit, promote_every=promote, kind=kind)
                ratio = bound[err > 0] / err[err > 0]
                row[kind] = {"holds": bool(np.all(err <= bound)), "min_ratio": float(ratio.min()),
                             "median_ratio": float(np.median(ratio))}
            rows.append(row)
    return rows


def main(argv=None):
    ap = script_parser(__doc__)
    args = ap.parse_args(argv)
    rows = run(args.seed)
    print("| inputs | plan | max error | deterministic: holds, bound/error min, median | "
          "probabilistic (lam 5): holds, min, median |")
    print("|---|---|---|---|---|")
    for r in rows:
        d, p = r["deterministic"], r["probabilistic"]
        print(f"| {r['distribution']} | {r['plan']} | {r['max_error']:.3g} | {d['holds']}, {d['min_ratio']:.3g}, "
              f"{d['median_ratio']:.3g} | {p['holds']}, {p['min_ratio']:.3g}, {p['median_ratio']:.3g} |")
    write_json(out_dir(args.out) / "bounds_check.json", {"rows": rows}, seed=args.seed)
    return rows


if __name__ == "__main__":
    main()
