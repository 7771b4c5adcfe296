"""Rounding real values onto a format: :func:`quantize`.

Semantics (the scalar twin :func:`fp8sim.reference.quantize_scalar` spells
out the same rules one value at a time, in exact rational arithmetic):

1. The value is rounded onto the format's grid with an unbounded exponent
   range above (IEEE 754-2019, section 4.3) and the subnormal grid below
   (spacing ``2**(emin - mantissa_bits)``).
2. If the rounded magnitude exceeds ``fmt.max`` the value overflowed.  A
   rounding that goes toward zero for the value's sign (toward zero,
   upward for negatives, downward for positives, and round-to-odd, which is
   truncation with a jammed last bit) gives ``+-max``, as IEEE 754 section
   7.4 prescribes; any other rounding gives what the overflow policy says:
   ``SATURATE`` +-max, ``INFINITY`` +-Inf, ``NAN`` NaN.  The default policy
   (``overflow=None``) is the format's convention, as ml_dtypes converts:
   Inf for IEEE formats, NaN for FN/FNUZ/E8M0 formats, saturation for
   formats with neither (FP6, FP4).
3. ``subnormals=False`` flushes results below ``smallest_normal`` to zero.
4. Zeros keep their sign where the format has a negative zero.  Formats
   without zero (E8M0) give NaN for zero and round positive values below
   their smallest value up to it (as ml_dtypes does); unsigned formats give
   NaN for negative values.
5. NaN in gives NaN out; a format without NaN raises ``ValueError`` for a
   NaN input or whenever a NaN result would be needed.  Infinite inputs
   are exact: kept where the policy is ``INFINITY``, +-max under
   ``SATURATE``, NaN under ``NAN``.
"""

from __future__ import annotations

import enum

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .formats import FloatFormat, FormatLike, as_numpy, check_bool, get_format

__all__ = ["RoundingMode", "Overflow", "quantize", "resolve_overflow", "rounding_mode", "as_float64", "reject_masked", "to_array"]


class RoundingMode(str, enum.Enum):
    """Rounding modes; the string values are accepted wherever a mode is.

    >>> RoundingMode("to_odd") is RoundingMode.TO_ODD, RoundingMode.UPWARD == "upward"
    (True, True)
    """

    NEAREST_EVEN = "nearest_even"
    NEAREST_AWAY = "nearest_away"
    TOWARD_ZERO = "toward_zero"
    UPWARD = "upward"
    DOWNWARD = "downward"
    TO_ODD = "to_odd"
    STOCHASTIC = "stochastic"


class Overflow(str, enum.Enum):
    """What an overflowing value becomes (``None``: the format's convention).

    >>> import fp8sim
    >>> fp8sim.quantize(1e6, "e5m2", overflow=Overflow.SATURATE).item()
    57344.0
    """

    SATURATE = "saturate"
    INFINITY = "infinity"
    NAN = "nan"


#: common short names of the rounding modes (any case)
ROUNDING_ALIASES = {
    "rne": "nearest_even", "rn": "nearest_even", "round_to_nearest_even": "nearest_even",
    "rna": "nearest_away", "round_half_away": "nearest_away",
    "rtz": "toward_zero", "rz": "toward_zero", "trunc": "toward_zero", "truncate": "toward_zero",
    "rtp": "upward", "ru": "upward", "up": "upward", "ceil": "upward", "toward_positive": "upward",
    "rtn": "downward", "rd": "downward", "down": "downward", "floor": "downward", "toward_negative": "downward",
    "rto": "to_odd", "odd": "to_odd", "round_to_odd": "to_odd",
    "sr": "stochastic",
}
#: short names of the overflow policies (any case)
OVERFLOW_ALIASES = {"sat": "saturate", "satfinite": "saturate", "inf": "infinity"}


def _enum_value(enum_cls, value, arg):
    if isinstance(value, enum_cls):
        return value
    aliases = ROUNDING_ALIASES if enum_cls is RoundingMode else OVERFLOW_ALIASES if enum_cls is Overflow else {}
    key = value.strip().lower() if isinstance(value, str) else value
    key = aliases.get(key, key)
    try:
        return enum_cls(key)
    except (ValueError, TypeError):
        raise ValueError(f"{arg} must be one of {[m.value for m in enum_cls]} (any case) or a short name "
                         f"{sorted(aliases)}, got {value!r}") from None


