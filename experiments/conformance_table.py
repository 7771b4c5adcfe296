"""Conformance table: rows of the measured GPU outputs that fp8sim reproduces bit for bit.

    python experiments/conformance_table.py [--vectors ../shared/hw-vectors]

For every set (GPU x input format) in the conformance data, each row's
dot product goes through the GPU's preset unit (``fp8sim.gemm.dot_rows``,
the same arithmetic as ``fp8sim.matmul``, which the test suite checks
row by row) and is compared with the measured FP32 output as a bit pattern.

Stretch: where the data has FP16-output files, the rows go through the
FP16-output unit (``tensor_core(gpu, fmt, out_format="float16")``) with C
rounded to FP16 and ``out_format="float16"``.  H100 and B200 with FP8
inputs and FP16 output are not modelled: for them the table shows how
many rows the nearest simple variant matches (the FP32 unit's result
rounded to FP16), marked "not modelled".
"""

from __future__ import annotations

import os

import numpy as np

import fp8sim
from fp8sim.gemm import dot_rows
from fp8sim.hardware import PACKED_VECTORS, has_vectors, load_vectors, tensor_core

try:
    from ._common import out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json

GPUS = ["V100", "A100", "Ada", "L40S", "H100", "B200"]
FORMATS = ["fp16", "bf16", "tf32", "E4M3", "E5M2"]


def addend(gpu, fmt_dir, c):
    # hw-vectors README: the H100 FP8 sets were run with C = 0
    return np.zeros_like(c) if gpu == "H100" and fmt_dir in ("E4M3", "E5M2") else c


def check_set(root, gpu, fmt_dir):
    v = load_vectors(root, gpu, fmt_dir)
    unit = tensor_core(gpu, v["in_format"], instruction="mma.sync")  # the measured instruction
    got = dot_rows(v["a"], v["b"], addend(gpu, fmt_dir, v["c"]), unit=unit)
    row = {"gpu": gpu, "format": fmt_dir, "unit": unit.name, "block": unit.block, "align_bits": unit.align_bits,
           "out_frac_bits": unit.out_frac_bits, "rows": len(got),
           "fp32_matched": int((got.astype(np.float32).view(np.uint32) == v["d_bits"]).sum())}
    if has_vectors(root, gpu, fmt_dir, "fp16"):
        v16 = load_vectors(root, gpu, fmt_dir, output="fp16")
        c16 = fp8sim.quantize(v16["c"], "float16")  # the FP16-output rows used their C, H100 FP8 included
        unit16 = tensor_core(gpu, v["in_format"], out_format="float16", instruction="mma.sync")
        row["fp16_modelled"] = True
        out16 = dot_rows(v16["a"], v16["b"], c16, unit=unit16, out_format="float16")
        row["fp16_matched"] = int((out16.astype(np.float32).view(np.uint32) == v16["d_bits"]).sum())
    return row


def run(root):
    rows = []
    for gpu in GPUS:
        for f in FORMATS:
            if has_vectors(root, gpu, f):
                rows.append(check_set(root, gpu, f))
    return rows


def markdown(rows):
    lines = ["| GPU | input | block | F | out frac bits | FP32 output: rows matched | FP16 output: rows matched |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        fp16 = f"{r['fp16_matched']} / {r['rows']}" if "fp16_matched" in r else "no data"
        if "fp16_matched" in r and not r["fp16_modelled"]:
            fp16 += " (not modelled)"
        lines.append(f"| {r['gpu']} | {r['format']} | {r['block']} | {r['align_bits']} | {r['out_frac_bits']} | "
                     f"{r['fp32_matched']} / {r['rows']} | {fp16} |")
    return "\n".join(lines)


def main(argv=None):
    ap = script_parser(__doc__, seed=False)
    ap.add_argument("--vectors", default=os.environ.get("FP8SIM_HW_VECTORS", str(PACKED_VECTORS)),
                    help="the measured data: a hw-vectors folder or a packed file (default: the one the tests ship)")
    args = ap.parse_args(argv)
    rows = run(args.vectors)
    table = markdown(rows)
    print(table)
    write_json(out_dir(args.out) / "conformance.json", {"sets": rows, "markdown": table})
    return rows


if __name__ == "__main__":
    main()
