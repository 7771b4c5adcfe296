"""Where fp8sim's defaults differ from PyTorch's casts, and the options that reproduce PyTorch.

    python experiments/torch_differences.py [--out figures]

For each low-precision torch dtype, float32 and float64 inputs that probe
every rounding decision (every value of the format, every midpoint, one
float32 ulp either side, the overflow band, zeros, infinities, NaN,
negative values) are cast with ``tensor.to(dtype)`` and rounded with
``fp8sim.quantize`` (default options, then the options listed), and the
bit patterns are compared.  Each mismatch is put in one class: overflow,
NaN encoding, double rounding (float64 inputs: torch rounds through
float32 first), zero / sign (formats without them), other.  Writes
``torch_differences.json`` with the markdown table the README shows.
"""

from __future__ import annotations

import numpy as np

import fp8sim

try:
    from ._common import out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import out_dir, script_parser, write_json

DTYPES = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "bfloat16",
          "float16"]
#: fp8sim options that reproduce torch's cast, where one exists (found by this script, checked below)
MATCHING = {"float8_e4m3fn": {"overflow": "saturate"}, "float8_e5m2": {"overflow": "infinity"}}


def probe_values(fmt):
    v = fmt.values()
    v = v[np.isfinite(v)]
    mids = (v[1:] + v[:-1]) / 2
    top = fmt.max * np.array([1.0001, 1.01, 1.5, 2.0, 1e3])
    base = np.concatenate([v, mids, top, -top, -v, [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, -1e-300]])
    with np.errstate(over="ignore"):
        f32 = base.astype(np.float32)
        around = np.concatenate([f32, np.nextafter(f32, np.float32(np.inf)), np.nextafter(f32, np.float32(-np.inf))])
    x64 = np.concatenate([base, np.nextafter(base, np.inf), np.nextafter(base, -np.inf)])
    return around, x64


def torch_codes(torch, x, name):
    t = torch.from_numpy(x).to(getattr(torch, name))
    return fp8sim.formats.as_numpy(t).view({1: np.uint8, 2: np.uint16}[t.element_size()]).astype(np.int64)


def fp8sim_codes(x, fmt, **opts):
    with np.errstate(invalid="ignore"):
        q = fp8sim.quantize(x, fmt, **opts)
    return fp8sim.encode(q, fmt).astype(np.int64)


def classify(x, fmt, ours, theirs):
    xs = np.asarray(x, np.float64)
    ours_v, theirs_v = fp8sim.decode(ours, fmt), fp8sim.decode(theirs, fmt)
    classes = {}
    for i in np.flatnonzero(ours != theirs):
        xi = xs[i]
        if np.isnan(ours_v[i]) and np.isnan(theirs_v[i]):
            c = "NaN encoding"
        elif not fmt.has_zero and xi == 0 or not fmt.signed and (xi < 0 or np.signbit(xi)):
            c = "zero / sign"
        elif np.isfinite(xi) and abs(xi) > fmt.max or np.isinf(xi):
            c = "overflow"
        elif x.dtype == np.float64 and fp8sim.quantize(np.float32(xi), fmt) == theirs_v[i]:
            c = "double rounding"
        else:
            c = "other"
        entry = classes.setdefault(c, {"count": 0, "example": None})
        entry["count"] += 1
        if entry["example"] is None:
            entry["example"] = {"x": float(xi), "fp8sim": int(ours[i]), "torch": int(theirs[i])}
    return classes


def compute():
    import torch

    rows = []
    for name in DTYPES:
        fmt = fp8sim.get_format(name)
        for x in probe_values(fmt):
            if not fmt.signed:
                x = x[~np.isnan(x)]
            theirs = torch_codes(torch, x, name)
            default = classify(x, fmt, fp8sim_codes(x, fmt), theirs)
            row = {"dtype": name, "input": str(x.dtype), "n": int(x.size), "default": default}
            if name in MATCHING:
                with_opts = fp8sim_codes(x, fmt, **MATCHING[name])
                row["options"] = MATCHING[name]
                row["with_options"] = classify(x, fmt, with_opts, theirs)
            rows.append(row)
    return rows


def markdown(rows):
    def fmt_classes(c):
        if not c:
            return "0"
        return "; ".join(f"{k}: {v['count']} (e.g. x={v['example']['x']!r}: fp8sim 0x{v['example']['fp8sim']:02x}, "
                         f"torch 0x{v['example']['torch']:02x})" for k, v in c.items())

    lines = ["| torch dtype | input | values | differences, fp8sim defaults | options that match torch | "
             "differences with them |", "|---|---|---|---|---|---|"]
    for r in rows:
        opts = ", ".join(f"{k}={v!r}" for k, v in r.get("options", {}).items()) or "-"
        lines.append(f"| {r['dtype']} | {r['input']} | {r['n']} | {fmt_classes(r['default'])} | {opts} | "
                     f"{fmt_classes(r['with_options']) if 'with_options' in r else '-'} |")
    return "\n".join(lines)


def main(argv=None):
    args = script_parser(__doc__, seed=False).parse_args(argv)
    rows = compute()
    table = markdown(rows)
    print(table)
    import torch

    write_json(out_dir(args.out) / "torch_differences.json", {"torch": torch.__version__, "rows": rows,
                                                               "markdown": table})
    return rows


if __name__ == "__main__":
    main()
