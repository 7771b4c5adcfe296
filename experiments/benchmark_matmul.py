"""Speed and memory of the simulated GEMMs, measured side by side in one process.

    python experiments/benchmark_matmul.py [--quick] [--repeats 3]

Main shape: M = N = 256, K = 4096, E4M3 inputs, the H100 unit, fast chain
and promotion every 128.  Every ratio below is a ratio of median times
measured in this run, on this machine, the two sides timed in alternating
rounds (``_common.interleaved_median_seconds``: this machine's speed drifts
by 10-30% over minutes, which sequential timings turned into ratios):

- the k-major engine (fp8sim's default) against the engine of fp8sim 0.1
  (``engine="classic"``, kept as the baseline), on one thread and with the
  default ``threads=`` (the cores this process may use);
- a compiled kernel of the same arithmetic (numba, row-vectorised), the
  ceiling, when numba is installed (it is not a dependency of fp8sim);
- mmaemu's CPU reference (torch, one thread, unsplit K) when mmaemu is
  installed, at the main shape and at M = N = 64 ... 1024; glibc malloc
  settings (``MALLOC_*`` variables) in effect are printed and recorded;
- every preset unit's MAC rate against the H100 E4M3 unit's;
- ``scaled_matmul`` with DeepGEMM scaling against ``matmul`` with
  promotion, and ``quantize_scaled`` of both operands against it;
- ``quantize`` float32 -> bfloat16 / float16 against ml_dtypes / NumPy
  ``astype`` followed by ``astype(float64)``;
- peak memory (tracemalloc) for K from 1024 to 65536;
- issue 10's instruction rows (H100 ``wgmma``, MI300X ``mfma``, B200
  ``tcgen05``, FP8, 256 x 256 x 4096, one thread), each against the H100
  unit on today's engine and on fp8sim 0.1's engine, the one the issue's
  "today's NVIDIA unit" ran on when it was filed (``--instructions-only``:
  these rows alone, to ``benchmark_instructions.json``).

Targets (issue 13): k-major >= 1.8x the 0.1 engine; >= 0.5x the numba
ceiling's speed; every unit >= 0.7x the H100 unit's MAC rate; DeepGEMM
scaled_matmul <= 1.2x matmul with promotion, quantize_scaled of both
operands <= 0.3x of it; quantize to bf16/fp16 >= 0.5x the library casts'
speed; memory flat in K.
"""

from __future__ import annotations

import os
import tracemalloc

import ml_dtypes
import numpy as np

import fp8sim
from fp8sim.accumulate import dot_chain
from fp8sim.gemm import thread_count
from fp8sim.hardware import presets, tensor_core

try:
    from ._common import interleaved_median_seconds, median_seconds, out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import interleaved_median_seconds, median_seconds, out_dir, script_parser, write_json


def inputs(rng, M, K, N, fmt="e4m3"):
    a = fp8sim.quantize(rng.standard_normal((M, K)), fmt, overflow="saturate")
    b = fp8sim.quantize(rng.standard_normal((K, N)), fmt, overflow="saturate")
    return a, b


def classic(a, b, unit, promote_every):
    """fp8sim 0.1's engine: (rows, N, block) layout, one thread, promotion through add_fp32."""
    from fp8sim.gemm import add_fp32

    M, N = a.shape[0], b.shape[1]
    if promote_every is None:
        return dot_chain(a, b, np.zeros((M, N)), unit, engine="classic", tile_elems=1 << 21)
    acc = np.zeros((M, N))
    for k0 in range(0, a.shape[1], promote_every):
        part = dot_chain(a[:, k0:k0 + promote_every], b[k0:k0 + promote_every], np.zeros((M, N)), unit,
                         engine="classic", tile_elems=1 << 21)
        acc = add_fp32(acc, part)
    return acc


# --- the compiled ceiling -----------------------------------------------------------------------