def rounding_mode(value: RoundingMode | str, arg: str = "rounding") -> RoundingMode:
    """Resolve a rounding-mode name (any case, short names such as ``"rne"``, ``"rtz"``).

    >>> rounding_mode("RTZ")
    <RoundingMode.TOWARD_ZERO: 'toward_zero'>
    """
    return _enum_value(RoundingMode, value, arg)


def resolve_overflow(fmt: FloatFormat, overflow: Overflow | str | None) -> Overflow:
    """The overflow policy that applies: ``overflow`` checked, or the format's own.

    >>> from fp8sim import get_format
    >>> resolve_overflow(get_format("e4m3"), None)
    <Overflow.NAN: 'nan'>
    """
    if overflow is None:
        if fmt.has_inf:
            return Overflow.INFINITY
        return Overflow.NAN if fmt.has_nan else Overflow.SATURATE
    policy = _enum_value(Overflow, overflow, "overflow")
    if policy is Overflow.INFINITY and not fmt.has_inf:
        raise ValueError(f"overflow='infinity' but {fmt!r} has no Inf; use 'saturate' or 'nan'")
    if policy is Overflow.NAN and not fmt.has_nan:
        raise ValueError(f"overflow='nan' but {fmt!r} has no NaN; use 'saturate'")
    return policy


def as_float64(x: ArrayLike, arg: str = "x") -> tuple[np.ndarray, np.ndarray | None]:
    """Convert an array-like of real numbers to float64, exactly.

    Returns ``(values, inexact)``: ``inexact`` is ``None`` when every value
    converted exactly, else a boolean mask of the values float64 cannot hold
    (huge integers, long doubles, Fractions); those must be rounded from the
    original objects.
    """
    arr = to_array(x, arg)
    kind = arr.dtype.kind
    if kind == "f" or arr.dtype.name.startswith(("float", "bfloat")):
        with np.errstate(invalid="ignore"):  # casting signalling NaNs warns
            v = arr.astype(np.float64, copy=False)
        if arr.dtype.itemsize > 8 and kind == "f":  # long double
            return v, _mask_or_none((v.astype(arr.dtype) != arr) & ~np.isnan(v))
        return v, None
    if kind in "iu":
        v = arr.astype(np.float64)
        if arr.dtype.itemsize <= 4:
            return v, None
        big = np.abs(v) > 2.0**53
        if not big.any():
            return v, None
        inexact = np.zeros(arr.shape, bool)
        inexact[big] = [int(f) != int(i) for f, i in zip(v[big], arr[big])]
        return v, _mask_or_none(inexact)
    if kind == "O":
        from fractions import Fraction
        from numbers import Real

        flat = arr.ravel()
        if not all(isinstance(o, Real) and not isinstance(o, bool) for o in flat):
            raise TypeError(f"{arg} must hold real numbers")
        def special(o):  # a float (or numpy) NaN or Inf: exact as it is
            return isinstance(o, (float, np.floating)) and not np.isfinite(o)

        v = np.array([float(o) if special(o) or abs(o) < 2**1024 else (np.inf if o > 0 else -np.inf) for o in flat])
        # finite numbers float64 cannot hold (also those beyond its range) are rounded from the objects
        inexact = np.array(
            [not special(o) and (not np.isfinite(f) or Fraction(f) != Fraction(o)) for f, o in zip(v, flat)], bool
        )
        v = v.reshape(arr.shape)
        return v, _mask_or_none(inexact.reshape(arr.shape))
    raise TypeError(f"{arg} must be real numbers, got an array of dtype {arr.dtype}")


def to_array(x: ArrayLike, arg: str = "x") -> np.ndarray:
    """``numpy.asarray`` of an input: masked arrays refused, torch / JAX arrays converted bit for bit
    (:func:`fp8sim.formats.as_numpy`)."""
    reject_masked(x, arg)
    return np.asarray(as_numpy(x, arg))


def reject_masked(x: Any, arg: str = "x") -> None:
    """``TypeError`` for a masked array: fp8sim never drops a mask and computes on the hidden data."""
    if np.ma.isMaskedArray(x):
        raise TypeError(
            f"{arg} is a numpy masked array; fp8sim would ignore the mask. Pass {arg}.filled(value) "
            f"or {arg}.compressed() to say what the masked entries are"
        )


def _mask_or_none(mask):
    return mask if mask.any() else None


