"""Command line: ``python -m fp8sim COMMAND``.

Commands
--------
formats
    A table of every named format (markdown; ``--csv`` for CSV).
golden --unit H100:e4m3 --shape 64x64x4096 --seed 0 [--promote-every 128] [--scaling ...] --out FILE.npz
    Random inputs, the simulated output, and the configuration in one file
    (layout: :func:`fp8sim.testing.write_golden`).
verify FILE.npz ACTUAL.npy
    Exit 0 when ACTUAL matches the golden output bit for bit, 1 with a
    report of the differences, 2 for unusable input.

Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from .formats import ALIASES, NAMED_FORMATS


def _special_text(fmt):
    parts = []
    parts.append("Inf" if fmt.has_inf else "no Inf")
    parts.append(f"NaN ({fmt.specials.value})" if fmt.has_nan else "no NaN")
    if not fmt.has_zero:
        parts.append("no zero")
    elif not fmt.has_negative_zero:
        parts.append("no -0")
    return ", ".join(parts)


def format_rows():
    """One dict per named format: the columns of ``python -m fp8sim formats``."""
    alias_of = {}
    for alias, name in ALIASES.items():
        alias_of.setdefault(name, alias)
    rows = []
    for name, f in NAMED_FORMATS.items():
        rows.append(
            {
                "name": name,
                "alias": alias_of.get(name, ""),
                "bits": f.bits,
                "exp": f.exponent_bits,
                "man": f.mantissa_bits,
                "bias": f.bias,
                "max": f"{f.max:.6g}",
                "smallest normal": f"{f.smallest_normal:.6g}",
                "smallest subnormal": f"{f.smallest_subnormal:.6g}",
                "eps": f"{f.eps:g}",
                "special values": _special_text(f),
            }
        )
    return rows


def _cmd_formats(args):
    rows = format_rows()
    cols = list(rows[0])
    if args.csv:
        print(",".join(cols))
        for r in rows:
            print(",".join(str(r[c]) for c in cols))
        return 0
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


SCALINGS = {
    "none": None,
    "deepgemm": ((1, 128), (128, 128)),
    "tensor": ("tensor", "tensor"),
    "rowwise": ("row", "col"),
    "mx": ("mx32", "mx32"),
}


def _shape(text):
    try:
        m, n, k = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shape must be MxNxK with positive integers, got {text!r}") from None
    if min(m, n, k) < 1:
        raise ValueError(f"--shape must be MxNxK with positive integers, got {text!r}")
    return m, n, k


def _cmd_golden(args):
    import dataclasses

    import numpy as np

    from .codec import encode
    from .gemm import matmul, resolve_unit, scaled_matmul
    from .rounding import quantize
    from .scaling import quantize_scaled
    from .testing import write_golden

    unit = resolve_unit(args.unit)
    if not hasattr(unit, "block"):
        raise ValueError("--unit must name a tensor-core unit such as H100:e4m3")
    M, N, K = _shape(args.shape)
    rng = np.random.default_rng(args.seed)
    x, w = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    fmt, fmt_b = unit.in_format, unit.b_format
    config = {
        "unit": {**{k: v for k, v in dataclasses.asdict(unit).items() if k not in ("in_format", "b_format")},
                 "in_format": fmt.name, "b_format": fmt_b.name},
        "shape": [M, N, K], "seed": args.seed, "promote_every": args.promote_every, "scaling": args.scaling,
        "in_format": fmt.name, "b_format": fmt_b.name, "command": "python -m fp8sim " + " ".join(args.argv),
        "inputs": "standard normal draws (numpy default_rng(seed): a then b), rounded to in_format "
                  "(nearest-even, saturating) or quantized with the scaling recipe",
    }
    grans = SCALINGS[args.scaling]
    if grans is None:
        a = quantize(x, fmt, overflow="saturate")
        b = quantize(w, fmt_b, overflow="saturate")
        d = matmul(a, b, unit=unit, promote_every=args.promote_every)
        out_fmt = "float32"
        arrays = {"a_codes": encode(a, fmt), "b_codes": encode(b, fmt_b)}
    else:
        A = quantize_scaled(x, fmt, grans[0])
        B = quantize_scaled(w, fmt_b, grans[1], axis=0)
        out_fmt = args.out_format
        d = scaled_matmul(A, B, unit=unit, promote_every=args.promote_every, out_format=out_fmt)
        arrays = {"a_codes": encode(A.values, fmt), "b_codes": encode(B.values, fmt_b),
                  "a_scale_bits": encode(A.scales, A.scale_format), "b_scale_bits": encode(B.scales, B.scale_format)}
        config.update(a_tile=list(A.tile), b_tile=list(B.tile), a_scale_format=A.scale_format.name,
                      b_scale_format=B.scale_format.name)
    config["out_format"] = out_fmt
    arrays["d_bits"] = encode(d, out_fmt)
    write_golden(args.out, arrays, config)
    print(f"wrote {args.out}: {M}x{K} @ {K}x{N} through {unit.name or 'unit'}, output {out_fmt}")
    return 0


def _cmd_verify(args):
    import numpy as np

    from .codec import decode
    from .testing import assert_bitwise_equal, read_golden

    arrays, config = read_golden(args.golden)
    out_fmt = config.get("out_format")
    try:
        actual = np.load(args.actual, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{args.actual}: not a readable .npy file ({exc.__class__.__name__})") from None
    expected = arrays["d_bits"]
    if actual.shape != expected.shape:
        raise ValueError(f"{args.actual}: shape {actual.shape}, the golden output is {expected.shape}")
    if actual.dtype.kind not in "iuf" and not actual.dtype.name.startswith(("float", "bfloat")):
        raise ValueError(f"{args.actual}: dtype {actual.dtype} is neither bit patterns nor floats")
    if actual.dtype.kind == "f" or actual.dtype.name.startswith(("float", "bfloat")):
        from .rounding import quantize

        with np.errstate(invalid="ignore"):
            vals = actual.astype(np.float64)
        off = ~((quantize(vals, out_fmt) == vals) | np.isnan(vals))
        if off.any():
            print(f"MISMATCH: {int(off.sum())} of {off.size} values are not {out_fmt} values at all "
                  f"(first at {np.argwhere(off)[0].tolist()}: {vals[off][0]!r})")
            return 1
    try:
        assert_bitwise_equal(actual if actual.dtype.kind != "f" else actual.astype(np.float64),
                             expected if actual.dtype.kind in "iu" else decode(expected, out_fmt), fmt=out_fmt)
    except AssertionError as exc:
        print(f"MISMATCH: {exc}")
        return 1
    print(f"OK: all {expected.size} values match bit for bit ({out_fmt})")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        print(f"fp8sim: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv=None) -> int:
    parser = _Parser(prog="python -m fp8sim", description="fp8sim command line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("formats", help="table of the named formats")
    p.add_argument("--csv", action="store_true", help="CSV instead of a markdown table")
    p.set_defaults(func=_cmd_formats)
    p = sub.add_parser("golden", help="write a golden-vector file")
    p.add_argument("--unit", required=True, help="GPU:format, e.g. H100:e4m3, or GPU:a_format,b_format")
    p.add_argument("--shape", required=True, help="MxNxK")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--promote-every", type=int, default=None)
    p.add_argument("--scaling", choices=sorted(SCALINGS), default="none")
    p.add_argument("--out-format", default="bfloat16", help="output format with --scaling (default bfloat16)")
    p.add_argument("--out", required=True, help="FILE.npz")
    p.set_defaults(func=_cmd_golden)
    p = sub.add_parser("verify", help="check an output against a golden file")
    p.add_argument("golden")
    p.add_argument("actual")
    p.set_defaults(func=_cmd_verify)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except Exception as exc:  # one line, never a traceback
        print(f"fp8sim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