def numba_kernel():
    """A compiled kernel of the H100 FP8 unit's arithmetic (C in the alignment, truncation), or None.

    Row-vectorised: for each row of A and each block, the inner loops run
    over the N columns (contiguous), which LLVM vectorises.  It is the
    ceiling for the benchmark's data (normal FP8 inputs, FP32-normal
    results); the script checks its bits against fp8sim's on that data.
    """
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def chain(a, b, ea, eb, F, mask, block, promote, lo, pow2, off):
        M, K = a.shape
        N = b.shape[1]
        out = np.zeros((M, N))
        c = np.zeros(N)
        acc = np.zeros(N)
        E = np.empty(N, np.int64)
        t = np.empty(N)
        sc = np.empty(N)
        for i in range(M):
            c[:] = 0.0
            acc[:] = 0.0
            for k0 in range(0, K, block):
                if promote > 0 and k0 > 0 and k0 % promote == 0:
                    for j in range(N):
                        acc[j] = np.float64(np.float32(acc[j]) + np.float32(c[j]))
                        c[j] = 0.0
                k1 = min(k0 + block, K)
                for j in range(N):
                    E[j] = -100000
                for k in range(k0, k1):
                    eik = ea[i, k]
                    for j in range(N):
                        e = eik + eb[k, j]
                        if e > E[j]:
                            E[j] = e
                cb = c.view(np.int64)
                for j in range(N):
                    if c[j] != 0.0:
                        ec = ((cb[j] >> 52) & 0x7FF) - 1023
                        if ec > E[j]:
                            E[j] = ec
                    if E[j] < lo:
                        E[j] = lo
                    sc[j] = pow2[off + F - E[j]]
                    t[j] = np.trunc(c[j] * sc[j])
                for k in range(k0, k1):
                    aik = a[i, k]
                    for j in range(N):
                        t[j] += np.trunc(aik * b[k, j] * sc[j])
                for j in range(N):
                    c[j] = t[j] / sc[j]
                cv = c.view(np.int64)
                for j in range(N):
                    cv[j] &= mask
            for j in range(N):
                out[i, j] = np.float64(np.float32(acc[j]) + np.float32(c[j])) if promote > 0 else c[j]
        return out

    def run(a, b, unit, promote_every):
        def exps(x, fmt):
            e = np.frexp(x)[1].astype(np.int64) - 1
            return np.where(x == 0, -10000, np.maximum(e, fmt.emin))
        pow2 = np.ldexp(1.0, np.arange(-400, 401))
        mask = np.int64(~((1 << (52 - unit.out_frac_bits)) - 1))
        lo = unit.in_format.emin + unit.b_format.emin
        return chain(a, b, exps(a, unit.in_format), exps(b, unit.b_format), unit.align_bits, mask, unit.block,
                     promote_every or 0, lo, pow2, 400)

    return run


# --- mmaemu (optional) ---------------------------------------------------------------------------

def mmaemu_runner():
    """mmaemu's CPU reference (``backend="reference"``, unsplit K) for the H100 E4M3 GEMM on one torch
    thread, or None when mmaemu (and torch) are not installed."""
    try:
        import mmaemu
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)

    def run(a, b, promote_every):
        ta = torch.from_numpy(a.astype(np.float32)).to(torch.float8_e4m3fn)
        tb = torch.from_numpy(np.ascontiguousarray(b.T).astype(np.float32)).to(torch.float8_e4m3fn).t()
        one = torch.tensor(1.0)
        out = mmaemu.scaled_mm(ta, tb, one, one, out_dtype=torch.float32, use_fast_accum=promote_every is None,
                               splitk=1, backend="reference")
        return out.numpy().astype(np.float64)

    return run


MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


# --- the measurements ------------------------------------------------------------------------------