def quantize(
    x: ArrayLike,
    fmt: FormatLike,
    rounding: RoundingMode | str = "nearest_even",
    overflow: Overflow | str | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    sr_bits: int | None = None,
    subnormals: bool = True,
) -> np.ndarray:
    """Round real values onto a number format.

    Parameters
    ----------
    x : array_like
        Real numbers: Python scalars or lists, NumPy integer or float arrays
        of any width, ml_dtypes arrays.
    fmt : str, FloatFormat or dtype
        Target format (see :func:`fp8sim.get_format`).
    rounding : RoundingMode or str
        ``nearest_even`` (default), ``nearest_away``, ``toward_zero``,
        ``upward``, ``downward``, ``to_odd`` or ``stochastic``.
    overflow : Overflow, str or None
        ``saturate``, ``infinity`` or ``nan``; ``None`` follows the format's
        convention (ml_dtypes' behaviour).  See the module notes.
    rng : numpy.random.Generator or int, optional
        Source of randomness for stochastic rounding (required there).  One
        draw per element in C order (``rng.random`` when ``sr_bits`` is
        None, ``rng.integers(0, 2**sr_bits)`` otherwise), in chunks of
        ``QUANTIZE_CHUNK`` elements; with ``sr_bits=None`` rare values whose
        remainder has bits below 2**-53 take further draws (after their
        chunk's) so the probability is exact.
    sr_bits : int, optional
        Stochastic rounding with this many random bits: the remainder below
        the last kept bit is truncated to ``sr_bits`` bits ``f`` and the
        value rounds away from zero when ``f + r >= 2**sr_bits`` for a
        uniform ``r`` in ``[0, 2**sr_bits)``.  ``None``: exact
        probability (the value rounds away from zero with probability equal
        to its distance from the lower neighbour, in units of the spacing).
    subnormals : bool
        ``False`` flushes results below the smallest normal to zero.

    Returns
    -------
    numpy.ndarray
        float64 values, each exactly representable in ``fmt`` (or +-Inf/NaN
        where the format has them), same shape as ``x``.

    Examples
    --------
    >>> import fp8sim
    >>> fp8sim.quantize([0.3, 464.0, 500.0, -1e-4], "e4m3").tolist()
    [0.3125, 448.0, nan, -0.0]
    >>> fp8sim.quantize(500.0, "e4m3", overflow="saturate")
    array(448.)
    >>> fp8sim.quantize([1.1, -1.1], "e5m2", "toward_zero")
    array([ 1., -1.])
    """
    fmt = get_format(fmt)
    mode = _enum_value(RoundingMode, rounding, "rounding")
    policy = resolve_overflow(fmt, overflow)
    subnormals = check_bool(subnormals, "subnormals")
    if mode is RoundingMode.STOCHASTIC:
        if rng is None:
            raise ValueError("rounding='stochastic' needs rng (a numpy.random.Generator or an int seed)")
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        if sr_bits is not None and (
            isinstance(sr_bits, bool) or not isinstance(sr_bits, (int, np.integer)) or not 1 <= sr_bits <= 53
        ):
            raise ValueError(f"sr_bits must be None or an int in 1..53, got {sr_bits!r}")
    elif sr_bits is not None:
        raise ValueError("sr_bits applies only to rounding='stochastic'")

    arr = to_array(x, "x")
    shape = arr.shape
    flat = arr.reshape(-1)
    if flat.size <= QUANTIZE_CHUNK:
        return _quantize_flat(flat, fmt, mode, policy, rng, sr_bits, subnormals).reshape(shape)
    # bounded memory: the output plus one chunk's temporaries, whatever the mode
    out = np.empty(flat.size, np.float64)
    for i in range(0, flat.size, QUANTIZE_CHUNK):
        out[i:i + QUANTIZE_CHUNK] = _quantize_flat(flat[i:i + QUANTIZE_CHUNK], fmt, mode, policy, rng, sr_bits,
                                                   subnormals)
    return out.reshape(shape)


#: elements rounded at a time; every mode's temporaries are a small multiple of one chunk
QUANTIZE_CHUNK = 1 << 20

#: formats whose float32 -> format cast in NumPy / ml_dtypes is correctly rounded (nearest-even, Inf on
#: overflow): quantize takes it for float32 input in that mode
_NATIVE_FROM_F32 = {"bfloat16": FloatFormat(8, 7, name="bfloat16"), "float16": FloatFormat(5, 10, name="float16")}


