"""Command line: ``python -m fp8sim COMMAND``.

Commands
--------
formats
    A table of every named format (markdown; ``--csv`` for CSV).
golden --unit H100:e4m3 --shape 64x64x4096 --seed 0 [--promote-every 128] [--scaling ...] --out FILE.npz
golden --unit B200:e4m3 --scaling mxfp8|mxfp4|nvfp4|deepgemm_pow2 ... ; --a A.npy --b B.npy instead of --shape
    Random inputs, the simulated output, and the configuration in one file
    (layout: :func:`fp8sim.testing.write_golden`).
verify FILE.npz ACTUAL.npy [--max-ulp N] [--equal-nan] [--json]
verify FILE.npz ACTUAL.bin --dtype bfloat16 [--shape MxN]
    Exit 0 when ACTUAL matches the golden output bit for bit (or within
    ``--max-ulp``), 1 with a summary of the differences (how many, the
    largest ulp distance, a histogram, a transposed output), 2 for
    unusable input.

Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import re
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
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
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
    "deepgemm_pow2": ((1, 128), (128, 128)),
    "mxfp8": ("mx32", "mx32"),
    "mxfp4": ("mx32", "mx32"),
    "nvfp4": ("nvfp4", "nvfp4"),
}

#: --scaling values that run on a block-scaled unit of the --unit's GPU (B200, RTX50), and its element format
_BLOCK_SCALED = {"mxfp8": None, "mxfp4": "e2m1", "nvfp4": "e2m1"}


_SHAPE = re.compile(r"[1-9][0-9]*(x[1-9][0-9]*)*", re.ASCII)

#: default bound on the elements a golden file may hold (M*K + K*N + M*N), checked before allocating
MAX_ELEMENTS = 1 << 26


def _dims(text, n, arg):
    """Strictly parsed positive ASCII integers joined by 'x' (no signs, spaces, underscores, other digits)."""
    if not isinstance(text, str) or not _SHAPE.fullmatch(text) or text.count("x") != n - 1:
        want = "x".join("MNK"[:n]) if arg == "--shape" and n == 3 else "x".join(["D"] * n) if n else "AxB..."
        raise ValueError(f"{arg} must be {want} with positive decimal integers (ASCII digits only), got {text!r}")
    return tuple(int(v) for v in text.split("x"))


def _shape(text):
    return _dims(text, 3, "--shape")


def _cmd_golden(args):
    import dataclasses


    from .codec import encode
    from .gemm import matmul, resolve_unit, scaled_matmul
    from .rounding import quantize
    from .scaling import quantize_scaled
    from .testing import write_golden

    from .hardware import block_scaled_unit, group_scaled_unit

    unit = resolve_unit(args.unit)
    if not hasattr(unit, "block"):
        raise ValueError("--unit must name a tensor-core unit such as H100:e4m3")
    if args.scaling in _BLOCK_SCALED:  # the GPU's block-scaled unit runs MX / NVFP4 GEMMs
        gpu = args.unit.split(":", 1)[0]
        if args.scaling == "mxfp8":
            unit = block_scaled_unit(gpu, unit.in_format, unit.b_format)
        elif args.scaling == "mxfp4":
            unit = group_scaled_unit(gpu, "mxf4", 32, "ue8m0")
        else:
            unit = group_scaled_unit(gpu, "mxf4nvf4", 16, "e4m3")
    x, w, source = _golden_inputs(args)
    M, K = x.shape
    N = w.shape[1]
    elements = M * K + K * N + M * N
    if elements > args.max_elements:
        raise ValueError(f"the shape {M}x{N}x{K} needs {elements} elements, beyond --max-elements {args.max_elements}")
    if args.out_format is not None and args.scaling == "none":
        raise ValueError("--out-format applies with --scaling only (without it the output is the unit's FP32)")
    fmt, fmt_b = unit.in_format, unit.b_format
    config = {
        "unit": {**{k: (v.name if hasattr(v, "mantissa_bits") else v) for k, v in dataclasses.asdict(unit).items()
                    if k not in ("in_format", "b_format")},
                 "in_format": fmt.name, "b_format": fmt_b.name, "kind": type(unit).__name__},
        "shape": [M, N, K], "seed": args.seed, "promote_every": args.promote_every, "scaling": args.scaling,
        "in_format": fmt.name, "b_format": fmt_b.name, "command": "python -m fp8sim " + " ".join(args.argv),
        "inputs": source,
    }
    grans = SCALINGS[args.scaling]
    if grans is None:
        a = quantize(x, fmt, overflow="saturate")
        b = quantize(w, fmt_b, overflow="saturate")
        d = matmul(a, b, unit=unit, promote_every=args.promote_every)
        out_fmt = "float32"
        arrays = {"a_codes": encode(a, fmt), "b_codes": encode(b, fmt_b)}
    else:
        kw = {"pow2": "ceil"} if args.scaling == "deepgemm_pow2" else {}
        A = quantize_scaled(x, fmt, grans[0], **kw)
        B = quantize_scaled(w, fmt_b, grans[1], axis=0, **kw)
        out_fmt = args.out_format or "bfloat16"
        d = scaled_matmul(A, B, unit=unit, promote_every=args.promote_every, out_format=out_fmt)
        arrays = {"a_codes": encode(A.values, fmt), "b_codes": encode(B.values, fmt_b),
                  "a_scale_bits": encode(A.scales, A.scale_format), "b_scale_bits": encode(B.scales, B.scale_format)}
        config.update(a_tile=list(A.tile), b_tile=list(B.tile), a_scale_format=A.scale_format.name,
                      b_scale_format=B.scale_format.name)
        if A.global_scale != 1.0 or B.global_scale != 1.0:
            config.update(a_global_scale=A.global_scale, b_global_scale=B.global_scale)
    config["out_format"] = out_fmt
    arrays["d_bits"] = encode(d, out_fmt)
    write_golden(args.out, arrays, config)
    print(f"wrote {args.out}: {M}x{K} @ {K}x{N} through {unit.name or 'unit'}, output {out_fmt}")
    return 0


def _golden_inputs(args):
    """(x, w, description): standard-normal draws of --shape, or the user's --a / --b .npy files."""
    import hashlib

    import numpy as np

    from .rounding import as_float64
    from .testing import read_npy

    if (args.a is None) != (args.b is None):
        raise ValueError("--a and --b go together (one .npy file per operand)")
    if args.a is None:
        if args.shape is None:
            raise ValueError("--shape MxNxK is required unless --a and --b give the inputs")
        M, N, K = _shape(args.shape)
        if M * K + K * N + M * N > args.max_elements:
            raise ValueError(f"--shape {args.shape} needs {M * K + K * N + M * N} elements, beyond --max-elements "
                             f"{args.max_elements}")
        rng = np.random.default_rng(args.seed)
        return (rng.standard_normal((M, K)), rng.standard_normal((K, N)),
                "standard normal draws (numpy default_rng(seed): a then b), rounded to in_format (nearest-even, "
                "saturating) or quantized with the scaling recipe")
    arrays, digests = [], []
    for path in (args.a, args.b):
        arr = read_npy(path)
        if arr.dtype.kind not in "fiu" or arr.ndim != 2:
            raise ValueError(f"{path}: inputs must be 2-D arrays of real numbers, got {arr.dtype} {arr.shape}")
        arrays.append(as_float64(arr, path)[0])
        with open(path, "rb") as fh:
            digests.append(hashlib.sha256(fh.read()).hexdigest())
    x, w = arrays
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"--a is {x.shape}, --b is {w.shape}: K must agree")
    if args.shape is not None and _shape(args.shape) != (x.shape[0], w.shape[1], x.shape[1]):
        raise ValueError(f"--shape {args.shape} does not match the inputs ({x.shape[0]}x{w.shape[1]}x{x.shape[1]})")
    return x, w, (f"user-supplied: a = {args.a} (sha256 {digests[0]}), b = {args.b} (sha256 {digests[1]}), "
                  "rounded to in_format (nearest-even, saturating) or quantized with the scaling recipe")