def main_table(M, N, K, repeats, seed):
    rng = np.random.default_rng(seed)
    unit = tensor_core("H100", "e4m3")
    a, b = inputs(rng, M, K, N)
    auto_threads = thread_count(None, M, M * N * K)
    ceiling = numba_kernel()
    emu = mmaemu_runner()
    rows = {}
    for plan, promote in (("fast", None), ("promote128", 128)):
        base = classic(a, b, unit, promote)
        r = {}
        one = fp8sim.matmul(a, b, unit=unit, promote_every=promote, threads=1)
        fns = {"classic": lambda: classic(a, b, unit, promote),
               "kmajor_1thread": lambda: fp8sim.matmul(a, b, unit=unit, promote_every=promote, threads=1),
               "kmajor_default": lambda: fp8sim.matmul(a, b, unit=unit, promote_every=promote)}
        r["threads_default"] = auto_threads
        r["same_bits_as_classic"] = bool(np.array_equal(one.view(np.uint64), base.view(np.uint64)))
        r["threads_bit_identical"] = bool(np.array_equal(
            fp8sim.matmul(a, b, unit=unit, promote_every=promote).view(np.uint64), one.view(np.uint64)))
        if ceiling is not None:
            ceiling(a[:2, :64], b[:64, :2], unit, promote and 32)  # compile
            r["numba_same_bits"] = bool(np.array_equal(ceiling(a, b, unit, promote).view(np.uint64),
                                                       one.view(np.uint64)))
            fns["numba"] = lambda: ceiling(a, b, unit, promote)
        if emu is not None:
            r["mmaemu_same_bits"] = bool(np.array_equal(emu(a, b, promote).view(np.uint64), one.view(np.uint64)))
            fns["mmaemu"] = lambda: emu(a, b, promote)
        # side by side: every ratio below compares runs made in the same rounds
        for name, t in interleaved_median_seconds(fns, repeats, warmup=set(fns) - {"classic"}).items():
            r[f"{name}_s"] = t
        rows[plan] = r
    malloc = {k: os.environ[k] for k in MALLOC_ENV if k in os.environ}
    return {"shape": [M, N, K], "plans": rows, "numba": ceiling is not None, "mmaemu": emu is not None,
            "malloc_env": malloc}


def mmaemu_sweep(sizes, K, repeats, seed):
    """fp8sim (one thread, k-major) against mmaemu's CPU reference at M = N = size, fast accumulation."""
    emu = mmaemu_runner()
    if emu is None:
        return None
    rng = np.random.default_rng(seed)
    unit = tensor_core("H100", "e4m3")
    out = {}
    for n in sizes:
        a, b = inputs(rng, n, K, n)
        t = interleaved_median_seconds({"ours": lambda: fp8sim.matmul(a, b, unit=unit, threads=1),
                                        "theirs": lambda: emu(a, b, None)}, repeats)
        ours, theirs = t["ours"], t["theirs"]
        out[n] = {"fp8sim_s": ours, "mmaemu_s": theirs, "speedup": theirs / ours}
    return out


def units_table(M, N, K, repeats, seed):
    """Every preset unit at one thread, each timed in rounds alternating with the H100 E4M3 unit (the
    main shape's, ``wgmma``) on its own inputs: the rate ratio compares runs made side by side."""
    rng = np.random.default_rng(seed)
    ref_unit = tensor_core("H100", "e4m3")
    ra, rb = inputs(rng, M, K, N)
    out = {}
    for gpu, instr, fmt, _ in presets():
        unit = tensor_core(gpu, fmt, instruction=instr)
        a, b = inputs(rng, M, K, N, fmt)
        t = interleaved_median_seconds({"ref": lambda: fp8sim.matmul(ra, rb, unit=ref_unit, threads=1),
                                        "unit": lambda: fp8sim.matmul(a, b, unit=unit, threads=1)}, repeats)
        if isinstance(unit, fp8sim.BlockFMA):
            # the products' work type the engine plans for these operands
            work = "float32" if fp8sim.accumulate._Plan(unit, a, b).dtype == np.float32 else "float64"
        else:
            work = type(unit).__name__
        out[unit.name] = {"s": t["unit"], "mac_per_s": M * N * K / t["unit"], "work_type": work,
                          "h100_e4m3_s": t["ref"], "rate_vs_h100_e4m3": t["ref"] / t["unit"]}
    return out