def _quantize_flat(arr, fmt, mode, policy, rng, sr_bits, subnormals):
    """quantize() of a 1-D chunk (validated parameters)."""
    if (mode is RoundingMode.NEAREST_EVEN and arr.dtype == np.float32 and fmt.name in _NATIVE_FROM_F32
            and fmt == _NATIVE_FROM_F32[fmt.name] and policy is Overflow.INFINITY and subnormals):
        # NumPy's float32 -> float16 and ml_dtypes' float32 -> bfloat16 casts round once, to nearest-even,
        # with IEEE overflow to Inf and gradual underflow: exactly this mode (tests compare every case)
        with np.errstate(invalid="ignore", over="ignore"):
            return arr.astype(fmt.ml_dtype).astype(np.float64)
    if mode is RoundingMode.NEAREST_EVEN and arr.dtype == np.float32 and _fast_path_ok(fmt, np.float32):
        values, inexact = arr, None  # rounded in float32 below, exactly
    else:
        values, inexact = as_float64(arr)
    draws = None
    if mode is RoundingMode.STOCHASTIC:
        draws = rng.random(values.size) if sr_bits is None else rng.integers(0, 2**sr_bits, values.size)
    nan_in = np.isnan(values)
    if nan_in.any() and not fmt.has_nan:
        raise ValueError(f"x holds {int(nan_in.sum())} NaN value(s) but {fmt!r} has no NaN encoding")

    if mode is RoundingMode.NEAREST_EVEN and _fast_path_ok(fmt, values.dtype):
        out = _quantize_rne_fast(values, fmt, policy)
    else:
        out = _quantize_general(values, fmt, mode, policy, draws, sr_bits, rng)
    if not (fmt.has_zero and fmt.signed and fmt.has_negative_zero and subnormals):
        with np.errstate(invalid="ignore"):  # signalling NaNs warn when cast
            values = values.astype(np.float64, copy=False)
        out = _finish(values, out, fmt, subnormals)
    if inexact is not None:
        from . import reference

        for i in np.flatnonzero(inexact):
            out[i] = reference.quantize_scalar(
                arr[i], fmt, mode.value, policy.value,
                draw=None if draws is None else draws[i], sr_bits=sr_bits, subnormals=subnormals,
            )
    return out


def _fast_path_ok(fmt, dtype):
    """Whether round-to-nearest-even can use the float-addition trick in ``dtype``."""
    finfo = np.finfo(dtype)
    frac_bits = finfo.nmant
    return (
        fmt.mantissa_bits <= frac_bits - 1
        and fmt.emax + 1 - fmt.mantissa_bits + frac_bits <= finfo.maxexp - 1
        and fmt.emin - fmt.mantissa_bits + frac_bits >= finfo.minexp
    )


