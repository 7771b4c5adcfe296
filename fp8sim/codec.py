"""Bit patterns: :func:`encode` values to codes, :func:`decode` codes to values.

The field layout is sign | exponent | mantissa, most significant bit first,
as in IEEE 754-2019 section 3.4 and the OCP OFP8 and MX specifications
(without a sign field for unsigned formats).  Codes are the smallest
unsigned integer dtype that holds them: uint8 up to 8 bits, then uint16 and
uint32.  :func:`to_ml_dtypes` and :func:`from_ml_dtypes` move values to and
from ml_dtypes arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .formats import FloatFormat, FormatLike, Specials, get_format
from .rounding import as_float64, to_array

__all__ = ["encode", "decode", "to_ml_dtypes", "from_ml_dtypes"]


def _fields(fmt: FloatFormat):
    e, m = fmt.exponent_bits, fmt.mantissa_bits
    return e, m, (1 << e) - 1, (1 << m) - 1


def decode(codes: ArrayLike, fmt: FormatLike) -> np.ndarray:
    """Values of bit patterns, as float64.

    Parameters
    ----------
    codes : array_like of int
        Bit patterns, each in ``[0, 2**fmt.bits)``.
    fmt : str, FloatFormat or dtype

    Examples
    --------
    >>> import fp8sim
    >>> fp8sim.decode([0x01, 0x38, 0x7E, 0x7F, 0x80], "e4m3").tolist()
    [0.001953125, 1.0, 448.0, nan, -0.0]
    """
    fmt = get_format(fmt)
    arr = to_array(codes, "codes")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"codes must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or int(arr.max()) >= 1 << fmt.bits):
        raise ValueError(f"codes must be in [0, 2**{fmt.bits}) for {fmt!r}")
    c = arr.astype(np.uint64)  # unsigned: formats up to 64 bits
    e, m, emask, mmask = _fields(fmt)
    exp = ((c >> np.uint64(m)) & np.uint64(emask)).astype(np.int64)
    man = c & np.uint64(mmask)
    sign = ((c >> np.uint64(e + m)) & np.uint64(1)).astype(bool) if fmt.signed else np.zeros(c.shape, bool)
    if fmt.specials is Specials.E8M0:
        mag = np.ldexp(1.0, exp - fmt.bias)
        nan = exp == emask
    else:
        sub = exp == 0
        sig = man.astype(np.float64) + np.where(sub, 0.0, float(1 << m))  # exact: at most 53 bits
        with np.errstate(over="ignore"):  # the Inf/NaN exponent code, replaced below
            mag = np.ldexp(sig, np.where(sub, fmt.emin, exp - fmt.bias) - m)
        if fmt.specials is Specials.IEEE:
            top = exp == emask
            mag = np.where(top & (man == 0), np.inf, mag)
            nan = top & (man != 0)
        elif fmt.specials is Specials.FN:
            nan = (exp == emask) & (man == mmask)
        elif fmt.specials is Specials.FNUZ:
            nan = sign & (exp == 0) & (man == 0)
        else:
            nan = np.zeros(c.shape, bool)
    mag = np.where(nan, np.nan, mag)
    out = np.where(sign, -mag, mag)
    if fmt.specials is Specials.FNUZ:
        out = np.where(nan, np.nan, out)  # the single NaN has no sign
    return out


def encode(x: ArrayLike, fmt: FormatLike) -> np.ndarray:
    """Bit patterns of values that are exactly representable in ``fmt``.

    NaN becomes the format's canonical NaN (quiet, with the value's sign
    where the format has signed NaNs), as ml_dtypes encodes it.  A value the
    format cannot hold raises ``ValueError``: round it with
    :func:`fp8sim.quantize` first.  An ml_dtypes array of the same format is
    returned as its own bit patterns.

    Examples
    --------
    >>> import fp8sim
    >>> fp8sim.encode([1.0, -0.0, 448.0, float("nan")], "e4m3")
    array([ 56, 128, 126, 127], dtype=uint8)
    """
    fmt = get_format(fmt)
    arr = to_array(x, "x")
    if fmt.ml_dtype is not None and arr.dtype == fmt.ml_dtype:
        return arr.view(fmt.code_dtype).copy()
    v, inexact = as_float64(arr)
    if inexact is not None:
        raise ValueError(f"x holds {int(inexact.sum())} value(s) that float64 cannot hold exactly")
    e, m, emask, mmask = _fields(fmt)
    a = np.abs(v)
    u64 = np.uint64
    sign = np.signbit(v).astype(u64)
    with np.errstate(invalid="ignore", over="ignore"):
        _, ex = np.frexp(a)
        ex = ex.astype(np.int64) - 1
        normal = a >= fmt.smallest_normal
        expf = np.where(normal, ex + fmt.bias, 0)
        man = np.where(normal, np.ldexp(a, m - ex) - float(1 << m), np.ldexp(a, m - fmt.emin))
        man = np.where(np.isfinite(man) & (man >= 0) & (man < 2.0**m), man, 0).astype(u64)
    expf = np.clip(expf, 0, emask).astype(u64)
    nan = np.isnan(v)
    if fmt.specials is Specials.E8M0:
        code = expf
        code = np.where(nan, u64(emask), code)
    else:
        code = (expf << u64(m)) | (man & u64(mmask))
        inf = np.isinf(v)
        if fmt.specials is Specials.IEEE:
            code = np.where(inf, u64(emask << m), code)
            code = np.where(nan, u64((emask << m) | (1 << (m - 1))), code)
        elif fmt.specials is Specials.FN:
            code = np.where(nan, u64((emask << m) | mmask), code)
        if fmt.signed:
            code = code | (sign << u64(e + m))
        if fmt.specials is Specials.FNUZ:
            code = np.where(nan | (a == 0), np.where(nan, u64(1 << (fmt.bits - 1)), u64(0)), code)
    codes = np.asarray(code, u64).astype(fmt.code_dtype)
    back = decode(codes, fmt)
    want = v if fmt.has_negative_zero else v + 0.0
    bad = ~((back.view(np.uint64) == want.view(np.uint64)) | (np.isnan(back) & nan))
    if bad.any():
        first = v[bad].reshape(-1)[:3]
        raise ValueError(
            f"x holds {int(bad.sum())} value(s) not representable in {fmt!r} (first: {first.tolist()}); "
            "round them with fp8sim.quantize() first"
        )
    return codes


def to_ml_dtypes(x: ArrayLike, fmt: FormatLike) -> np.ndarray:
    """An ml_dtypes (or numpy) array of ``fmt`` holding the values ``x``.

    >>> import fp8sim
    >>> fp8sim.codec.to_ml_dtypes([1.5, -2.0], "e5m2").dtype
    dtype(float8_e5m2)
    """
    fmt = get_format(fmt)
    if fmt.ml_dtype is None:
        raise ValueError(f"ml_dtypes has no dtype for {fmt!r}")
    return encode(x, fmt).view(fmt.ml_dtype)


def from_ml_dtypes(arr: ArrayLike) -> np.ndarray:
    """float64 values of an ml_dtypes (or numpy float) array, exactly.

    >>> import ml_dtypes, numpy as np, fp8sim
    >>> fp8sim.codec.from_ml_dtypes(np.array([0.1], ml_dtypes.float8_e4m3fn))
    array([0.1015625])
    """
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fV" and not arr.dtype.name.startswith(("float", "bfloat")):
        raise TypeError(f"expected an ml_dtypes or numpy float array, got dtype {arr.dtype}")
    return arr.astype(np.float64)
