"""Speed and memory of the simulated H100 FP8 GEMM.

    python experiments/benchmark_matmul.py [--quick]

M = N = 256, K = 4096, E4M3 inputs, the H100 unit, fast chain and
promotion every 128.  Prints simulated multiply-accumulates per second,
peak memory (tracemalloc) and time ratios against

(a) an obvious float64 implementation, included below: it forms each
    block's (M, N, block) products, finds exponents with frexp, aligns with
    ldexp and loops over blocks (no tiling);
(b) float64 ``numpy.matmul`` of the same shape: the floor.

Target (issue 3): at least 2x faster than (a) for both plans, and peak
memory flat as K grows (K = 1024 to 16384 shown).
"""

from __future__ import annotations

import tracemalloc

import numpy as np

import fp8sim
from fp8sim.hardware import tensor_core

try:
    from ._common import median_seconds, out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import median_seconds, out_dir, script_parser, write_json


def obvious_block_fma(a, b, unit, promote_every=None):
    """A straightforward float64 simulation of the same unit (for comparison only)."""
    fmt = unit.in_format
    M, K = a.shape
    N = b.shape[1]

    def exps(x):
        e = np.frexp(x)[1] - 1
        return np.where(x == 0, -10000, np.maximum(e, fmt.emin))

    def round_tz(v, bits):
        m, e = np.frexp(v)
        return np.ldexp(np.trunc(np.ldexp(m, bits + 1)), e - bits - 1)

    def chain(k_lo, k_hi):
        c = np.zeros((M, N))
        for k0 in range(k_lo, k_hi, unit.block):
            ab = a[:, None, k0:k0 + unit.block] * b.T[None, :, k0:k0 + unit.block]
            p_exp = exps(a)[:, None, k0:k0 + unit.block] + exps(b).T[None, :, k0:k0 + unit.block]
            E = p_exp.max(axis=2)
            ce = np.frexp(c)[1] - 1
            E = np.where(c != 0, np.maximum(E, ce), E)
            shift = (unit.align_bits - E)[:, :, None]
            s = np.trunc(np.ldexp(ab, shift)).sum(axis=2) + np.trunc(np.ldexp(c, shift[:, :, 0]))
            c = round_tz(np.ldexp(s, E - unit.align_bits), unit.out_frac_bits)
        return c

    if promote_every is None:
        return chain(0, K)
    acc = np.zeros((M, N), np.float32)
    for k0 in range(0, K, promote_every):
        acc = acc + chain(k0, k0 + promote_every).astype(np.float32)
    return acc.astype(np.float64)


def peak_bytes(fn):
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def inputs(rng, M, K, N):
    a = fp8sim.quantize(rng.standard_normal((M, K)), "e4m3")
    b = fp8sim.quantize(rng.standard_normal((K, N)), "e4m3")
    return a, b


def run(M, N, K, repeats, seed, mem_ks):
    rng = np.random.default_rng(seed)
    unit = tensor_core("H100", "e4m3")
    a, b = inputs(rng, M, K, N)
    results = {"shape": [M, N, K], "plans": {}}
    floor = median_seconds(lambda: a @ b, repeats, warmup=False)
    for plan, promote in (("fast", None), ("promote128", 128)):
        ours = median_seconds(lambda: fp8sim.matmul(a, b, unit=unit, promote_every=promote), repeats, warmup=False)
        naive = median_seconds(lambda: obvious_block_fma(a, b, unit, promote), max(1, repeats // 2), warmup=False)
        same = np.array_equal(fp8sim.matmul(a, b, unit=unit, promote_every=promote).view(np.uint64),
                              obvious_block_fma(a, b, unit, promote).view(np.uint64))
        results["plans"][plan] = {
            "fp8sim_s": ours, "obvious_s": naive, "numpy_matmul_s": floor,
            "speedup_vs_obvious": naive / ours, "slowdown_vs_numpy": ours / floor,
            "mac_per_s": M * N * K / ours, "same_bits_as_obvious": bool(same),
        }
    mem = {}
    for k in mem_ks:
        ak, bk = inputs(rng, M, k, N)
        input_bytes = ak.nbytes + bk.nbytes
        mem[k] = {
            "fp8sim_peak_bytes": peak_bytes(lambda: fp8sim.matmul(ak, bk, unit=unit)),
            "obvious_peak_bytes": peak_bytes(lambda: obvious_block_fma(ak, bk, unit)) if k <= 4096 else None,
            "input_bytes": input_bytes,
        }
    results["memory"] = mem
    return results


def report(results):
    M, N, K = results["shape"]
    print(f"H100 E4M3 unit, M = N = {M}, K = {K}; median times")
    for plan, r in results["plans"].items():
        print(f"  {plan:10s} fp8sim {r['fp8sim_s']:7.3f} s  ({r['mac_per_s'] / 1e6:6.1f} M MAC/s)   "
              f"obvious float64 {r['obvious_s']:7.3f} s  -> {r['speedup_vs_obvious']:.2f}x faster   "
              f"numpy.matmul {r['numpy_matmul_s'] * 1e3:6.2f} ms -> fp8sim is {r['slowdown_vs_numpy']:.0f}x slower"
              f"   same bits as obvious: {r['same_bits_as_obvious']}")
    print("  peak memory allocated during the call (tracemalloc; the inputs, allocated before, not counted), fast plan:")
    for k, m in results["memory"].items():
        obv = f"   obvious {m['obvious_peak_bytes'] / 2**20:7.1f} MiB" if m["obvious_peak_bytes"] else ""
        print(f"    K = {k:6d}: fp8sim {m['fp8sim_peak_bytes'] / 2**20:7.1f} MiB "
              f"(inputs themselves {m['input_bytes'] / 2**20:6.1f} MiB){obv}")


def main(argv=None):
    ap = script_parser(__doc__, quick="small shapes, for tests")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.quick:
        results = run(32, 32, 256, 1, args.seed, [256, 1024])
    else:
        results = run(256, 256, 4096, args.repeats, args.seed, [1024, 2048, 4096, 8192, 16384])
    report(results)
    write_json(out_dir(args.out) / "benchmark_matmul.json", results, seed=args.seed)
    return results


if __name__ == "__main__":
    main()
