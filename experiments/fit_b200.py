"""Which block-FMA variant fits B200's FP8 outputs: the measurement behind the preset.

    python experiments/fit_b200.py [--vectors ../shared/hw-vectors]

For the B200 E4M3 and E5M2 sets (5000 rows each), counts the rows each
variant of the unit reproduces bit for bit, over a range of alignment
widths F:

- published: C in the alignment, sum truncated to FP32 (as H100 with F = 13);
- c_after_rtz_then_rne (the preset): products aligned and truncated to F
  bits, their sum truncated to FP32, then C added with one rounding to
  nearest-even FP32;
- c_after_rne: as above with the products' sum rounded to nearest-even;
- c_after_rtz: as above with C's addition truncated too.
"""

from __future__ import annotations

import os

import numpy as np

from fp8sim.gemm import dot_rows
from fp8sim.hardware import PACKED_VECTORS, load_vectors, tensor_core

try:
    from ._common import out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json

VARIANTS = {
    "published": dict(c_in_alignment=True, out_rounding="toward_zero", c_rounding="toward_zero"),
    "c_after_rtz_then_rne": dict(c_in_alignment=False, out_rounding="toward_zero", c_rounding="nearest_even"),
    "c_after_rne": dict(c_in_alignment=False, out_rounding="nearest_even", c_rounding="nearest_even"),
    "c_after_rtz": dict(c_in_alignment=False, out_rounding="toward_zero", c_rounding="toward_zero"),
}


def run(root, widths):
    table = {}
    for fmt_dir in ("E4M3", "E5M2"):
        v = load_vectors(root, "B200", fmt_dir)
        base = tensor_core("B200", v["in_format"], instruction="mma.sync")
        for name, params in VARIANTS.items():
            for F in widths:
                unit = base.replace(align_bits=F, **params)
                got = dot_rows(v["a"], v["b"], v["c"], unit=unit).astype(np.float32).view(np.uint32)
                table[f"{fmt_dir} {name} F={F}"] = int((got == v["d_bits"]).sum())
    return table


def main(argv=None):
    ap = script_parser(__doc__, seed=False)
    ap.add_argument("--vectors", default=os.environ.get("FP8SIM_HW_VECTORS", str(PACKED_VECTORS)),
                    help="the measured data: a hw-vectors folder or a packed file (default: the one the tests ship)")
    args = ap.parse_args(argv)
    widths = [13, 16, 20, 22, 23, 24, 25, 28, 32]
    table = run(args.vectors, widths)
    for key, n in table.items():
        print(f"{key:40s} {n:5d} / 5000")
    write_json(out_dir(args.out) / "fit_b200.json", {"rows_matched": table})
    return table


if __name__ == "__main__":
    main()
