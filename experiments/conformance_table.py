"""Conformance table: rows of the measured GPU outputs that fp8sim reproduces bit for bit.

    python experiments/conformance_table.py [--vectors ../shared/hw-vectors]

For every set (GPU x input format) in the conformance data, each row's
dot product goes through the GPU's preset unit (``fp8sim.gemm.dot_rows``,
the same arithmetic as ``fp8sim.matmul``, which the test suite checks
row by row) and is compared with the measured FP32 output as a bit pattern.

Where the data has FP16-output files, the rows go through the FP16-output
unit (``tensor_core(gpu, fmt, out_format="float16", instruction="mma.sync")``)
with C rounded to FP16 and ``out_format="float16"``.

A second table has one row per preset (GPU x instruction x input formats
x output) with the measured rows it matches and the MMA-Sim rows it matches
(``tests/data/mmasim_vectors.npz``, from ``experiments/mmasim_vectors.py``;
NaN encodings aside, and the rows built for the undecided choices run with
MMA-Sim's choices, ``BlockFMA.with_mmasim_choices()``).
"""

from __future__ import annotations

import os

import numpy as np

import fp8sim
from fp8sim.gemm import dot_rows
from fp8sim.hardware import PACKED_VECTORS, has_vectors, load_vectors, measured_instruction, tensor_core

try:
    from ._common import out_dir, script_parser, write_json
    from .mmasim_vectors import matches, run_set, unit_for
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json
    from mmasim_vectors import matches, run_set, unit_for

GPUS = ["V100", "A100", "Ada", "L40S", "H100", "B200"]
FORMATS = ["fp16", "bf16", "tf32", "E4M3", "E5M2"]


def addend(gpu, fmt_dir, c):
    # hw-vectors README: the H100 FP8 sets were run with C = 0
    return np.zeros_like(c) if gpu == "H100" and fmt_dir in ("E4M3", "E5M2") else c


def check_set(root, gpu, fmt_dir):
    v = load_vectors(root, gpu, fmt_dir)
    unit = tensor_core(gpu, v["in_format"], instruction=measured_instruction(gpu, fmt_dir))  # the measured one
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


MMASIM_VECTORS = PACKED_VECTORS.parent / "mmasim_vectors.npz"


def mmasim_rows(path=MMASIM_VECTORS):
    """{(gpu, instruction, a format, b format, output): (matched, rows)} over MMA-Sim's vectors."""
    import json

    with np.load(path) as d:
        data = {k: d[k] for k in d.files}
    meta = json.loads(data["meta"].tobytes())
    out = {}
    for name, cfg in meta["sets"].items():
        if cfg["instruction"] in ("block_scale", "group_scale"):  # block-scaled rows: tests/test_mmasim.py
            continue
        unit = unit_for(cfg)
        if cfg["kind"] == "choices":  # rows where the undecided choices matter: compared with MMA-Sim's choices
            unit = unit.with_mmasim_choices()
        ok = matches(*run_set(data, name, cfg, unit), cfg["out_format"])
        key = (cfg["gpu"], unit.name.split("@")[1].split(":")[0], cfg["a_format"], cfg["b_format"], cfg["out_format"])
        m, n = out.get(key, (0, 0))
        out[key] = (m + int(ok.sum()), n + len(ok))
    return out


_DIR_OF = {"float16": "fp16", "bfloat16": "bf16", "tf32": "tf32", "float8_e4m3fn": "E4M3", "float8_e5m2": "E5M2"}


