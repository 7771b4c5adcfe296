"""Command line: ``python -m fp8sim COMMAND``.

Commands
--------
formats
    A table of every named format (markdown; ``--csv`` for CSV).

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
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"fp8sim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