def _quantize_rne_fast(x, fmt, policy):
    """Round-to-nearest-even by letting the FPU's own addition do the rounding.

    For ``a = |x|`` in a binade with spacing ``q`` (``q`` from the exponent
    clamped to ``[emin, emax + 1]``), ``(a + C) - C`` with
    ``C = q * 2**p`` (``p`` = fraction bits of ``x``'s dtype) lands ``a`` on a
    multiple of ``q`` with ties to even: the sum lies in ``[2**p q, 2**(p+1) q)``,
    whose spacing is exactly ``q``.  float32 inputs are rounded in float32.
    """
    uint = np.uint32 if x.dtype == np.float32 else np.uint64
    p = np.finfo(x.dtype).nmant
    ebias = np.finfo(x.dtype).maxexp - 1
    a = np.abs(x)
    b = a.view(uint) >> uint(p)
    np.clip(b, fmt.emin + ebias, fmt.emax + 1 + ebias, out=b)
    b += uint(p - fmt.mantissa_bits)
    b <<= uint(p)
    big = b.view(x.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        r = a + big
        r -= big
        over = r > fmt.max
    if over.any():
        r[over] = {Overflow.SATURATE: fmt.max, Overflow.INFINITY: np.inf, Overflow.NAN: np.nan}[policy]
    r = np.copysign(r, x)
    with np.errstate(invalid="ignore"):
        return r.astype(np.float64, copy=False)


def _quantize_general(x, fmt, mode, policy, draws, sr_bits, rng):
    with np.errstate(invalid="ignore", over="ignore"):
        return _quantize_general_body(x, fmt, mode, policy, draws, sr_bits, rng)


def _quantize_general_body(x, fmt, mode, policy, draws, sr_bits, rng):
    m = fmt.mantissa_bits
    a = np.abs(x)
    neg = np.signbit(x)
    _, e = np.frexp(a)
    # exponent clamped to [emin, emax + 1]: beyond that every value overflows anyway
    qexp = np.clip(e.astype(np.int64) - 1, fmt.emin, fmt.emax + 1) - m
    y = np.ldexp(a, -qexp)
    t = np.floor(y)
    frac = y - t
    if mode is RoundingMode.NEAREST_EVEN:
        inc = (frac > 0.5) | ((frac == 0.5) & (np.fmod(t, 2) == 1))
    elif mode is RoundingMode.NEAREST_AWAY:
        inc = frac >= 0.5
    elif mode is RoundingMode.TOWARD_ZERO:
        inc = np.zeros(x.shape, bool)
    elif mode is RoundingMode.UPWARD:
        inc = (frac > 0) & ~neg
    elif mode is RoundingMode.DOWNWARD:
        inc = (frac > 0) & neg
    elif mode is RoundingMode.TO_ODD:
        inc = (frac > 0) & (np.fmod(t, 2) == 0)
    else:
        inc = _stochastic_increment(frac, draws, sr_bits, rng)
    r = np.ldexp(t + inc, qexp)
    if mode in (RoundingMode.TOWARD_ZERO, RoundingMode.TO_ODD):
        toward_zero = True
    elif mode is RoundingMode.UPWARD:
        toward_zero = neg
    elif mode is RoundingMode.DOWNWARD:
        toward_zero = ~neg
    else:
        toward_zero = None
    return _apply_overflow(x, r, fmt, policy, toward_zero)


def _stochastic_increment(frac, draws, sr_bits, rng):
    frac = np.where(np.isfinite(frac), frac, 0.0)
    if sr_bits is not None:
        kept = np.floor(np.ldexp(frac, sr_bits)).astype(np.int64)
        return (draws + kept) >= 2**sr_bits
    # Exact probability: compare the 53-bit draw with frac; where the draw equals
    # frac's top 53 bits and frac has lower bits, a fresh draw decides against them.
    inc = np.zeros(frac.shape, bool)
    idx = np.arange(frac.size)
    rest, u = frac, draws
    while idx.size:
        r53 = np.ldexp(rest, 53)
        k = np.ldexp(u, 53)
        fl = np.floor(r53)
        inc[idx] = k < fl
        more = (k == fl) & (r53 != fl)
        idx, rest = idx[more], (r53 - fl)[more]
        u = rng.random(idx.size)
    return inc


def _apply_overflow(x, r, fmt, policy, toward_zero):
    with np.errstate(invalid="ignore"):
        over = r > fmt.max
    if policy is Overflow.SATURATE:
        over_val = fmt.max
    elif policy is Overflow.INFINITY:
        over_val = np.inf
    else:
        over_val = np.nan
    if over.any():
        if toward_zero is None:
            r = np.where(over, over_val, r)
        else:
            r = np.where(over, np.where(toward_zero, fmt.max, over_val), r)
    if toward_zero is not None:
        inf_in = np.isinf(x)  # exact infinities are not rounded toward zero
        if inf_in.any():
            r = np.where(inf_in, over_val, r)
    return np.copysign(r, x)


def _finish(x, r, fmt, subnormals):
    """Flush, signed zeros, formats without zero or sign."""
    if not subnormals:
        with np.errstate(invalid="ignore"):
            r = np.where(np.abs(r) < fmt.smallest_normal, np.copysign(0.0, r), r)
    if not fmt.has_zero:
        with np.errstate(invalid="ignore"):
            r = np.where((r == 0) & (x != 0), fmt.smallest_subnormal, r)
        r = np.where(x == 0, np.nan, r)
    if not fmt.signed:
        negative = np.signbit(x) & ~np.isnan(x) & (x != 0)
        if negative.any():
            if not fmt.has_nan:
                raise ValueError(
                    f"x holds {int(negative.sum())} negative value(s); unsigned {fmt!r} cannot hold them"
                )
            r = np.where(negative, np.nan, r)
    if not fmt.has_negative_zero:
        r = np.where(r == 0, 0.0, r)
    return r
