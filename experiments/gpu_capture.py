"""fp8sim against GEMMs captured on a real H100 (``experiments/capture_gpu.py``).

    python experiments/gpu_capture.py [--data tests/data/h100_scaled_mm.npz] [--out figures]

Reads the captured inputs (codes) and outputs (bit patterns) and runs each
product through fp8sim's public API:

* ``torch._scaled_mm`` with ``use_fast_accum=True``: ``fp8sim.matmul`` with
  the H100 unit (``tensor_core("H100", a_format, b_format="e4m3")``, the
  ``wgmma`` preset) as one chain over K;
* ``use_fast_accum=False``: the same unit with ``promote_every=128``;
* BF16 / FP16 output: ``out_format=`` (one nearest-even rounding of the
  FP32 result, the epilogue with scales 1.0);
* ``torch.matmul`` in BF16 / FP16 / TF32 and ``torch.mm(out_dtype=float32)``
  in BF16: the H100 preset of the instruction the profiled kernel ran
  (``nvjet_sm90`` / ``sm90_xmma``: ``wgmma``; ``cutlass_80_tensorop``:
  ``mma.sync``), output rounded to the input format (BF16, FP16) or FP32;
* the overflow set (TF32 and BF16 -> FP32): how many outputs are Inf,
  how many of those come from sums of products each within FP32's range
  (the truncated result overflows), and how many are FP32 max.

Every output is compared as a bit pattern: ``equal``, ``NaN encoding
only`` (both NaN, different bits) or ``differ``.  The captured
accumulation-error setting (normal, mean 0.65, std 1, K = 4096, E4M3,
M = N = 128; inputs regenerated from the seed and checked against the
recorded SHA-256) gives the measured and the simulated maximum relative
error, fast and promoted, per seed, with the mean's 95% t-interval over
seeds (``scipy.stats``).  Writes ``gpu_capture.json``.
"""

from __future__ import annotations

import numpy as np

import fp8sim
from fp8sim.hardware import tensor_core

try:
    from . import accumulation_error
    from ._common import out_dir, script_parser, write_json
    from .capture_gpu import DENSE_KINDS, DENSE_SETS, OUTS, PAIRS, SETS, load, sha256, stats_inputs
except ImportError:  # run as a script
    import accumulation_error
    from _common import out_dir, script_parser, write_json
    from capture_gpu import DENSE_KINDS, DENSE_SETS, OUTS, PAIRS, SETS, load, sha256, stats_inputs

DATA = fp8sim.hardware.PACKED_VECTORS.parent / "h100_scaled_mm.npz"
OUT_FORMAT = {"f32": None, "bf16": "bfloat16", "f16": "float16"}
#: dense kind -> (input format, stored input codes, output format)
DENSE_FORMAT = {"bf16": ("bfloat16", "bf16", "bfloat16"), "fp16": ("float16", "fp16", "float16"),
                "tf32": ("tf32", "tf32", "float32"), "bf16f32": ("bfloat16", "bf16", "float32")}


def decode(codes, fmt):
    """float64 values of stored codes: FP8 / BF16 / FP16 codes, or TF32 values as FP32 bits."""
    return fp8sim.decode(codes, "float32" if fmt == "tf32" else fmt)


def to_bits(values, fmt):
    """Bit patterns of float64 ``values`` that hold ``fmt`` values ("float32", "bfloat16", "float16")."""
    import ml_dtypes

    dt = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}[fmt]
    return np.asarray(values).astype(dt).view({"float32": np.uint32}.get(fmt, np.uint16))


def is_nan_bits(bits, fmt):
    """Which bit patterns of ``fmt`` ("float32", "bfloat16", "float16") are NaN."""
    return np.isnan(fp8sim.decode(bits, fmt))