def scaling_table(M, N, K, repeats, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    A = fp8sim.quantize_scaled(x, "e4m3", (1, 128))
    B = fp8sim.quantize_scaled(w, "e4m3", (128, 128))
    unit = tensor_core("H100", "e4m3")
    t = interleaved_median_seconds(
        {"mm": lambda: fp8sim.matmul(A.values, B.values, unit=unit, promote_every=128, threads=1),
         "smm": lambda: fp8sim.scaled_matmul(A, B, unit=unit, out_format="float32"),
         "q": lambda: (fp8sim.quantize_scaled(x, "e4m3", (1, 128)), fp8sim.quantize_scaled(w, "e4m3", (128, 128)))},
        repeats)
    t_mm, t_smm, t_q = t["mm"], t["smm"], t["q"]
    return {"matmul_promote128_s": t_mm, "scaled_matmul_deepgemm_s": t_smm, "quantize_scaled_both_s": t_q,
            "scaled_over_matmul": t_smm / t_mm, "quantize_over_matmul": t_q / t_mm}


def quantize_table(n, repeats, seed):
    x = (np.random.default_rng(seed).standard_normal(n) * 30).astype(np.float32)
    out = {}
    for fmt, dt in (("bfloat16", ml_dtypes.bfloat16), ("float16", np.float16)):
        t = interleaved_median_seconds({"ours": lambda: fp8sim.quantize(x, fmt),
                                        "lib": lambda: x.astype(dt).astype(np.float64)}, repeats)
        ours, lib = t["ours"], t["lib"]
        out[fmt] = {"fp8sim_s": ours, "library_s": lib, "speed_vs_library": lib / ours}
    return out


#: the instruction rows issue 10 asks for: the library-GEMM paths of MI300X and B200 against Hopper's
INSTRUCTION_ROWS = [("H100", "e4m3", "wgmma"), ("MI300X", "e4m3fnuz", "mfma"), ("B200", "e4m3", "tcgen05")]


#: the H100 unit as it ran when issue 10 was filed: fp8sim 0.1's engine (``engine="classic"``)
CLASSIC_ROW = "H100:float8_e4m3fn@wgmma, fp8sim 0.1 engine"


def instruction_table(M, N, K, repeats, seed):
    """One thread, fast chain over K: each instruction's time and its MAC rate against H100 wgmma FP8,
    both on today's engine (``rate_vs_h100``) and on fp8sim 0.1's engine, the H100 unit as it ran
    when issue 10 asked for "the same whole-array speed as today's NVIDIA unit"
    (``rate_vs_h100_0_1``; the same unit and inputs, ``engine="classic"``, one thread)."""
    rng = np.random.default_rng(seed)
    fns = {}
    for i, (gpu, fmt, instr) in enumerate(INSTRUCTION_ROWS):
        unit = tensor_core(gpu, fmt, instruction=instr)
        a, b = inputs(rng, M, K, N, fmt)
        fns[unit.name] = lambda a=a, b=b, unit=unit: fp8sim.matmul(a, b, unit=unit, threads=1)
        if i == 0:  # H100 wgmma: also on the 0.1 engine (the same bits)
            fns[CLASSIC_ROW] = lambda a=a, b=b, unit=unit: classic(a, b, unit, None)
            same = np.array_equal(fns[unit.name]().view(np.int64), fns[CLASSIC_ROW]().view(np.int64))
    out = {name: {"s": t} for name, t in interleaved_median_seconds(fns, repeats).items()}
    out[CLASSIC_ROW]["same_bits"] = same
    ref, ref01 = out[next(iter(out))]["s"], out[CLASSIC_ROW]["s"]
    for v in out.values():
        v["rate_vs_h100"] = ref / v["s"]
        v["rate_vs_h100_0_1"] = ref01 / v["s"]
    return {"shape": [M, N, K], "rows": out}


def memory_table(M, N, ks, seed):
    rng = np.random.default_rng(seed)
    unit = tensor_core("H100", "e4m3")
    out = {}
    for k in ks:
        a, b = inputs(rng, M, k, N)
        tracemalloc.start()
        fp8sim.matmul(a, b, unit=unit, threads=1)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[k] = {"peak_bytes": peak, "input_bytes": a.nbytes + b.nbytes}
    return out


def exact_table(M, N, K, repeats, seed):
    """The "exact" unit on wide-range FP32 data (exponents over 2**-60 .. 2**60): the compensated
    whole-array path against the per-element math.fsum path it replaces (same bits)."""
    from fp8sim.gemm import _exact_fsum

    rng = np.random.default_rng(seed)
    a = fp8sim.quantize(rng.standard_normal((M, K)) * np.exp2(rng.integers(-60, 61, (M, K))), "float32")
    b = fp8sim.quantize(rng.standard_normal((K, N)) * np.exp2(rng.integers(-60, 61, (K, N))), "float32")

    def old():
        return np.array([[_exact_fsum(a[i], b[:, j], 0.0) for j in range(N)] for i in range(M)])

    new = fp8sim.matmul(a, b, unit="exact")
    same = bool(np.array_equal(new.view(np.uint64), old().view(np.uint64)))
    t_old = median_seconds(old, max(1, repeats // 2), warmup=False)
    t_new = median_seconds(lambda: fp8sim.matmul(a, b, unit="exact"), repeats)
    return {"shape": [M, N, K], "fsum_s": t_old, "compensated_s": t_new, "speedup": t_old / t_new, "same_bits": same}


def report_instructions(ins):
    M, N, K = ins["shape"]
    print(f"the library GEMM's instruction per GPU, FP8, M = N = {M}, K = {K}, one thread, MAC rate against "
          "H100 wgmma on today's engine / on fp8sim 0.1's engine:")
    for name, v in ins["rows"].items():
        same = f"   (same bits: {v['same_bits']})" if "same_bits" in v else ""
        print(f"  {name:44s} {v['s']:7.3f} s   {v['rate_vs_h100']:.2f}x   {v['rate_vs_h100_0_1']:.2f}x{same}")


def report(res):
    M, N, K = res["main"]["shape"]
    print(f"H100 E4M3 unit, M = N = {M}, K = {K}; median times (threads=None here means "
          f"{res['main']['plans']['fast']['threads_default']})")
    for plan, r in res["main"]["plans"].items():
        c = r["classic_s"]
        line = (f"  {plan:10s} fp8sim 0.1 engine {c:6.3f} s | k-major 1 thread {r['kmajor_1thread_s']:6.3f} s "
                f"({c / r['kmajor_1thread_s']:.2f}x, {r['kmajor_1thread_s'] / (M * N * K) * 1e9:.2f} ns/MAC) | "
                f"default threads {r['kmajor_default_s']:6.3f} s ({c / r['kmajor_default_s']:.2f}x) | "
                f"same bits: {r['same_bits_as_classic']}, threads identical: {r['threads_bit_identical']}")
        if "numba_s" in r:
            line += (f"\n             numba ceiling {r['numba_s']:6.3f} s: k-major 1 thread runs at "
                     f"{r['numba_s'] / r['kmajor_1thread_s']:.2f}x its speed (same bits: {r['numba_same_bits']})")
        if "mmaemu_s" in r:
            line += (f"\n             mmaemu CPU reference (1 torch thread) {r['mmaemu_s']:6.3f} s: k-major 1 thread "
                     f"{r['mmaemu_s'] / r['kmajor_1thread_s']:.2f}x faster (same bits: {r['mmaemu_same_bits']}; "
                     f"malloc settings: {res['main']['malloc_env'] or 'glibc defaults'})")
        print(line)
    if not res["main"]["numba"]:
        print("  numba not installed: no compiled ceiling")
    if not res["main"]["mmaemu"]:
        print("  mmaemu not installed: no mmaemu comparison")
    if res.get("mmaemu_sweep"):
        print("against mmaemu's CPU reference, fast accumulation, one thread each, K = "
              f"{res['mmaemu_k']}:")
        for n, v in res["mmaemu_sweep"].items():
            print(f"  M = N = {n:5d}: fp8sim {v['fp8sim_s']:7.3f} s  mmaemu {v['mmaemu_s']:7.3f} s  "
                  f"-> fp8sim {v['speedup']:.2f}x faster")
    print("every preset unit, one thread, MAC rate against the H100 E4M3 unit (timed in alternating rounds):")
    for name, v in res["units"].items():
        print(f"  {name:36s} {v['mac_per_s'] / 1e6:8.1f} M MAC/s  {v['rate_vs_h100_e4m3']:5.2f}x  ({v['work_type']})")
    s = res["scaling"]
    print(f"DeepGEMM scaled_matmul / matmul(promote 128): {s['scaled_over_matmul']:.2f} (target <= 1.2); "
          f"quantize_scaled of both / matmul: {s['quantize_over_matmul']:.2f} (target <= 0.3)")
    for fmt, q in res["quantize"].items():
        print(f"quantize float32 -> {fmt}: {q['speed_vs_library']:.2f}x the library cast's speed (target >= 0.5)")
    if "exact" in res:
        e = res["exact"]
        M, N, K = e["shape"]
        print(f'"exact" unit, wide-range FP32 data, {M} x {K} @ {K} x {N}: per-element fsum {e["fsum_s"]:.2f} s, '
              f'compensated {e["compensated_s"]:.3f} s -> {e["speedup"]:.1f}x faster (same bits: {e["same_bits"]})')
    if "instructions" in res:
        report_instructions(res["instructions"])
    print("peak memory during matmul (tracemalloc; the inputs, allocated before, not counted):")
    for k, m in res["memory"].items():
        print(f"  K = {k:6d}: {m['peak_bytes'] / 2**20:7.2f} MiB   (inputs {m['input_bytes'] / 2**20:7.1f} MiB)")


def main(argv=None):
    ap = script_parser(__doc__, quick="small shapes, for tests")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact-only", action="store_true", help="run only the exact-unit comparison")
    ap.add_argument("--instructions-only", action="store_true",
                    help="run only issue 10's instruction rows (written to benchmark_instructions.json)")
    args = ap.parse_args(argv)
    if args.instructions_only:
        shape = (16, 16, 256) if args.quick else (256, 256, 4096)
        res = {"instructions": instruction_table(*shape, 1 if args.quick else args.repeats, args.seed)}
        report_instructions(res["instructions"])
        write_json(out_dir(args.out) / "benchmark_instructions.json", res, seed=args.seed)
        return res
    if args.exact_only:
        e = exact_table(128, 128, 4096, args.repeats, args.seed)
        report_exact = {"exact": e}
        M, N, K = e["shape"]
        print(f'"exact" unit, wide-range FP32 data, {M} x {K} @ {K} x {N}: per-element fsum {e["fsum_s"]:.2f} s, '
              f'compensated {e["compensated_s"]:.3f} s -> {e["speedup"]:.1f}x faster (same bits: {e["same_bits"]})')
        write_json(out_dir(args.out) / "benchmark_exact.json", report_exact, seed=args.seed)
        return report_exact
    if args.quick:
        res = {"main": main_table(32, 32, 256, 1, args.seed), "units": units_table(16, 16, 128, 1, args.seed),
               "scaling": scaling_table(16, 16, 256, 1, args.seed), "quantize": quantize_table(10_000, 1, args.seed),
               "memory": memory_table(16, 16, [256, 1024], args.seed), "exact": exact_table(8, 8, 256, 1, args.seed),
               "mmaemu_sweep": mmaemu_sweep([16], 1024, 1, args.seed), "mmaemu_k": 1024,
               "instructions": instruction_table(16, 16, 256, 1, args.seed)}
    else:
        res = {"main": main_table(256, 256, 4096, args.repeats, args.seed),
               # small and noisy: three times the rounds (the H100 E4M3 row, the unit against itself on
               # other inputs, shows what noise remains)
               "units": units_table(128, 128, 2048, 3 * args.repeats, args.seed),
               "scaling": scaling_table(256, 256, 4096, args.repeats, args.seed),
               "quantize": quantize_table(10_000_000, args.repeats, args.seed),
               "memory": memory_table(256, 256, [1024, 4096, 16384, 65536], args.seed),
               "exact": exact_table(128, 128, 4096, args.repeats, args.seed),
               "mmaemu_sweep": mmaemu_sweep([64, 128, 256, 512, 1024], 4096, args.repeats, args.seed),
               "mmaemu_k": 4096, "instructions": instruction_table(256, 256, 4096, args.repeats, args.seed)}
    res["cpu_count"] = os.cpu_count()
    report(res)
    write_json(out_dir(args.out) / "benchmark_matmul.json", res, seed=args.seed)
    return res


if __name__ == "__main__":
    main()
