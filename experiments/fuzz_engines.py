"""Adversarial differential fuzzing: every preset unit's vectorized engine against its scalar twin.

    python experiments/fuzz_engines.py [--seconds 600] [--cases N] [--seed 0] [--unit H100:e4m3@wgmma]

The tests compare the engines with the twins in ``fp8sim.reference`` on
fixed random and hand-built cases; this script keeps drawing new ones for
a time budget, built to reach the corners the engines plan around rather
than what random normal data reaches: per operand, a band of exponents
drawn over the format's whole range (subnormals included) and placed at a
random offset, so that data-planned work types switch (int8 / int16
exponents, float32 / float64 products, the steps on bits or the general
one); zeros, and the largest values placed where the other operand holds
zeros; runs of the largest significand of one sign; subnormal inputs; Inf
and NaN; C from zeros, signed zeros, FP32 subnormals, values near FP32's
top, the specials and the negated sum of the chain (cancellation); K not a
multiple of the block, promotion, several row tiles and threads; every
other case through ``dot_rows`` (the row-paired engines) instead of
``matmul``.  The block-scaled units (``kind::mxf8f6f4`` for every pair of
element formats, ``kind::mxf4`` / ``mxf4nvf4``) run the same way with
random scales (E8M0 over its whole range, UE4M3 codes, NaN).  The scaled
GEMM pipelines (``scaled_matmul`` with DeepGEMM's 1 x 128 / 128 x 128 and
1 x 128 / 128 x 1 scaling, ``torch._scaled_mm``'s per-tensor and rowwise
scaling with and without promotion, OCP MX) run on data with outliers,
zeros and a wide spread, quantized by ``quantize_scaled``, against
:func:`fp8sim.reference.scaled_gemm`, for BF16, FP16 and FP32 output.

Each output is compared bit for bit (float64 bit patterns; NaN with NaN);
an exception on valid input counts as a finding too.  The first findings
are printed with a reproducer (unit, the case's seed for :func:`case`,
promotion, tile, threads) and the JSON ``figures/fuzz_engines.json``
records the counts.  Exit status 1 when any case disagreed or raised.
"""

from __future__ import annotations

import time

import numpy as np

import fp8sim
from fp8sim import reference
from fp8sim.accumulate import SplitFP16Unit
from fp8sim.blockscale import MXF8F6F4, BlockScaledFMA, GroupScaledFMA, block_scaled_chain, group_scaled_chain
from fp8sim.cdna import ExactBlockUnit, FloorSumUnit, FTZUnit
from fp8sim.gemm import dot_rows
from fp8sim.hardware import presets, tensor_core

try:
    from ._common import out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json


SCALED = (BlockScaledFMA, GroupScaledFMA)


class Pipeline:
    """A scaled GEMM pipeline to fuzz: ``scaled_matmul`` with ``semantics`` through ``unit``."""

    def __init__(self, semantics, unit, name):
        self.semantics, self.unit, self.name = semantics, unit, name
        self.block = 128 if semantics != "mx" else 32   # the scales' block along K


PIPELINES = [("deepgemm", "H100", "e4m3"), ("deepgemm", "H100", "e5m2"), ("scaled_mm", "H100", "e4m3"),
             ("scaled_mm", "H100", "e5m2"), ("mx", "B200", "e4m3"), ("mx", "B200", "e5m2")]


def twin(unit):
    """The scalar twin of ``unit``'s engine: f(a_row, b_col, c, promote_every) -> float (a block-scaled
    unit's takes the row's and the column's scales after c)."""
    if isinstance(unit, BlockScaledFMA):
        return reference.block_scaled_dot
    if isinstance(unit, GroupScaledFMA):
        return reference.group_scaled_dot
    if isinstance(unit, fp8sim.BlockFMA):
        return lambda a, b, c, p: reference.block_fma_dot(a, b, c, unit, p)
    for kind, fn in ((SplitFP16Unit, reference.split_fp16_dot), (ExactBlockUnit, reference.exact_block_dot),
                     (FTZUnit, reference.ftz_dot), (FloorSumUnit, reference.floor_sum_dot)):
        if isinstance(unit, kind):
            return lambda a, b, c, p, fn=fn: fn(a, b, c, unit)
    raise TypeError(f"no twin for {type(unit).__name__}")