def preset_rows(measured, mmasim, captured=None):
    """One row per preset (FP32 output), plus the FP16-output presets that have data."""
    from fp8sim.hardware import presets

    captured = captured or {}
    meas = {(r["gpu"], _DIR_OF.get(r["format"], r["format"])): r for r in measured}
    rows = []
    keys = [(g, i, f, f, "float32") for g, i, f, _ in presets()]
    keys += [k for k in mmasim if k not in keys]
    keys += [k for k in captured if k not in keys]
    keys += [(r["gpu"], "mma.sync", r["in_format"], r["in_format"], "float16") for r in measured
             if "fp16_matched" in r and (r["gpu"], "mma.sync", r["in_format"], r["in_format"], "float16") not in keys]
    for g, i, fa, fb, of in sorted(keys):
        r = {"gpu": g, "instruction": i, "a_format": fa, "b_format": fb, "out_format": of}
        d = _DIR_OF.get(fa, "?")
        m = meas.get((g, d)) if fa == fb and i == measured_instruction(g, d, "fp32" if of == "float32" else "fp16") \
            else None
        if m is not None:
            got = m["fp32_matched"] if of == "float32" else m.get("fp16_matched")
            if got is not None:
                r["measured"] = [got, m["rows"]]
        if (g, i, fa, fb, of) in mmasim:
            r["mmasim"] = list(mmasim[(g, i, fa, fb, of)])
        if (g, i, fa, fb, of) in captured:
            r["captured"] = list(captured[(g, i, fa, fb, of)])
        rows.append(r)
    return rows


def captured_rows():
    """{(gpu, instruction, a format, b format, "float32"): (outputs matched, outputs)} over the outputs
    captured on an H100: whole cuBLAS GEMMs (experiments/gpu_capture.py; the epilogue's BF16 / FP16
    roundings included; NaN encodings aside) and single mma.sync tiles (experiments/probe_mma.py)."""
    try:
        from . import gpu_capture, probe_mma
    except ImportError:  # run as a script
        import gpu_capture
        import probe_mma
    out = {}

    def add(key, matched, total):
        m, n = out.get(key, (0, 0))
        out[key] = (m + matched, n + total)

    if gpu_capture.DATA.is_file():
        arrays, meta = gpu_capture.load(gpu_capture.DATA)
        for r in gpu_capture.check_all(arrays, meta):
            add((*r["preset"], "float32"), r["equal"] + r["nan_encoding_only"], r["outputs"])
    if probe_mma.TILES.is_file():
        fit = probe_mma.fit_tiles(probe_mma.TILES, quiet=True)
        for name, r in fit.items():
            fa = fp8sim.get_format(probe_mma.KINDS[probe_mma.TILE_SETS[name][0]][0]).name
            add(("H100", "mma.sync", fa, "float8_e4m3fn", "float32"), r["preset"], r["outputs"])
    return out


def preset_markdown(rows):
    def short(f):
        return fp8sim.get_format(f).name.replace("float8_", "").replace("float6_", "").replace("float4_", "")

    lines = ["| GPU | instruction | inputs | output | measured rows matched | H100 captures matched "
             "| MMA-Sim rows matched |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ins = short(r["a_format"]) + ("" if r["b_format"] == r["a_format"] else " x " + short(r["b_format"]))
        meas = f"{r['measured'][0]} / {r['measured'][1]}" if "measured" in r else "-"
        cap = f"{r['captured'][0]} / {r['captured'][1]}" if "captured" in r else "-"
        sim = f"{r['mmasim'][0]} / {r['mmasim'][1]}" if "mmasim" in r else "-"
        lines.append(f"| {r['gpu']} | {r['instruction']} | {ins} | {short(r['out_format'])} | {meas} | {cap} "
                     f"| {sim} |")
    return "\n".join(lines)


def main(argv=None):
    ap = script_parser(__doc__, seed=False)
    ap.add_argument("--vectors", default=os.environ.get("FP8SIM_HW_VECTORS", str(PACKED_VECTORS)),
                    help="the measured data: a hw-vectors folder or a packed file (default: the one the tests ship)")
    args = ap.parse_args(argv)
    rows = run(args.vectors)
    for r in rows:
        r["in_format"] = fp8sim.get_format(load_vectors(args.vectors, r["gpu"], r["format"])["in_format"]).name
    table = markdown(rows)
    print(table)
    presets_table = preset_rows(rows, mmasim_rows(), captured_rows()) if MMASIM_VECTORS.is_file() else []
    per_preset = preset_markdown(presets_table)
    print()
    print(per_preset)
    write_json(out_dir(args.out) / "conformance.json", {"sets": rows, "markdown": table, "presets": presets_table,
                                                          "presets_markdown": per_preset})
    return rows


if __name__ == "__main__":
    main()
