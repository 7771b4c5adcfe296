"""Each scaling granularity on one small matrix with an outlier (for the README).

    python experiments/scaling_demo.py

A 4 x 64 matrix of standard-normal values (seed 0) with one outlier of 20000
at (0, 5), quantized to E4M3 (E2M1 for NVFP4) with every granularity.
Prints the scales and the relative quantization error of the rows without
the outlier, so the effect of the scale's reach is visible.
"""

from __future__ import annotations

import numpy as np

import fp8sim

try:
    from ._common import out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json

CASES = [
    ("tensor", "e4m3", {}),
    ("row", "e4m3", {}),
    ("col", "e4m3", {}),
    ((1, 32), "e4m3", {}),
    ((2, 32), "e4m3", {}),
    ("mx32", "e4m3", {}),
    ("mx32", "e2m1", {}),
    ("nvfp4", "e2m1", {}),
]


def run(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 64))
    x[0, 5] = 2e4
    rows = []
    for gran, fmt, kw in CASES:
        st = fp8sim.quantize_scaled(x, fmt, gran, **kw)
        err = np.abs(st.dequantize() - x)
        rel_clean = float(np.linalg.norm(err[1:]) / np.linalg.norm(x[1:]))
        rows.append({
            "granularity": str(gran), "elements": st.fmt.name, "scale_format": st.scale_format.name,
            "scales_shape": list(st.scales.shape),
            "scales": [float(f"{v:.4g}") for v in st.scales.ravel()[:4]],
            "global_scale": st.global_scale, "saturated": st.saturated,
            "rel_error_rows_without_outlier": rel_clean,
        })
    return rows


def main(argv=None):
    ap = script_parser(__doc__)
    args = ap.parse_args(argv)
    rows = run(args.seed)
    print("| granularity | elements | scale format | scales shape | first scales | rel. error, rows 1-3 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        extra = f" (global {r['global_scale']:.4g})" if r["global_scale"] != 1.0 else ""
        print(f"| {r['granularity']} | {r['elements']} | {r['scale_format']} | {tuple(r['scales_shape'])} | "
              f"{r['scales']}{extra} | {r['rel_error_rows_without_outlier']:.4f} |")
    write_json(out_dir(args.out) / "scaling_demo.json", {"rows": rows}, seed=args.seed)
    return rows


if __name__ == "__main__":
    main()
