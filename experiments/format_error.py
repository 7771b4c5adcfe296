"""Relative rounding error versus magnitude for FP8 and the MX element formats (the saw-tooth).

    python experiments/format_error.py [--quick] [--out figures]

For E4M3, E5M2, E3M2, E2M3 and E2M1: every magnitude from a quarter of
the smallest subnormal to twice the largest value (log-spaced), rounded
to nearest-even with saturation; the relative error ``|q(x) - x| / x``.
Between the smallest normal and the max it is a saw-tooth bounded by
``eps / 2``; below the smallest normal it grows as spacing stays fixed;
above the max saturation takes over.  The figure marks each format's
normal range; the JSON records the ranges and the worst error inside them.
"""

from __future__ import annotations

import numpy as np

import fp8sim
from fp8sim import get_format

try:
    from ._common import out_dir, save_figure, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, save_figure, script_parser, write_json

FORMATS = ["e4m3", "e5m2", "e3m2", "e2m3", "e2m1"]


def compute(points):
    rows = {}
    for name in FORMATS:
        f = get_format(name)
        x = np.geomspace(f.smallest_subnormal / 4, f.max * 2, points)
        q = fp8sim.quantize(x, f, overflow="saturate")
        rel = np.abs(q - x) / x
        normal = (x >= f.smallest_normal) & (x <= f.max)
        rows[f.name] = {
            "x": x.tolist(), "rel_err": rel.tolist(),
            "smallest_subnormal": f.smallest_subnormal, "smallest_normal": f.smallest_normal, "max": f.max,
            "dynamic_range_binades": float(np.log2(f.max / f.smallest_subnormal)),
            "normal_range_binades": float(np.log2(f.max / f.smallest_normal)),
            "max_rel_err_normal_range": float(rel[normal].max()), "eps_over_2": f.eps / 2,
        }
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 2.3 * len(rows)), sharex=True)
    for ax, (name, r) in zip(axes, rows.items()):
        ax.loglog(r["x"], np.maximum(r["rel_err"], 1e-6), lw=0.8)
        ax.axvspan(r["smallest_normal"], r["max"], color="C2", alpha=0.12, label="normal range")
        ax.axvline(r["smallest_subnormal"], color="C3", ls=":", lw=1, label="smallest subnormal")
        ax.axhline(r["eps_over_2"], color="k", ls="--", lw=0.8, label="eps / 2")
        ax.set_ylim(1e-3, 2)
        ax.set_ylabel("rel. error")
        ax.set_title(f"{name}: {r['dynamic_range_binades']:.0f} binades "
                     f"({r['smallest_subnormal']:.3g} to {r['max']:g})", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("|x|")
    save_figure(fig, path, dpi=100)


def main(argv=None):
    ap = script_parser(__doc__, quick="fewer points")
    args = ap.parse_args(argv)
    rows = compute(2000 if args.quick else 20000)
    out = out_dir(args.out)
    write_json(out / "format_error.json", {"formats": rows}, seed=args.seed)
    plot(rows, out / "format_error.png")
    print("format                dynamic range (binades)  normal range  worst rel. error in normal range  eps/2")
    for name, r in rows.items():
        print(f"  {name:20s} {r['dynamic_range_binades']:10.1f} {r['normal_range_binades']:16.1f} "
              f"{r['max_rel_err_normal_range']:20.4f} {r['eps_over_2']:16.4f}")
    return rows


if __name__ == "__main__":
    main()