def _raw_dtype(name):
    """The dtype of a raw binary: a format fp8sim knows (with an ml_dtypes dtype) or a numpy int/float."""
    import numpy as np

    from .formats import get_format

    try:
        fmt = get_format(name)
    except ValueError:
        fmt = None
    if fmt is not None and fmt.ml_dtype is not None:
        dt = np.dtype(fmt.ml_dtype)
    else:
        try:
            dt = np.dtype(name.strip().lower())
        except TypeError:
            raise ValueError(f"--dtype {name!r} is neither a format nor a numpy dtype") from None
        if dt.kind not in "iuf":
            raise ValueError(f"--dtype {name!r} must be an integer or floating dtype")
    return dt.newbyteorder("<") if dt.kind in "iuf" else dt


def _load_actual(args, expected_shape, out_fmt):
    import numpy as np

    from .testing import regular_file

    size = regular_file(args.actual, "actual output")
    if args.dtype is not None:
        dt = _raw_dtype(args.dtype)
        shape = _dims(args.raw_shape, args.raw_shape.count("x") + 1, "--shape") if args.raw_shape \
            else expected_shape
        want = int(np.prod(shape)) * dt.itemsize
        if size != want:
            raise ValueError(f"{args.actual}: {size} bytes, but {'x'.join(map(str, shape))} {dt} needs {want}")
        with open(args.actual, "rb") as fh:
            return np.frombuffer(fh.read(want), dtype=dt).reshape(shape)
    if args.raw_shape:
        raise ValueError("--shape describes a raw binary: give --dtype with it")
    from .testing import read_npy

    actual, raw = read_npy(args.actual, with_raw=True)  # ml_dtypes arrays come back as their raw codes
    if raw and actual.dtype.itemsize != out_fmt.code_dtype.itemsize:
        raise ValueError(f"{args.actual}: raw {actual.dtype.itemsize}-byte items (an ml_dtypes array?) cannot be "
                         f"{out_fmt.name} outputs")
    if actual.dtype.kind not in "iuf" and out_fmt.ml_dtype != actual.dtype:
        raise ValueError(f"{args.actual}: dtype {actual.dtype} is neither bit patterns nor floats")
    return actual