def units(only=None):
    """Every preset unit (FP32 output, and FP16 output where the GPU has it) and the block-scaled
    units, or the one named."""
    if only:
        return [u for u in units() if u.name == only] or [_unit(only)]
    out = []
    for gpu, instr, fmt, _ in presets():
        out.append(tensor_core(gpu, fmt, instruction=instr))
        try:
            out.append(tensor_core(gpu, fmt, out_format="float16", instruction=instr))
        except ValueError:
            pass
    out += [BlockScaledFMA(fa, b_format=fb, name=f"mxf8f6f4:{fa}x{fb}") for fa in MXF8F6F4 for fb in MXF8F6F4]
    out += [GroupScaledFMA(block=bl, scale_format=sf, name=f"mxf4:{bl}:{sf}")
            for bl, sf in ((32, "float8_e8m0fnu"), (16, "float8_e8m0fnu"), (16, "float8_e4m3fn"))]
    out += [Pipeline(sem, tensor_core(gpu, fmt), f"scaled_matmul:{sem}:{gpu}:{fmt}") for sem, gpu, fmt in PIPELINES]
    return out


def pipeline_case(rng, p):
    """Operands for a scaled pipeline: real data (a wide spread, zeros, an outlier now and then)
    quantized with the pipeline's granularities; (A, B, promote_every, out_format)."""
    from fp8sim.scaling import quantize_scaled

    M, N = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    K = int(rng.integers(1, 4)) * p.block if p.semantics == "mx" else int(rng.integers(1, 400))

    def data(shape):
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(-int(rng.choice([0, 4, 20])), 1 + int(rng.choice([0, 4, 20])), shape)
        x[rng.random(shape) < rng.choice([0.0, 0.2])] = 0.0
        if rng.random() < 0.3:
            x.flat[rng.integers(0, x.size)] *= 2.0 ** int(rng.integers(5, 40))
        return x

    fmt = p.unit.in_format
    promote = None
    if p.semantics == "deepgemm":
        A = quantize_scaled(data((M, K)), fmt, (1, 128))
        B = quantize_scaled(data((K, N)), fmt, (128, 128) if rng.random() < 0.5 else (128, 1))
    elif p.semantics == "scaled_mm":
        A = quantize_scaled(data((M, K)), fmt, str(rng.choice(["tensor", "row"])))
        B = quantize_scaled(data((K, N)), fmt, str(rng.choice(["tensor", "col"])))
        promote = 128 if rng.random() < 0.5 else None
    else:
        A = quantize_scaled(data((M, K)), fmt, "mx32")
        B = quantize_scaled(data((K, N)), fmt, "mx32", axis=0)
    return A, B, promote, str(rng.choice(["bfloat16", "float16", "float32"]))


def _unit(name):
    gpu, rest = name.split(":", 1)
    fmt, _, instr = rest.partition("@")
    return tensor_core(gpu, fmt, instruction=instr or None)


#: the exponents the engines' int8 exponent path takes (every input exponent within 28 of zero)
WINDOW = (-28, 27)