def compare(sim_bits, gpu_bits, fmt):
    """Counts of equal outputs, NaN-encoding-only differences and real differences."""
    both_nan = is_nan_bits(sim_bits, fmt) & is_nan_bits(gpu_bits, fmt)
    eq = sim_bits == gpu_bits
    return {"outputs": int(eq.size), "equal": int(eq.sum()), "nan_encoding_only": int((~eq & both_nan).sum()),
            "differ": int((~eq & ~both_nan).sum()),
            "gpu_nan_bits": sorted({hex(int(v)) for v in gpu_bits[is_nan_bits(gpu_bits, fmt)]})}


def scaled_mm_sim(arrays, name, pair, mode, out, promote_every=128):
    """What fp8sim says ``torch._scaled_mm`` gave for one captured case (values, float64)."""
    a_fmt = pair.split("_")[0]
    a = decode(arrays[f"{name}/a_{a_fmt}"], a_fmt)
    b = decode(arrays[f"{name}/bt_e4m3"], "e4m3").T
    unit = tensor_core("H100", a_fmt, b_format="e4m3")
    return fp8sim.matmul(a, b, unit=unit, promote_every=None if mode == "fast" else promote_every,
                         out_format=OUT_FORMAT[out])


def instruction_of(kernels):
    """The matrix instruction a profiled cuBLAS / CUTLASS kernel runs on sm_90."""
    names = " ".join(kernels)
    if "cutlass_80_tensorop" in names:
        return "mma.sync"
    if "sm90" in names:
        return "wgmma"
    raise ValueError(f"no rule for the kernels {kernels}")


def dense_sim(arrays, name, kind, instruction, **changes):
    """What fp8sim says ``torch.matmul`` / ``torch.mm(out_dtype=float32)`` gave (values, float64);
    ``changes`` go to the unit (``rz_overflow="max"``, for instance)."""
    fmt, src, out = DENSE_FORMAT[kind]
    a = decode(arrays[f"{name}/a_{src}"], fmt)
    b = decode(arrays[f"{name}/bt_{src}"], fmt).T
    unit = tensor_core("H100", fmt, instruction=instruction).replace(**changes)
    return fp8sim.matmul(a, b, unit=unit, out_format=None if out == "float32" else out)


def _preset_key(unit, instruction):
    """(gpu, instruction, a format, b format) of an H100 preset unit, as the conformance table keys it."""
    return ["H100", instruction, unit.in_format.name, unit.b_format.name]


def check_all(arrays, meta):
    rows = []
    for name in SETS:
        for pair in PAIRS:
            for mode in ("fast", "split"):
                for out in OUTS:
                    key = f"{name}/{pair}/{mode}/{out}"
                    fmt = OUT_FORMAT[out] or "float32"
                    sim = to_bits(scaled_mm_sim(arrays, name, pair, mode, out), fmt)
                    unit = tensor_core("H100", pair.split("_")[0], b_format="e4m3")
                    rows.append({"case": key, "group": f"_scaled_mm {pair} use_fast_accum={mode == 'fast'} -> {out}",
                                 "kernel": meta["kernels"][key][0],
                                 "sim": unit.name + (", promote_every=128" if mode == "split" else ""),
                                 "preset": _preset_key(unit, "wgmma"), **compare(sim, arrays[key], fmt)})
    for name in DENSE_SETS:
        for kind in DENSE_KINDS[name]:
            key = f"{name}/{kind}"
            instr = instruction_of(meta["kernels"][key])
            fmt, _, out = DENSE_FORMAT[kind]
            sim = to_bits(dense_sim(arrays, name, kind, instr), out)
            unit = tensor_core("H100", fmt, instruction=instr)
            call = "mm(out_dtype=float32) bf16" if kind == "bf16f32" else f"matmul {kind}"
            what = "overflow set" if name == "overflow" else f"K = {DENSE_SETS[name][1]}"
            rows.append({"case": key, "group": f"{call} ({what}) -> {out}", "kernel": meta["kernels"][key][0],
                         "sim": unit.name, "preset": _preset_key(unit, instr), **compare(sim, arrays[key], out)})
    return rows