def _not_codes(actual, out_fmt):
    """How many entries of ``actual`` are not ``out_fmt`` codes or values at all, and the first."""
    import numpy as np

    from .rounding import quantize

    if actual.dtype.kind in "iu":
        off = (actual < 0) | (actual.astype(np.uint64) >= np.uint64(1 << out_fmt.bits))
    elif out_fmt.ml_dtype == actual.dtype:
        return 0, None
    else:
        with np.errstate(invalid="ignore"):
            vals = actual.astype(np.float64)
        off = ~((quantize(vals, out_fmt, overflow="infinity" if out_fmt.has_inf else "nan") == vals) | np.isnan(vals))
    if not off.any():
        return 0, None
    return int(off.sum()), (np.argwhere(off)[0].tolist(), actual[off].reshape(-1)[0].item())


def _cmd_verify(args):
    from .formats import get_format
    from .testing import compare_bitwise, read_golden

    if args.max_ulp is not None and args.max_ulp < 0:
        raise ValueError(f"--max-ulp must be a non-negative integer, got {args.max_ulp}")
    arrays, config = read_golden(args.golden)
    out_fmt = get_format(config.get("out_format"))
    expected = arrays["d_bits"]
    actual = _load_actual(args, expected.shape, out_fmt)
    report = {"golden": args.golden, "actual": args.actual, "format": out_fmt.name, "size": int(expected.size)}

    def finish(status, text, code):
        report["status"] = status
        print(json.dumps(report) if args.json else text)
        return code

    transposed = actual.ndim == 2 and actual.shape == expected.shape[::-1]
    if actual.shape != expected.shape and not transposed:
        raise ValueError(f"{args.actual}: shape {actual.shape}, the golden output is {expected.shape}")
    n_off, first = _not_codes(actual, out_fmt)
    if n_off:
        report.update(n_differ=n_off, not_in_format=n_off)
        return finish("mismatch", f"MISMATCH: {n_off} of {actual.size} values are not {out_fmt.name} "
                                  f"{'codes' if actual.dtype.kind in 'iu' else 'values'} at all "
                                  f"(first at {first[0]}: {first[1]!r})", 1)
    if transposed and actual.shape != expected.shape:
        same_t = compare_bitwise(actual.T, expected, out_fmt, equal_nan=args.equal_nan).equal
        report.update(transposed=True, transpose_matches=same_t)
        note = "; it equals the transpose of the expected output bit for bit" if same_t else ""
        return finish("mismatch", f"MISMATCH: shape {actual.shape}, the golden output is {expected.shape}{note}", 1)
    result = compare_bitwise(actual, expected, out_fmt, equal_nan=args.equal_nan)
    report.update(result.as_dict())
    if result.equal:
        return finish("ok", f"OK: all {expected.size} values match bit for bit ({out_fmt.name})", 0)
    lines = [f"MISMATCH: {result.message()}"]
    if result.max_ulp is not None:
        lines.append(f"largest distance: {result.max_ulp} ulp")
    lines.append("ulp distances: " + ", ".join(f"{k}: {v}" for k, v in result.histogram.items()))
    if actual.ndim == 2 and actual.shape[0] == actual.shape[1] > 1 \
            and compare_bitwise(actual.T, expected, out_fmt, equal_nan=args.equal_nan).equal:
        report["transpose_matches"] = True
        lines.append("the actual output equals the transpose of the expected output bit for bit")
    within = args.max_ulp is not None and "NaN" not in result.histogram and (result.max_ulp or 0) <= args.max_ulp
    if within:
        lines[0] = f"WITHIN {args.max_ulp} ULP: {result.message()}"
        return finish("within_max_ulp", "\n".join(lines), 0)
    return finish("mismatch", "\n".join(lines), 1)


