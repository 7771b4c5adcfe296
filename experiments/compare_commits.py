"""The engine's speed at two checkouts, timed in alternating processes.

``python experiments/compare_commits.py --base PATH [--head PATH] [--units U1,U2] [--shape M,N,K]``

A speed change of a few percent does not show in one process on a shared
machine: the allocator's state and the machine's speed move single
readings by more (an unchanged path once read 12% apart in one process).
So each round starts one process per checkout, in turn, and each process
times every named unit (``fp8sim.matmul``, one thread, the median of
``--repeats`` runs after a warm-up) on the same inputs.  The table gives
each side's median over the rounds with its range, and the median over
rounds of base / head, each round's two processes having run side by side,
and in brackets the ratio of the two sides' fastest rounds (the least
disturbed reading of each); ``same bits`` compares the two checkouts'
results bit for bit.

Make the base checkout with ``git worktree add /tmp/base COMMIT``.  Each
process imports fp8sim from its checkout (``PYTHONPATH``) and says so;
the driver refuses a process that imported another copy.  The JSON goes
to ``--out`` when given (nothing is written otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

try:
    from ._common import median_seconds, out_dir, point_rng, write_json
except ImportError:  # run as a script (the workers always are)
    from _common import median_seconds, out_dir, point_rng, write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_UNITS = "H100:float8_e4m3fn@wgmma"


def parse_unit(name):
    """``"GPU:format@instruction"`` (the units' own names) -> (gpu, format, instruction)."""
    gpu, sep, rest = name.partition(":")
    fmt, sep2, instr = rest.partition("@")
    if not (sep and sep2 and gpu and fmt and instr):
        raise ValueError(f"unit {name!r}: expected GPU:format@instruction, e.g. {DEFAULT_UNITS}")
    return gpu, fmt, instr


def parse_shape(text):
    try:
        shape = [int(v) for v in text.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--shape {text!r}: expected three positive integers M,N,K")
    return shape


def worker(units, shape, repeats, seed):
    """Time each unit in this process (fp8sim from PYTHONPATH): {"fp8sim": its folder, "units": {name:
    {"s": median seconds, "bits": a digest of the result's bit patterns}}}."""
    import numpy as np

    import fp8sim
    from fp8sim.hardware import tensor_core

    M, N, K = shape
    out = {}
    for i, name in enumerate(units):
        gpu, fmt, instr = parse_unit(name)
        unit = tensor_core(gpu, fmt, instruction=instr)
        rng = point_rng(seed, i)
        a = fp8sim.quantize(rng.standard_normal((M, K)), fmt, overflow="saturate")
        b = fp8sim.quantize(rng.standard_normal((K, N)), fmt, overflow="saturate")
        res = fp8sim.matmul(a, b, unit=unit, threads=1)  # the untimed first run gives the bits
        seconds = median_seconds(lambda: fp8sim.matmul(a, b, unit=unit, threads=1), repeats, warmup=False)
        digest = hashlib.sha256(np.ascontiguousarray(res).view(np.uint8).tobytes()).hexdigest()[:16]
        out[name] = {"s": seconds, "bits": digest}
    return {"fp8sim": str(Path(fp8sim.__file__).resolve().parent.parent), "units": out}


def run_side(checkout, args):
    """One process at ``checkout``: its worker's record."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--units", ",".join(args.units),
           "--shape", ",".join(map(str, args.shape)), "--repeats", str(args.repeats), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the process at {checkout} failed:\n{proc.stderr}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    if Path(rec["fp8sim"]) != Path(checkout).resolve():
        raise RuntimeError(f"the process at {checkout} imported fp8sim from {rec['fp8sim']}: is fp8sim "
                           "installed other than editable from this repository, or is the path not a checkout?")
    return rec


def compare(args):
    sides = {"base": Path(args.base).resolve(), "head": Path(args.head).resolve()}
    for name, path in sides.items():
        if not (path / "fp8sim" / "__init__.py").is_file():
            raise SystemExit(f"--{name} {path}: not a checkout of fp8sim (no fp8sim/__init__.py)")
    rounds = []
    for _ in range(args.rounds):
        rounds.append({side: run_side(path, args)["units"] for side, path in sides.items()})
    table = {}
    for u in args.units:
        t = {side: [r[side][u]["s"] for r in rounds] for side in sides}
        table[u] = {
            "base_s": statistics.median(t["base"]), "head_s": statistics.median(t["head"]),
            "base_range_s": [min(t["base"]), max(t["base"])], "head_range_s": [min(t["head"]), max(t["head"])],
            "base_over_head": statistics.median(b / h for b, h in zip(t["base"], t["head"])),
            "min_base_over_min_head": min(t["base"]) / min(t["head"]),
            "same_bits": all(r["base"][u]["bits"] == r["head"][u]["bits"] for r in rounds),
            "rounds_s": t,
        }
    return {"base": str(sides["base"]), "head": str(sides["head"]), "shape": args.shape, "rounds": args.rounds,
            "repeats": args.repeats, "units": table}


def report(res):
    M, N, K = res["shape"]
    print(f"{M} x {K} @ {K} x {N}, one thread; {res['rounds']} rounds of one process per checkout, each the "
          f"median of {res['repeats']} runs\n  base {res['base']}\n  head {res['head']}")
    print(f"  {'unit':34s} {'base (range)':>26s} {'head (range)':>26s}  base/head  (minima)  same bits")
    for u, r in res["units"].items():
        b, h = r["base_range_s"], r["head_range_s"]
        print(f"  {u:34s} {r['base_s']:8.4f} s ({b[0]:.4f}-{b[1]:.4f}) {r['head_s']:8.4f} s ({h[0]:.4f}-{h[1]:.4f})"
              f"  {r['base_over_head']:6.3f}x   ({r['min_base_over_min_head']:.3f}x)  {r['same_bits']}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python experiments/compare_commits.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="the checkout to compare against (required)")
    ap.add_argument("--head", default=str(ROOT), help="the other checkout (default: this repository)")
    ap.add_argument("--units", default=DEFAULT_UNITS, help=f"comma-separated unit names (default {DEFAULT_UNITS})")
    ap.add_argument("--shape", default="256,256,4096", help="M,N,K (default 256,256,4096)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for compare_commits.json (default: none written)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        args.units = args.units.split(",")
        for u in args.units:
            parse_unit(u)
        args.shape = parse_shape(args.shape)
    except ValueError as e:
        ap.error(str(e))
    if args.rounds < 1 or args.repeats < 1:
        ap.error("--rounds and --repeats must be at least 1")
    if args.worker:
        print(json.dumps(worker(args.units, args.shape, args.repeats, args.seed)))
        return None
    if args.base is None:
        ap.error("--base is required (a checkout: git worktree add /tmp/base COMMIT)")
    res = compare(args)
    report(res)
    if args.out is not None:
        write_json(out_dir(args.out) / "compare_commits.json", res, seed=args.seed)
    return res


if __name__ == "__main__":
    main()