def stats_errors(arrays, meta):
    """Measured and simulated max relative error at the accumulation-error setting, per seed."""
    import ml_dtypes

    def q(x):
        return fp8sim.quantize(x.astype(np.float64), "e4m3").astype(ml_dtypes.float8_e4m3fn).view(np.uint8)

    unit = tensor_core("H100", "e4m3")
    out = []
    for s in meta["stats"]["seeds"]:
        a, bt = stats_inputs(s, q)
        if sha256(a, bt) != meta["stats"]["sha256"][str(s)]:
            raise ValueError(f"seed {s}: regenerated inputs differ from the captured ones (SHA-256)")
        A, B = decode(a, "e4m3"), decode(bt, "e4m3").T
        exact = fp8sim.matmul(A, B, unit="exact")
        row = {"seed": s}
        for mode, every in (("fast", None), ("split", 128)):
            gpu_bits = arrays[f"stats/{s}/{mode}/f32"]
            sim = fp8sim.matmul(A, B, unit=unit, promote_every=every)
            row[mode] = {"gpu": accumulation_error.metrics(gpu_bits.view(np.float32).astype(np.float64), exact),
                         "sim": accumulation_error.metrics(sim, exact),
                         "bits_equal": int((to_bits(sim, "float32") == gpu_bits).sum()), "outputs": int(sim.size)}
        out.append(row)
    return out


def alternatives(arrays):
    """How many FP32 outputs other plausible models would get wrong: the data decide between them."""
    out = {}
    for pair in PAIRS:
        a_fmt = pair.split("_")[0]
        base = tensor_core("H100", a_fmt, b_format="e4m3")
        for name in ("k128", "k4096"):
            a = decode(arrays[f"{name}/a_{a_fmt}"], a_fmt)
            b = decode(arrays[f"{name}/bt_e4m3"], "e4m3").T
            fast, split = arrays[f"{name}/{pair}/fast/f32"], arrays[f"{name}/{pair}/split/f32"]
            cases = {
                "fast, align_bits=12": (base.replace(align_bits=12), None, fast),
                "fast, align_bits=14": (base.replace(align_bits=14), None, fast),
                "fast, exact sum": ("exact", None, fast),
                "split as one chain": (base, None, split),
                "split, promote_every=64": (base, 64, split),
                "split, promote_every=256": (base, 256, split),
            }
            for label, (unit, every, gpu) in cases.items():
                if every is not None and every > a.shape[1]:
                    continue
                sim = to_bits(fp8sim.matmul(a, b, unit=unit, promote_every=every), "float32")
                out[f"{name}/{pair}: {label}"] = {"differ": int((sim != gpu).sum()), "outputs": int(gpu.size)}
    for kind in DENSE_KINDS["overflow"]:
        gpu = arrays[f"overflow/{kind}"]
        instr = "mma.sync" if kind == "tf32" else "wgmma"
        sim = to_bits(dense_sim(arrays, "overflow", kind, instr, rz_overflow="max"), "float32")
        out[f"overflow/{kind}: rz_overflow='max'"] = {"differ": int((sim != gpu).sum()), "outputs": int(gpu.size)}
    return out


def overflow_evidence(arrays):
    """Per kind of the overflow set: Inf outputs, how many of them come from sums of products that are
    each within FP32's range, and FP32-max outputs."""
    out = {}
    for kind in DENSE_KINDS["overflow"]:
        fmt, src, _ = DENSE_FORMAT[kind]
        a = decode(arrays[f"overflow/a_{src}"], fmt)
        bt = decode(arrays[f"overflow/bt_{src}"], fmt)
        big = (np.abs(a[:, None, :] * bt[None, :, :]) >= 2.0**128).any(axis=2)
        g = arrays[f"overflow/{kind}"].view(np.float32)
        inf = np.isinf(g)
        out[kind] = {"inf": int(inf.sum()), "inf_from_in_range_products": int((inf & ~big).sum()),
                     "fp32_max": int((np.abs(g) == np.finfo(np.float32).max).sum()), "outputs": int(g.size)}
    return out


