"""Speed of float32 -> E4M3 rounding: fp8sim versus ml_dtypes (and gfloat if installed).

    python experiments/benchmark_quantize.py [--n 10000000] [--repeats 5]

Nearest-even, default overflow, standard-normal float32 inputs scaled to
span E4M3's range.  Prints the median time of each implementation over
``--repeats`` runs and the ratios.  Targets (issue 2): fp8sim at most 2x
the time of ml_dtypes' ``astype``, and at least 5x faster than gfloat's
``round_ndarray``.  Also times fp8sim from float64 input and in a directed
mode, which take the general (not the float-addition) path.

    python experiments/benchmark_quantize.py --memory [--memory-n 100000000]

Peak memory of ``quantize`` in every rounding mode (tracemalloc, which sees
NumPy's allocations), float32 inputs to E4M3, as a multiple of the float64
output's size.  Target (issue 12): at most 3x the output for 10^8 inputs.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

import fp8sim

try:
    from ._common import median_seconds, out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import median_seconds, out_dir, script_parser, write_json


def run(n, repeats, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 30).astype(np.float32)
    x64 = x.astype(np.float64)
    cases = {
        "ml_dtypes astype": lambda: x.astype(ml_dtypes.float8_e4m3fn),
        "fp8sim quantize (float32 in)": lambda: fp8sim.quantize(x, "e4m3"),
        "fp8sim quantize (float64 in)": lambda: fp8sim.quantize(x64, "e4m3"),
        "fp8sim quantize toward_zero": lambda: fp8sim.quantize(x, "e4m3", "toward_zero"),
    }
    try:
        import gfloat
        from gfloat.formats import format_info_ocp_e4m3

        cases["gfloat round_ndarray"] = lambda: gfloat.round_ndarray(format_info_ocp_e4m3, x64)
    except ImportError:
        print("gfloat not installed: skipping it")
    return {name: median_seconds(fn, repeats) for name, fn in cases.items()}


def memory_peaks(n, seed=0):
    """Peak traced bytes of quantize() per rounding mode, over the output's bytes."""
    import tracemalloc

    x = (np.random.default_rng(seed).standard_normal(n) * 30).astype(np.float32)
    peaks = {}
    for mode in fp8sim.RoundingMode:
        tracemalloc.start()
        tracemalloc.reset_peak()
        out = fp8sim.quantize(x, "e4m3", mode.value, rng=1 if mode.value == "stochastic" else None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        peaks[mode.value] = peak / out.nbytes
        del out
    return peaks


def main(argv=None):
    ap = script_parser(__doc__, quick="10**5 values, 2 repeats")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory", action="store_true", help="measure peak memory per rounding mode instead")
    ap.add_argument("--memory-n", type=int, default=100_000_000)
    args = ap.parse_args(argv)
    if args.memory:
        n = 100_000 if args.quick else args.memory_n
        peaks = memory_peaks(n, args.seed)
        print(f"quantize float32 -> E4M3, {n:,d} values: peak traced memory / output size (target <= 3)")
        for mode, ratio in peaks.items():
            print(f"  {mode:14s} {ratio:5.2f}x")
        write_json(out_dir(args.out) / "benchmark_quantize_memory.json", {"n": n, "peak_over_output": peaks},
                   seed=args.seed)
        return peaks
    n, repeats = (100_000, 2) if args.quick else (args.n, args.repeats)
    times = run(n, repeats, args.seed)
    base = times["ml_dtypes astype"]
    ours = times["fp8sim quantize (float32 in)"]
    print(f"float32 -> E4M3, {n:,d} values, median of {repeats} runs")
    for name, t in times.items():
        print(f"  {name:32s} {t * 1e3:9.1f} ms  {t / base:6.2f}x ml_dtypes  {n / t / 1e6:8.1f} M values/s")
    ratios = {"fp8sim_over_ml_dtypes": ours / base}
    print(f"fp8sim / ml_dtypes time: {ratios['fp8sim_over_ml_dtypes']:.2f} (target <= 2)")
    if "gfloat round_ndarray" in times:
        ratios["gfloat_over_fp8sim"] = times["gfloat round_ndarray"] / ours
        print(f"gfloat / fp8sim time:    {ratios['gfloat_over_fp8sim']:.1f} (target >= 5)")
    write_json(out_dir(args.out) / "benchmark_quantize.json",
               {"n": n, "repeats": repeats, "seconds": times, "ratios": ratios}, seed=args.seed)
    return ratios


if __name__ == "__main__":
    main()