def operand(rng, shape, fmt, window=False):
    """Values of ``fmt`` over a random band of its exponents (within :data:`WINDOW` when ``window``),
    with zeros, subnormals and runs of the largest significand."""
    lo_fmt, hi_fmt = fmt.emin - fmt.mantissa_bits, fmt.emax
    if window:
        lo_fmt, hi_fmt = max(lo_fmt, WINDOW[0]), min(hi_fmt, WINDOW[1])
    width = int(rng.choice([1, 3, 8, 20, 40, 80, 300]))
    lo = int(rng.integers(lo_fmt, max(lo_fmt, hi_fmt - min(width, hi_fmt - lo_fmt)) + 1))
    hi = min(hi_fmt, lo + width)
    e = rng.integers(lo, hi + 1, shape)
    x = np.ldexp(rng.uniform(1, 2, shape), e) * rng.choice([-1.0, 1.0], shape)
    x = fp8sim.quantize(x, fmt, "toward_zero", overflow="saturate")
    if rng.random() < 0.3:   # a run of the largest significand, one sign
        top = (2.0 - 2.0 ** -fmt.mantissa_bits) * 2.0 ** min(hi, fmt.emax)
        x.flat[rng.integers(0, x.size, max(1, x.size // 4))] = fp8sim.quantize(top, fmt, overflow="saturate")
    for frac, val in ((rng.choice([0.0, 0.1, 0.5]), 0.0), (rng.choice([0.0, 0.05]), -0.0)):
        x[rng.random(shape) < frac] = val
    if rng.random() < 0.2:   # subnormals of the format
        sub = rng.random(shape) < 0.2
        n = 2 ** fmt.mantissa_bits
        x[sub] = rng.integers(-n + 1, n, sub.sum()) * fmt.smallest_subnormal
    return x


def specials(rng, x, fmt):
    if rng.random() < 0.15:
        vals = [v for v, ok in ((np.inf, fmt.has_inf), (-np.inf, fmt.has_inf), (np.nan, fmt.has_nan)) if ok]
        if vals:
            x.flat[rng.integers(0, x.size)] = rng.choice(vals)


def largest(rng, x, fmt, window=False):
    """A large value to meet zeros (a zero met by it must not set an alignment): the largest finite
    magnitude in ``x``, or the largest value of the format (of the window's top binade when ``window``)."""
    fin = np.abs(x[np.isfinite(x)])
    if rng.random() < 0.3 and fin.size and fin.max() > 0:
        return fin.max()
    top = min(fmt.emax, WINDOW[1]) if window else fmt.emax
    return fp8sim.quantize((2.0 - 2.0 ** -fmt.mantissa_bits) * 2.0 ** top, fmt, "toward_zero", overflow="saturate")


def addend(rng, shape):
    c = fp8sim.quantize(rng.standard_normal(shape) * 2.0 ** rng.integers(-30, 30), "float32")
    kinds = rng.integers(0, 10, c.size)
    flat = c.reshape(-1)
    flat[kinds == 0] = 0.0
    flat[kinds == 1] = -0.0
    flat[kinds == 2] = rng.integers(-2**20, 2**20, (kinds == 2).sum()) * 2.0**-149
    flat[kinds == 3] = fp8sim.quantize(rng.choice([-1, 1], (kinds == 3).sum()) * 3.3e38, "float32")
    if rng.random() < 0.1:
        flat[rng.integers(0, flat.size)] = rng.choice([np.inf, -np.inf, np.nan])
    return c


def scales(rng, shape, unit):
    """Scale values for a block-scaled unit: E8M0 powers of two over a random part of its range, or
    UE4M3 values (zeros and subnormals included); a NaN now and then."""
    if isinstance(unit, GroupScaledFMA) and unit.scale_format.name == "float8_e4m3fn":
        s = fp8sim.quantize(np.abs(rng.standard_normal(shape)) * 2.0 ** rng.integers(-9, 9, shape), "e4m3",
                            overflow="saturate")
    else:
        lo = int(rng.integers(-127, 120))
        s = np.ldexp(1.0, rng.integers(lo, min(127, lo + int(rng.choice([1, 8, 40, 254]))) + 1, shape))
    if rng.random() < 0.1:
        s.flat[rng.integers(0, s.size)] = np.nan
    return s


def case(rng, unit):
    """One random case: (a, b, c, promote_every, tile_elems or None, threads, paired, (sa, sb) or None)."""
    fa = fp8sim.get_format(unit.in_format)
    fb = fp8sim.get_format(getattr(unit, "b_format", None) or fa)
    block = unit.block
    M, N = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    K = int(rng.integers(1, 4 * block + 8))
    if isinstance(unit, GroupScaledFMA):
        K = 64 * int(rng.integers(1, 4))
    elif isinstance(unit, BlockScaledFMA):
        K = block * int(rng.integers(1, 4))
    window = rng.random() < 0.3   # both operands inside the int8 exponent window
    a, b = operand(rng, (M, K), fa, window), operand(rng, (K, N), fb, window)
    if rng.random() < 0.3:   # large values of b where a row of a holds zeros
        b[a[0] == 0] = largest(rng, b, fb, window)
    specials(rng, a, fa)
    specials(rng, b, fb)
    c = addend(rng, (M, N))
    promote = None
    if isinstance(unit, fp8sim.BlockFMA) and rng.random() < 0.3 and K > block:
        promote = block * int(rng.integers(1, max(2, K // block)))
    sc = None
    if isinstance(unit, SCALED):
        nb = K // block
        sc = (scales(rng, (M, nb), unit), scales(rng, (nb, N), unit))
    paired = not isinstance(unit, SCALED) and rng.random() < 0.5
    if paired:   # rows of b meet rows of a: b as (M, K)
        b = operand(rng, (M, K), fb, window)
        if rng.random() < 0.3:
            b[a == 0] = largest(rng, b, fb, window)
        specials(rng, b, fb)
        c = c[:, :1]
    if rng.random() < 0.2:   # C cancelling the chain's result
        with np.errstate(all="ignore"):
            s = run(unit, a, b, np.zeros_like(c), promote, None, 1, paired, sc)
            c = np.where(np.isfinite(s), -fp8sim.quantize(s, "float32", overflow="saturate"), c)
    tile = int(rng.choice([0, N * block, 2 * N * block]))
    return a, b, c, promote, tile or None, int(rng.choice([1, 2])), paired, sc


def run(unit, a, b, c, promote, tile, threads, paired, sc):
    """The engine's outputs, (M, N) (paired: (M, 1))."""
    if isinstance(unit, BlockScaledFMA):
        return block_scaled_chain(a, b, c, sc[0], sc[1], unit)
    if isinstance(unit, GroupScaledFMA):
        return group_scaled_chain(a, b, c, sc[0], sc[1], unit)
    kw = {"promote_every": promote}
    if tile is not None and isinstance(unit, fp8sim.BlockFMA):
        kw["tile_elems"] = tile
    if paired:
        return dot_rows(a, b, c[:, 0], unit=unit, **kw)[:, None]
    return fp8sim.matmul(a, b, c, unit=unit, threads=threads, **kw)


def expected(unit, a, b, c, promote, paired, sc):
    """The twin's outputs, one dot product at a time."""
    f = twin(unit)
    if paired:
        return np.array([[f(a[m], b[m], c[m, 0], promote)] for m in range(a.shape[0])])
    if sc is not None:
        return np.array([[f(a[m], b[:, n], c[m, n], sc[0][m], sc[1][:, n], unit) for n in range(b.shape[1])]
                         for m in range(a.shape[0])])
    return np.array([[f(a[m], b[:, n], c[m, n], promote) for n in range(b.shape[1])] for m in range(a.shape[0])])


def same_bits(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x.view(np.uint64) == y.view(np.uint64)) | (np.isnan(x) & np.isnan(y))


def main(argv=None):
    p = script_parser(__doc__)
    p.add_argument("--seconds", type=float, default=600.0, help="time budget (default 600)")
    p.add_argument("--cases", type=int, default=None, help="stop after this many cases (default: the time budget)")
    p.add_argument("--unit", default=None, help="one unit's name, e.g. H100:float8_e4m3fn@wgmma (default: all)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    us = units(args.unit)
    counts = {u.name: {"cases": 0, "outputs": 0, "mismatched_outputs": 0} for u in us}
    first = []
    t_end = time.monotonic() + args.seconds
    i = 0
    while time.monotonic() < t_end and (args.cases is None or i < args.cases):
        unit = us[i % len(us)]
        case_seed = int(rng.integers(2**63))
        rec = counts[unit.name]
        rec["cases"] += 1
        where = {"unit": unit.name, "case_seed": case_seed}
        try:
            with np.errstate(all="ignore"):
                if isinstance(unit, Pipeline):
                    A, B, promote, out = pipeline_case(np.random.default_rng(case_seed), unit)
                    where.update(promote_every=promote, out_format=out)
                    rec["outputs"] += A.shape[0] * B.shape[1]
                    got = fp8sim.scaled_matmul(A, B, unit=unit.unit, promote_every=promote, out_format=out,
                                               semantics=unit.semantics)
                    want = reference.scaled_gemm(A, B, unit.unit, unit.semantics, block_k=unit.block,
                                                 promote_every=promote, out_format=out)
                else:
                    a, b, c, promote, tile, threads, paired, sc = case(np.random.default_rng(case_seed), unit)
                    rec["outputs"] += c.size
                    where.update(promote_every=promote, tile=tile, threads=threads, paired=paired)
                    got = run(unit, a, b, c, promote, tile, threads, paired, sc)
                    want = expected(unit, a, b, c, promote, paired, sc)
        except Exception as e:  # an engine or twin that fails on valid input is a finding too
            rec["errors"] = rec.get("errors", 0) + 1
            if len(first) < 20:
                first.append({**where, "error": f"{type(e).__name__}: {e}"})
                print("ERROR", first[-1], flush=True)
            i += 1
            continue
        bad = ~same_bits(got, want)
        rec["mismatched_outputs"] += int(bad.sum())
        if bad.any() and len(first) < 20:
            m, n = map(int, np.argwhere(bad)[0])
            first.append({**where, "row": m, "col": n, "engine": float(got[m, n]).hex(),
                          "twin": float(want[m, n]).hex()})
            print("MISMATCH", first[-1], flush=True)
        i += 1
    total = sum(r["cases"] for r in counts.values())
    bad_total = sum(r["mismatched_outputs"] for r in counts.values())
    errors = sum(r.get("errors", 0) for r in counts.values())
    print(f"{total} cases over {len(us)} units: {bad_total} mismatched outputs, "
          f"{errors} cases raised")
    for name, r in counts.items():
        if r["mismatched_outputs"] or r.get("errors"):
            print(f"  {name}: {r['mismatched_outputs']} of {r['outputs']} outputs mismatched, "
                  f"{r.get('errors', 0)} of {r['cases']} cases raised")
    write_json(out_dir(args.out) / "fuzz_engines.json", {"seconds": args.seconds, "cases": total, "units": counts,
                                                          "first_mismatches": first}, seed=args.seed)
    return 1 if bad_total or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
