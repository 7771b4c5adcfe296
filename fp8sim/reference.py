"""Slow, obviously-correct scalar twins of the vectorized routines.

Everything here works one value (or one dot product) at a time in exact
arithmetic: Python integers and :class:`fractions.Fraction`.  The code
follows the written rules directly, with no bit tricks, so the vectorized
routines can be tested against it.  Only :mod:`fp8sim.formats` is imported.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .formats import FloatFormat, Specials, get_format

__all__ = ["quantize_scalar", "decode_scalar", "floor_log2"]


def floor_log2(a: Fraction) -> int:
    """The integer e with ``2**e <= a < 2**(e+1)``, for ``a > 0``."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    return e


def _default_policy(fmt: FloatFormat) -> str:
    if fmt.has_inf:
        return "infinity"
    return "nan" if fmt.has_nan else "saturate"


def quantize_scalar(x, fmt, rounding="nearest_even", overflow=None, *, draw=None, sr_bits=None, subnormals=True):
    """Round one real number onto ``fmt``; returns a Python float.

    Parameters are as for :func:`fp8sim.quantize`, except that stochastic
    rounding takes its random draw directly: ``draw`` is a float in
    ``[0, 1)`` (``sr_bits=None``: round away from zero when
    ``draw < remainder``, compared exactly) or an int in ``[0, 2**sr_bits)``
    (round away from zero when ``draw + floor(remainder * 2**sr_bits) >=
    2**sr_bits``).  ``remainder`` is the distance from the value to its lower
    neighbour (in magnitude), in units of the spacing.

    >>> quantize_scalar(0.3, "e4m3")
    0.3125
    >>> quantize_scalar(Fraction(5, 2), "e2m1", "nearest_away")
    3.0
    """
    fmt = get_format(fmt)
    policy = _default_policy(fmt) if overflow is None else str(getattr(overflow, "value", overflow))
    rounding = str(getattr(rounding, "value", rounding))
    nan = float("nan")

    if hasattr(x, "dtype") and x.dtype.kind in "iu":
        x = int(x)
    elif hasattr(x, "dtype") and x.dtype.kind == "f" and x.dtype.itemsize > 8 and np.isfinite(x):
        x = Fraction(*x.as_integer_ratio())  # long double: more bits than float64
    if isinstance(x, float) or hasattr(x, "dtype"):
        xf = float(x)
        if math.isnan(xf):
            if not fmt.has_nan:
                raise ValueError("NaN input but the format has no NaN")
            return xf
        negative = math.copysign(1.0, xf) < 0
        if math.isinf(xf):
            if not fmt.signed and negative:
                return _nan_or_raise(fmt)
            if policy == "saturate":
                mag = fmt.max
            elif policy == "infinity":
                mag = math.inf
            else:
                return math.copysign(nan, xf)
            return -mag if negative else mag
        value = Fraction(xf)
    else:
        value = Fraction(x)
        negative = value < 0
    a = abs(value)

    if not fmt.signed and negative and a != 0:
        return _nan_or_raise(fmt)
    if a == 0:
        if not fmt.has_zero:
            return nan
        return -0.0 if (negative and fmt.has_negative_zero) else 0.0

    m = fmt.mantissa_bits
    e = max(floor_log2(a), fmt.emin)
    spacing = Fraction(2) ** (e - m)
    t = math.floor(a / spacing)
    rem = a / spacing - t
    if rounding == "nearest_even":
        up = rem > Fraction(1, 2) or (rem == Fraction(1, 2) and t % 2 == 1)
    elif rounding == "nearest_away":
        up = rem >= Fraction(1, 2)
    elif rounding == "toward_zero":
        up = False
    elif rounding == "upward":
        up = rem > 0 and not negative
    elif rounding == "downward":
        up = rem > 0 and negative
    elif rounding == "to_odd":
        up = rem > 0 and t % 2 == 0
    elif rounding == "stochastic":
        if draw is None:
            raise ValueError("stochastic rounding needs draw")
        if sr_bits is None:
            up = Fraction(float(draw)) < rem
        else:
            up = int(draw) + math.floor(rem * 2**sr_bits) >= 2**sr_bits
    else:
        raise ValueError(f"unknown rounding {rounding!r}")
    r = (t + up) * spacing

    if r > Fraction(fmt.max):
        toward_zero = rounding in ("toward_zero", "to_odd") or (
            (rounding == "upward" and negative) or (rounding == "downward" and not negative)
        )
        if toward_zero or policy == "saturate":
            r = Fraction(fmt.max)
        elif policy == "infinity":
            return -math.inf if negative else math.inf
        else:
            return -nan if negative else nan
    if not subnormals and r < Fraction(fmt.smallest_normal):
        r = Fraction(0)
    if r == 0:
        if not fmt.has_zero:
            r = Fraction(fmt.smallest_subnormal)
        else:
            return -0.0 if (negative and fmt.has_negative_zero) else 0.0
    return float(-r if negative else r)