def _cmd_conventions(args):
    from .recipes import SCALE_CONVENTIONS

    print("| name | what it is | input (A) | weight (B) | gradient |")
    print("|---|---|---|---|---|")
    for name, (what, roles) in SCALE_CONVENTIONS.items():
        cells = []
        for role in ("input", "weight", "grad"):
            fmt, gran, kw = roles[role]
            extra = ", ".join(f"{k}={v!r}" for k, v in kw.items())
            cells.append(f"{fmt}, {gran!r}" + (f", {extra}" if extra else ""))
        print(f"| {name} | {what} | " + " | ".join(cells) + " |")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        print(f"fp8sim: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv=None) -> int:
    from . import __version__

    parser = _Parser(prog="fp8sim", description="fp8sim command line (also: python -m fp8sim)")
    parser.add_argument("--version", action="version", version=f"fp8sim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("formats", help="table of the named formats")
    p.add_argument("--csv", action="store_true", help="CSV instead of a markdown table")
    p.set_defaults(func=_cmd_formats)
    p = sub.add_parser("conventions", help="the named scale conventions (cuBLASLt modes, Transformer Engine recipes)")
    p.set_defaults(func=_cmd_conventions)
    p = sub.add_parser("golden", help="write a golden-vector file")
    p.add_argument("--unit", required=True, help="GPU:format, e.g. H100:e4m3, or GPU:a_format,b_format")
    p.add_argument("--shape", default=None, help="MxNxK (required without --a/--b)")
    p.add_argument("--a", default=None, help="the left operand as a .npy file (M x K real values), with --b")
    p.add_argument("--b", default=None, help="the right operand as a .npy file (K x N), with --a")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--promote-every", type=int, default=None)
    p.add_argument("--scaling", choices=sorted(SCALINGS), default="none", type=str.lower)
    p.add_argument("--out-format", default=None, help="output format with --scaling (default bfloat16)")
    p.add_argument("--max-elements", type=int, default=MAX_ELEMENTS,
                   help=f"refuse shapes with more than this many elements in a, b and d (default {MAX_ELEMENTS})")
    p.add_argument("--out", required=True, help="FILE.npz")
    p.set_defaults(func=_cmd_golden)
    p = sub.add_parser("verify", help="check an output against a golden file")
    p.add_argument("golden")
    p.add_argument("actual", help="a .npy file (floats, integer codes, ml_dtypes arrays) or, with --dtype, a raw "
                                  "little-endian binary")
    p.add_argument("--dtype", default=None, help="the raw binary's element type: float32, bfloat16, uint16 ...")
    p.add_argument("--shape", dest="raw_shape", default=None, help="the raw binary's shape, e.g. 64x64 "
                                                                  "(default: the golden output's)")
    p.add_argument("--max-ulp", type=int, default=None, help="exit 0 when every difference is at most N ulp")
    p.add_argument("--equal-nan", action="store_true", help="treat every NaN encoding as equal")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
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