def interval(values, level=0.95):
    """Mean and its two-sided t-interval over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def report(rows, errs, meta, arrays, alts=None):
    v = meta["versions"]
    print(f"captured on {v['gpu']} (driver {v['nvidia_smi'].split(', ')[-1]}), CUDA {v['cuda']}, "
          f"cuBLASLt {v.get('cublasLt_version')}, torch {v['torch']}, {v['date']}")
    print()
    print("| torch call -> output | fp8sim unit | cases | outputs | bit-identical | NaN encoding only | differ |")
    print("|---|---|---|---|---|---|---|")
    groups = {}
    for r in rows:
        groups.setdefault((r["group"], r["sim"]), []).append(r)
    for (group, sim), rs in groups.items():
        tot = {k: sum(r[k] for r in rs) for k in ("outputs", "equal", "nan_encoding_only", "differ")}
        print(f"| `{group}` | `{sim}` | {len(rs)} | {tot['outputs']} | {tot['equal']} "
              f"| {tot['nan_encoding_only']} | {tot['differ']} |")
    nan_bits = sorted({b for r in rows for b in r["gpu_nan_bits"]})
    print(f"\nGPU NaN encodings seen: {', '.join(nan_bits) or 'none'}")
    ov = overflow_evidence(arrays)
    print("\nOverflow set (truncated sums beyond FP32's range):")
    for k, v in ov.items():
        print(f"  {k}: {v['inf']} Inf outputs of {v['outputs']} ({v['inf_from_in_range_products']} from products "
              f"each within range), {v['fp32_max']} FP32 max")
    if alts:
        print("\nOther models the same data reject (FP32 outputs that differ):")
        for label, r in alts.items():
            print(f"  {label}: {r['differ']} / {r['outputs']}")
    print()
    print(f"Accumulation error, K = 4096, M = N = 128, normal(0.65, 1) in E4M3, {len(errs)} seeds "
          "(max relative error; mean [95% t-interval]):")
    print("| plan | measured on the H100 | simulated by fp8sim | outputs bit-identical |")
    print("|---|---|---|---|")
    for mode, label in (("fast", "use_fast_accum=True (fast chain)"), ("split", "use_fast_accum=False (promotion)")):
        g = interval([e[mode]["gpu"]["max_rel_err"] for e in errs])
        s = interval([e[mode]["sim"]["max_rel_err"] for e in errs])
        same = sum(e[mode]["bits_equal"] for e in errs)
        total = sum(e[mode]["outputs"] for e in errs)
        print(f"| {label} | {100 * g[0]:.3f}% [{100 * g[1]:.3f}, {100 * g[2]:.3f}] "
              f"| {100 * s[0]:.3f}% [{100 * s[1]:.3f}, {100 * s[2]:.3f}] | {same} / {total} |")


def _shown(path):
    """``path`` relative to the repository when inside it (the JSON does not name this machine's folders)."""
    import os

    root = DATA.parent.parent.parent
    rel = os.path.relpath(os.path.abspath(path), root)
    return str(path) if rel.startswith("..") else rel


def main(argv=None):
    ap = script_parser(__doc__, seed=False)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    arrays, meta = load(args.data)
    rows = check_all(arrays, meta)
    errs = stats_errors(arrays, meta)
    alts = alternatives(arrays)
    report(rows, errs, meta, arrays, alts)
    path = write_json(out_dir(args.out) / "gpu_capture.json",
                      {"data": _shown(args.data), "capture": {k: meta[k] for k in ("versions", "sets", "stats", "kernels")},
                       "cases": rows, "alternatives": alts, "overflow": overflow_evidence(arrays),
                       "accumulation_error": errs})
    print(f"wrote {path}")
    return rows, errs


if __name__ == "__main__":
    main()