def _nan_or_raise(fmt):
    if not fmt.has_nan:
        raise ValueError("negative input but the format is unsigned and has no NaN")
    return float("nan")


def decode_scalar(code: int, fmt) -> float:
    """Value of one bit pattern, read field by field from the definition.

    >>> decode_scalar(0x7E, "e4m3"), decode_scalar(0x7F, "e8m0")
    (448.0, 1.0)
    """
    fmt = get_format(fmt)
    code = int(code)
    m, e = fmt.mantissa_bits, fmt.exponent_bits
    mantissa = code % 2**m
    exponent = (code // 2**m) % 2**e
    negative = fmt.signed and (code // 2 ** (m + e)) % 2 == 1
    sign = -1 if negative else 1
    all_ones = 2**e - 1
    if fmt.specials is Specials.E8M0:
        if exponent == all_ones:
            return float("nan")
        return float(Fraction(2) ** (exponent - fmt.bias))
    if fmt.specials is Specials.IEEE and exponent == all_ones:
        return sign * math.inf if mantissa == 0 else math.copysign(float("nan"), sign)
    if fmt.specials is Specials.FN and exponent == all_ones and mantissa == 2**m - 1:
        return math.copysign(float("nan"), sign)
    if fmt.specials is Specials.FNUZ and negative and exponent == 0 and mantissa == 0:
        return float("nan")
    if exponent == 0:
        magnitude = Fraction(mantissa, 2**m) * Fraction(2) ** fmt.emin
    else:
        magnitude = (1 + Fraction(mantissa, 2**m)) * Fraction(2) ** (exponent - fmt.bias)
    return math.copysign(float(magnitude), sign)


# --- block FMA (tensor-core accumulation) ---------------------------------------

def _sig_exp(x: Fraction, fmt: FloatFormat):
    """(integer significand with sign, exponent clamped at emin) of a non-zero input."""
    e = max(floor_log2(abs(x)), fmt.emin)
    sig = abs(x) / Fraction(2) ** (e - fmt.mantissa_bits)
    assert sig.denominator == 1, "input not representable in the unit's format"
    return (1 if x > 0 else -1) * int(sig), e


def _round_to_bits(v: Fraction, frac_bits: int, rounding: str, step_format=None) -> float:
    """Round v to frac_bits fraction bits in FP32's exponent range (IEEE overflow), or onto step_format."""
    fmt = get_format(step_format) if step_format is not None else FloatFormat(8, frac_bits, 127)
    return quantize_scalar(v, fmt, rounding, "infinity")


def block_fma_dot(a, b, c, unit, promote_every=None) -> float:
    """One dot product ``sum(a_k * b_k) + c`` through a block-FMA unit, exactly.

    ``unit`` is a :class:`fp8sim.BlockFMA` (any object with its attributes), or a
    :class:`fp8sim.accumulate.SplitFP16Unit` (then :func:`split_fp16_dot` per chain).
    Written from the model's five steps (see :mod:`fp8sim.accumulate`) with
    Python integers and Fractions, one block at a time.  ``promote_every``
    restarts the chain every that many k and adds each chain's result into
    an FP32 accumulator with nearest-even rounding.

    >>> from fp8sim.hardware import tensor_core
    >>> block_fma_dot([256.0, 1.0, 2.0**-7], [1.0, 1.0, 1.0], 0.0, tensor_core("H100", "e4m3"))
    257.0
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    c = float(c)
    # a SplitFP16Unit (it has an FP16 step) chains through its own twin
    chain = split_fp16_dot if hasattr(unit, "step") else _chain
    if promote_every is None:
        return chain(a, b, c, unit)
    acc = c
    for k0 in range(0, len(a), promote_every):
        part = chain(a[k0:k0 + promote_every], b[k0:k0 + promote_every], 0.0, unit)
        acc = _add_fp32(acc, part)
    return acc


def split_fp16_dot(a, b, c, unit) -> float:
    """One dot product through :class:`fp8sim.accumulate.SplitFP16Unit`, exactly.

    For each block of 32: the products at k mod 4 in (0, 1) through
    ``unit.step`` from C = 0, then those at k mod 4 in (2, 3) with that
    result as C, then the block's C added with one nearest-even rounding
    to ``unit.out_format`` (FP16 or FP32), an IEEE addition (-0 + -0 is -0).

    >>> from fp8sim.hardware import tensor_core
    >>> split_fp16_dot([1.0] * 32, [0.5] * 32, 0.25, tensor_core("H100", "e4m3", out_format="float16",
    ...                                                          instruction="mma.sync"))
    16.25
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    c = float(c)
    for k0 in range(0, len(a), 32):
        blk = range(k0, min(k0 + 32, len(a)))
        g1 = [k for k in blk if (k - k0) % 4 < 2]
        g2 = [k for k in blk if (k - k0) % 4 >= 2]
        t1 = _chain([a[k] for k in g1], [b[k] for k in g1], 0.0, unit.step) if g1 else 0.0
        t2 = _chain([a[k] for k in g2], [b[k] for k in g2], t1, unit.step) if g2 else t1
        c = _add_fp32(t2, c, unit.out_format)
    return c


# --- AMD CDNA units (fp8sim.cdna) ----------------------------------------------------------------

def _special_dot(a, b, c, overflow_check=False):
    """NaN / Inf of a step: None when everything is finite (and no product reaches 2**128 if checked)."""
    signs = set()
    nan = math.isnan(c)
    for x, y in zip(a, b):
        if math.isnan(x) or math.isnan(y):
            nan = True
            continue
        if math.isinf(x) or math.isinf(y):
            if x == 0 or y == 0:
                nan = True
            else:
                signs.add(math.copysign(1.0, x) * math.copysign(1.0, y))
        elif overflow_check and abs(Fraction(x) * Fraction(y)) >= 2**128:
            signs.add(math.copysign(1.0, x) * math.copysign(1.0, y))
    if math.isinf(c):
        signs.add(math.copysign(1.0, c))
    if nan or len(signs) == 2:
        return float("nan")
    if signs:
        return signs.pop() * math.inf
    return None


def exact_block_dot(a, b, c, unit) -> float:
    """:class:`fp8sim.cdna.ExactBlockUnit` (CDNA1): each block's products and C summed exactly,
    rounded once to nearest-even FP32.

    >>> exact_block_dot([2.0**15, 1.0, -2.0**15], [1.0, 2.0**-30, 1.0], 0.0, type("U", (), {"block": 4})())
    9.313225746154785e-10
    """
    a, b, c = [float(v) for v in a], [float(v) for v in b], float(c)
    for k0 in range(0, len(a), unit.block):
        aa, bb = a[k0:k0 + unit.block], b[k0:k0 + unit.block]
        sp = _special_dot(aa, bb, c)
        if sp is not None:
            c = sp
            continue
        exact = sum((Fraction(x) * Fraction(y) for x, y in zip(aa, bb)), Fraction(c))
        c = quantize_scalar(exact, "float32", "nearest_even", "infinity")
        if c == 0:
            c = 0.0 if exact == 0 and not (math.copysign(1, c) < 0) else c
    return c


def _flush32(v: Fraction | float) -> float:
    """Round to FP32 (nearest-even), then flush a subnormal to a zero of its sign."""
    r = quantize_scalar(v, "float32", "nearest_even", "infinity") if not isinstance(v, float) or math.isfinite(v) \
        else v
    if r != 0 and math.isfinite(r) and abs(r) < 2.0**-126:
        return math.copysign(0.0, r)
    return r


def _add32(x: float, y: float) -> float:
    """CDNA2's FP32 addition: nearest-even (specials and signed zeros as :func:`_add_fp32`), a
    subnormal result flushed."""
    return _flush32(_add_fp32(x, y))


def ftz_dot(a, b, c, unit) -> float:
    """:class:`fp8sim.cdna.FTZUnit` (CDNA2), one operation at a time: inputs subnormal in their own
    format are +0 (and a subnormal C; -0 inputs and C too unless ``unit.negative_zero == "keep"``),
    products are rounded to FP32 and flushed, per group ``s = p0 + p1`` (and ``s + (p2 + p3)`` for
    groups of 4), then ``c = c + s``, every addition an IEEE one rounded to FP32 and flushed.

    >>> ftz_dot([1.0, 2.0**-130, 3.0, 1.0], [1.0, 2.0**10, 1.0, 1.0], 0.0,
    ...         fp8sim_unit := type("U", (), {"group": 4, "in_format": "float32", "b_format": None})())
    5.0
    """
    fa = get_format(unit.in_format)
    fb = get_format(getattr(unit, "b_format", None) or fa)
    keep = getattr(unit, "negative_zero", "flush") == "keep"

    def flush(v, smallest_normal):
        """+0 for a subnormal, and for -0 unless the unit keeps it."""
        v = float(v)
        return 0.0 if abs(v) < smallest_normal and (v != 0 or not keep) else v

    a = [flush(x, fa.smallest_normal) for x in a]
    b = [flush(y, fb.smallest_normal) for y in b]
    c = flush(c, 2.0**-126)
    c = float(np.float32(c))

    def prod(x, y):
        if math.isnan(x) or math.isnan(y) or ((math.isinf(x) or math.isinf(y)) and (x == 0 or y == 0)):
            return float("nan")
        if math.isinf(x) or math.isinf(y):
            return math.copysign(math.inf, x) * math.copysign(1.0, y)
        if x == 0 or y == 0:
            return math.copysign(0.0, x) * math.copysign(1.0, y)
        return _flush32(Fraction(x) * Fraction(y))

    g = unit.group
    for k0 in range(0, len(a), g):
        p = [prod(x, y) for x, y in zip(a[k0:k0 + g], b[k0:k0 + g])]
        s = _add32(p[0], p[1]) if len(p) > 1 else p[0]
        if len(p) == 4:
            s = _add32(s, _add32(p[2], p[3]))
        elif len(p) == 3:
            s = _add32(s, p[2])
        c = _add32(c, s)
    return c


def _floor_grid(v: Fraction, e: int) -> Fraction:
    g = Fraction(2) ** e
    return math.floor(v / g) * g


def _trunc_sum(terms, F):
    """Truncated fused sum of (value, exponent) terms: (sum, E) or (0, None) when there are none."""
    if not terms:
        return Fraction(0), None
    E = max(e for _, e in terms)
    g = Fraction(2) ** (E - F)
    return sum(math.trunc(v / g) for v, _ in terms) * g, E


def floor_sum_dot(a, b, c, unit) -> float:
    """:class:`fp8sim.cdna.FloorSumUnit` (CDNA3), exactly: per block, the products' truncated sum
    at F = ``align_bits`` (even and odd k apart with ``split_parity``), C and the join floored
    toward -Inf, the sum floored to ``frac_bits`` fraction bits, one nearest-even FP32 rounding.

    >>> from fp8sim.hardware import tensor_core
    >>> floor_sum_dot([1.0], [1.0], -2.0**-30, tensor_core("MI300X", "bfloat16"))   # C floored to 2**-24
    0.9999999403953552
    """
    fa = get_format(unit.in_format)
    fb = get_format(getattr(unit, "b_format", None) or fa)
    a, b, c = [float(v) for v in a], [float(v) for v in b], float(c)
    F = unit.align_bits
    for k0 in range(0, len(a), unit.block):
        aa, bb = a[k0:k0 + unit.block], b[k0:k0 + unit.block]
        sp = _special_dot(aa, bb, c, unit.overflow_check)
        if sp is not None:
            c = sp
            continue
        terms = []
        for k, (x, y) in enumerate(zip(aa, bb)):
            if x == 0 or y == 0:
                continue
            sx, ex = _sig_exp(Fraction(x), fa)
            sy, ey = _sig_exp(Fraction(y), fb)
            terms.append((k, Fraction(sx * sy) * Fraction(2) ** (ex + ey - fa.mantissa_bits - fb.mantissa_bits),
                          ex + ey))
        if unit.split_parity:
            s0, e0 = _trunc_sum([(v, e) for k, v, e in terms if k % 2 == 0], F)
            s1, e1 = _trunc_sum([(v, e) for k, v, e in terms if k % 2 == 1], F)
            exps = [e for e in (e0, e1) if e is not None]
            e_dot = max(exps) if exps else None
            s_dot = (_floor_grid(s0, e_dot - F) + _floor_grid(s1, e_dot - F)) if e_dot is not None else Fraction(0)
        else:
            s_dot, e_dot = _trunc_sum([(v, e) for _, v, e in terms], F)
        cf = Fraction(c)
        e_c = floor_log2(abs(cf)) if cf != 0 else None
        cands = [e for e in (e_dot, e_c) if e is not None]
        if not cands:
            c = 0.0 + c  # no products, zero C
            continue
        e_max = max(cands)
        if unit.c_drop_bits is not None and e_c is not None and e_c < e_max - unit.c_drop_bits:
            cf = Fraction(0)
        v = _floor_grid(s_dot, e_max - unit.join_bits) + _floor_grid(cf, e_max - F)
        if v != 0:
            v = _floor_grid(v, floor_log2(abs(v)) - unit.frac_bits)
        c = quantize_scalar(v, "float32", "nearest_even", "infinity")
    return c


def block_scaled_dot(a, b, c, sa, sb, unit) -> float:
    """One dot product through :class:`fp8sim.blockscale.BlockScaledFMA`, exactly.

    ``sa`` and ``sb`` hold one E8M0 scale value (a power of two, or NaN) per
    block of 32 along K, for this row of A and this column of B.

    >>> from fp8sim.blockscale import BlockScaledFMA
    >>> block_scaled_dot([1.0] * 32, [1.0] * 32, 0.0, [2.0**3], [0.5], BlockScaledFMA("e4m3"))
    128.0
    """
    fa = get_format(unit.in_format)
    fb = get_format(unit.b_format or fa)
    a, b, c = [float(v) for v in a], [float(v) for v in b], float(c)
    F = unit.align_bits
    for j, k0 in enumerate(range(0, len(a), unit.block)):
        aa, bb = a[k0:k0 + unit.block], b[k0:k0 + unit.block]
        if math.isnan(float(sa[j])) or math.isnan(float(sb[j])) or math.isnan(c):
            c = float("nan")
            continue
        sp = _special_dot(aa, bb, c)
        if sp is not None:
            c = sp
            continue
        x = floor_log2(Fraction(float(sa[j]))) + floor_log2(Fraction(float(sb[j])))
        terms, exps = [], []
        for xv, yv in zip(aa, bb):
            if xv == 0 or yv == 0:
                exps.append(unit.e_zero)
                continue
            sx, ex = _sig_exp(Fraction(xv), fa)
            sy, ey = _sig_exp(Fraction(yv), fb)
            terms.append(Fraction(sx * sy) * Fraction(2) ** (ex + ey - fa.mantissa_bits - fb.mantissa_bits + x))
            exps.append(ex + ey + x)
        cf = Fraction(c)
        exps.append(floor_log2(abs(cf)) if cf != 0 else unit.e_zero)
        grid = Fraction(2) ** (max(exps) - F)
        total = (sum(math.trunc(t / grid) for t in terms) + math.trunc(cf / grid)) * grid
        c = _rz_fp32(total, unit)
    return c


def group_scaled_dot(a, b, c, sa, sb, unit) -> float:
    """One dot product through :class:`fp8sim.blockscale.GroupScaledFMA`, exactly.

    Per 64 elements: four groups of 16 products summed exactly, each times
    its block's two scale significands at the scales' exponent sum (a group
    of zero products, or a zero scale, at ``e_zero``), one truncated fused
    sum at F = ``align_bits`` with C (a zero C at ``e_zero``), truncated to
    FP32.  A NaN scale or C gives NaN; an infinite C stays (E2M1 products
    are finite).

    >>> from fp8sim.blockscale import GroupScaledFMA
    >>> group_scaled_dot([1.0] * 64, [1.0] * 64, 0.0, [1.5] * 4, [2.0] * 4, GroupScaledFMA(16, "e4m3"))
    192.0
    """
    sfmt = get_format(unit.scale_format)
    a, b, c = [float(v) for v in a], [float(v) for v in b], float(c)

    def parts(v):
        v = abs(float(v))
        if math.isnan(v):
            return None
        if v == 0:
            return Fraction(0), 0
        e = max(floor_log2(Fraction(v)), sfmt.emin) if sfmt.name != "float8_e8m0fnu" else floor_log2(Fraction(v))
        return Fraction(v) / Fraction(2) ** e, e

    F, G = unit.align_bits, unit.group
    for k0 in range(0, len(a), 64):
        terms, exps, nan = [], [], math.isnan(c)
        for g in range(4):
            ks = range(k0 + G * g, k0 + G * (g + 1))
            j = (k0 + G * g) // unit.block
            pa, pb = parts(sa[j]), parts(sb[j])
            if pa is None or pb is None:
                nan = True
                continue
            prods = [Fraction(a[k]) * Fraction(b[k]) for k in ks]
            s_scale = pa[0] * pb[0]
            terms.append(sum(prods) * s_scale)
            exps.append(unit.e_zero if all(p == 0 for p in prods) or s_scale == 0 else pa[1] + pb[1])
        if nan:
            c = float("nan")
            continue
        if math.isinf(c):  # an infinite C (given, or from an earlier overflow) stays: the products are finite
            continue
        cf = Fraction(c)
        e_c = floor_log2(abs(cf)) if cf != 0 else unit.e_zero
        E = max(exps + [e_c])
        total = sum(math.trunc(t * Fraction(2) ** (e - E + F)) for t, e in zip(terms, exps))
        total += math.trunc(cf * Fraction(2) ** (F - E))
        exact = total * Fraction(2) ** (E - F)
        c = _rz_fp32(exact, unit)
    return c


def _rz_fp32(exact: Fraction, unit) -> float:
    """A block-scaled step's result: ``exact`` truncated to FP32 (overflow as the unit's
    ``rz_overflow`` says), zeros +0."""
    fp32 = get_format("float32")
    return _choices(quantize_scalar(exact, fp32, "toward_zero", "infinity"), exact, "toward_zero", fp32, unit) + 0.0


def _add_fp32(x: float, y: float, fmt="float32") -> float:
    """x + y with one nearest-even rounding to ``fmt`` (FP32, or FP16 for the FP16-path emulation's
    last addition); IEEE 754 specials and signed zeros (the sum of two zeros is -0 only when both are
    -0; an exact cancellation is +0)."""
    if x == 0 and y == 0:
        return x + y  # (the Fraction below carries no sign of zero)
    if math.isnan(x) or math.isnan(y) or (math.isinf(x) and math.isinf(y) and x != y):
        return float("nan")
    if math.isinf(x) or math.isinf(y):
        return x if math.isinf(x) else y
    return quantize_scalar(Fraction(x) + Fraction(y), fmt, "nearest_even", "infinity")


def _formats(unit):
    fa = get_format(unit.in_format)
    fb = get_format(getattr(unit, "b_format", None) or fa)
    return fa, fb


def _chain(a, b, c, unit) -> float:
    for k0 in range(0, len(a), unit.block):
        c = _block(a[k0:k0 + unit.block], b[k0:k0 + unit.block], c, unit)
    return c


def _block(a, b, c, unit) -> float:
    fa, fb = _formats(unit)
    # special values first: NaN, Inf * 0, Inf - Inf; an infinite C stays
    special = _special_dot(a, b, c)
    if special is not None:
        return special

    # 1. exact products, exponent = sum of the clamped input exponents
    terms = []
    for x, y in zip(a, b):
        if x == 0 or y == 0:
            continue
        sx, ex = _sig_exp(Fraction(x), fa)
        sy, ey = _sig_exp(Fraction(y), fb)
        terms.append((Fraction(sx * sy) * Fraction(2) ** (ex + ey - fa.mantissa_bits - fb.mantissa_bits), ex + ey))
    cf = Fraction(c)
    exps = [e for _, e in terms]
    step_fmt = getattr(unit, "step_format", None)
    acc = get_format(step_fmt) if step_fmt is not None else FloatFormat(8, unit.out_frac_bits, 127)
    if unit.c_in_alignment and cf != 0:
        ec = floor_log2(abs(cf))
        if getattr(unit, "c_subnormal_exponent", "emin") == "emin":
            ec = max(ec, acc.emin)
        exps.append(ec)
    total = Fraction(0)
    if exps:
        # 2.-3. align to the largest exponent, truncate each term toward zero
        grid = Fraction(2) ** (max(exps) - unit.align_bits)
        total = sum(math.trunc(t / grid) for t, _ in terms) * grid
        if unit.c_in_alignment:
            total += math.trunc(cf / grid) * grid
    # 4. normalise once, round to the output precision
    # a zero result is +0, also where a negative sum underflows the result format (MMA-Sim's rule too)
    result = _choices(_round_to_bits(total, unit.out_frac_bits, unit.out_rounding, step_fmt), total,
                      unit.out_rounding, acc, unit) + 0.0
    if unit.c_in_alignment:
        return result
    # C outside the alignment: added to the rounded products' sum, rounded once more
    exact = Fraction(result) + cf if math.isfinite(result) else None
    if exact is None:
        return result
    return _choices(_round_to_bits(exact, unit.out_frac_bits, unit.c_rounding, step_fmt), exact,
                    unit.c_rounding, acc, unit)


def _choices(r: float, exact: Fraction, rounding: str, acc: FloatFormat, unit) -> float:
    """The unit's overflow choice (fp8sim.BlockFMA's rz_overflow): a truncated result beyond the
    format's range is Inf, or the largest finite value."""
    if getattr(unit, "rz_overflow", "inf") == "inf" and rounding == "toward_zero" and abs(exact) > Fraction(acc.max):
        return math.copysign(math.inf, exact)
    return r


# --- scaling --------------------------------------------------------------------------

def block_scale(block, fmt, rule="fp32", *, margin=0, amax_epsilon=0.0, pow2=None, global_scale=None) -> float:
    """The scale of one block of values under a rule, from the written definitions.

    ``rule``: ``"fp32"`` (amax * 2**margin / max, optional power of two,
    rounded to FP32; 1 for an all-zero block), ``"mx_floor"`` (OCP MX v1.0
    section 6.3: 2**(floor(log2 amax) - emax), clipped to 2**[-127, 127];
    2**-127 for zeros), ``"mx_ceil"`` (smallest power of two ``2**X`` with
    ``amax <= max * 2**X``), ``"nvfp4"`` (E4M3 of amax / (6 * global_scale)).

    >>> block_scale([0.5, -3.0], "e4m3"), block_scale([0.5, -3.0], "e2m1", "mx_floor")
    (0.0066964286379516125, 0.5)
    """
    fmt = get_format(fmt)
    if any(math.isnan(v) or math.isinf(v) for v in block):
        return float("nan")
    amax = max((abs(Fraction(v)) for v in block), default=Fraction(0))
    if rule == "fp32":
        amax = max(amax, Fraction(amax_epsilon))
        if amax == 0:
            return 1.0
        s = amax * Fraction(2) ** margin / Fraction(fmt.max)
        if pow2 is not None:
            e = floor_log2(s)
            if pow2 == "ceil" and Fraction(2) ** e != s:
                e += 1
            s = Fraction(2) ** e
        return quantize_scalar(s, "float32", "nearest_even", "saturate")
    if rule == "mx_floor":
        x = -127 if amax == 0 else min(max(floor_log2(amax) - fmt.emax, -127), 127)
        return float(Fraction(2) ** x)
    if rule == "mx_ceil":
        if amax == 0:
            return float(Fraction(2) ** -127)
        r = amax / Fraction(fmt.max)
        x = floor_log2(r)
        if Fraction(2) ** x != r:
            x += 1
        return float(Fraction(2) ** min(max(x, -127), 127))
    if rule == "nvfp4":
        return quantize_scalar(amax / (Fraction(fmt.max) * Fraction(global_scale)), "float8_e4m3fn",
                               "nearest_even", "saturate")
    raise ValueError(f"unknown rule {rule!r}")


def scaled_element(x, scale, fmt, rounding="nearest_even", *, draw=None, sr_bits=None) -> float:
    """One element: the exact quotient x / scale rounded onto fmt with saturation (0 for scale 0)."""
    if scale == 0:
        return 0.0
    if math.isnan(scale) or math.isnan(x) or math.isinf(x):
        return float("nan") if get_format(fmt).has_nan else 0.0
    return quantize_scalar(Fraction(x) / Fraction(scale), fmt, rounding, "saturate", draw=draw, sr_bits=sr_bits)


def _fl32(v: Fraction) -> Fraction:
    return Fraction(quantize_scalar(v, "float32", "nearest_even", "infinity"))


def scaled_dot(a_vals, a_scales, b_vals, b_scales, unit, semantics, *, block_k, promote_every=None,
               out_format="bfloat16") -> float:
    """One output element of :func:`fp8sim.scaled_matmul`, step by step in exact arithmetic.

    ``a_scales[j]`` and ``b_scales[j]`` are the scales of K block ``j``
    (``block_k`` elements; for ``"scaled_mm"`` one scale each).
    """
    a_vals, b_vals = list(a_vals), list(b_vals)
    if semantics == "scaled_mm":
        d = Fraction(block_fma_dot(a_vals, b_vals, 0.0, unit, promote_every))
        s = _fl32(Fraction(a_scales[0]) * Fraction(b_scales[0]))
        return quantize_scalar(_fl32(d * s), out_format)
    acc = Fraction(0)
    for j, k0 in enumerate(range(0, len(a_vals), block_k)):
        part = Fraction(block_fma_dot(a_vals[k0:k0 + block_k], b_vals[k0:k0 + block_k], 0.0, unit))
        if semantics == "deepgemm":
            s = _fl32(Fraction(a_scales[j]) * Fraction(b_scales[j]))
        elif semantics == "mx":
            s = Fraction(a_scales[j]) * Fraction(b_scales[j])
        else:
            raise ValueError(f"unknown semantics {semantics!r}")
        acc = _fl32(acc + part * s)
    return quantize_scalar(acc, out_format)


def scaled_gemm(A, B, unit, semantics, *, block_k, promote_every=None, out_format="bfloat16"):
    """:func:`fp8sim.scaled_matmul` for ScaledTensors ``A`` (M, K) and ``B`` (K, N), one
    :func:`scaled_dot` per output: each row's and column's scales per K block (``"scaled_mm"``: the
    one scale of each)."""
    M, N = A.shape[0], B.shape[1]
    out = np.empty((M, N))
    for m in range(M):
        for n in range(N):
            if semantics == "scaled_mm":
                sa, sb = [A.expanded_scales()[m, 0]], [B.expanded_scales()[0, n]]
            else:
                nb = A.scales.shape[1]
                sa = [A.scales[m, j] for j in range(nb)]
                sb = [B.scales[j, n // B.tile[1]] for j in range(nb)]
            out[m, n] = scaled_dot(A.values[m], sa, B.values[:, n], sb, unit, semantics, block_k=block_k,
                                   promote_every=promote_every, out_format=out_format)
    return out


def trace_dot(a, b, c, unit):
    """Step one dot product through a block-FMA unit, block by block, for inspection.

    Returns one dict per block: ``c_in``, ``E`` (the alignment exponent),
    ``grid`` (``2**(E - F)``), ``products`` (exact), ``kept`` (each term
    after truncation), ``lost`` (what truncation dropped, summed) and
    ``result``.  Finite inputs only.

    >>> from fp8sim.hardware import tensor_core
    >>> step = trace_dot([256.0, 1.0, 2.0**-7], [1.0, 1.0, 1.0], 0.0, tensor_core("H100", "e4m3"))[0]
    >>> step["E"], step["grid"], step["kept"], step["result"]
    (8, 0.03125, [256.0, 1.0, 0.0], 257.0)
    """
    fa, fb = _formats(unit)
    steps = []
    c = float(c)
    for k0 in range(0, len(a), unit.block):
        aa, bb = [float(v) for v in a[k0:k0 + unit.block]], [float(v) for v in b[k0:k0 + unit.block]]
        products, exps = [], []
        for x, y in zip(aa, bb):
            p = Fraction(x) * Fraction(y)
            products.append(p)
            if p != 0:
                exps.append(_sig_exp(Fraction(x), fa)[1] + _sig_exp(Fraction(y), fb)[1])
        if unit.c_in_alignment and c != 0:
            exps.append(floor_log2(abs(Fraction(c))))
        E = max(exps) if exps else None
        grid = Fraction(2) ** (E - unit.align_bits) if E is not None else None
        kept = [math.trunc(p / grid) * grid if grid else Fraction(0) for p in products]
        result = _block(aa, bb, c, unit)
        steps.append({
            "c_in": c, "E": E, "grid": float(grid) if grid else None,
            "products": [float(p) for p in products], "kept": [float(k) for k in kept],
            "lost": float(sum(products) - sum(kept)), "result": result,
        })
        c = result
    return steps
