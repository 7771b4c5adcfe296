"""Helpers for other projects' tests: bitwise comparison, ulp distance, golden vectors.

A CUDA kernel, a quantization library or a training framework checks its
outputs against fp8sim bit for bit::

    from fp8sim.testing import assert_bitwise_equal
    assert_bitwise_equal(my_kernel(a, b), fp8sim.matmul(a, b, unit="H100:e4m3"), fmt="float32")

Golden files (:func:`write_golden`, :func:`read_golden`) carry inputs as
codes and outputs as bit patterns, so a C++ or CUDA project can read them
without fp8sim; their layout is documented in :func:`write_golden`.
"""

from __future__ import annotations

import json

import numpy as np

from .codec import decode, encode
from .formats import get_format
from .rounding import as_float64

__all__ = ["assert_bitwise_equal", "ulp_distance", "bit_patterns", "write_golden", "read_golden", "GOLDEN_VERSION"]

GOLDEN_VERSION = 1


def bit_patterns(x, fmt=None) -> np.ndarray:
    """Bit patterns of ``x``: its codes in ``fmt``, or (no ``fmt``) the float64 bits.

    An integer array is taken to hold codes already.

    >>> bit_patterns([1.0, -0.0], "e4m3").tolist()
    [56, 128]
    """
    arr = np.asarray(x)
    if fmt is None:
        v, _ = as_float64(arr)
        return v.view(np.uint64)
    fmt = get_format(fmt)
    if arr.dtype.kind in "iu":
        return arr.astype(fmt.code_dtype)
    return encode(arr, fmt)


def _ordinal(codes, fmt):
    """Codes mapped to integers ordered like their values (+0 and -0 both 0)."""
    c = np.asarray(codes).astype(np.int64)
    if not fmt.signed:
        return c
    mag_bits = fmt.bits - 1
    mag = c & ((1 << mag_bits) - 1)
    return np.where(c >> mag_bits, -mag, mag)


def ulp_distance(x, y, fmt) -> np.ndarray:
    """How many representable values of ``fmt`` lie between ``x`` and ``y`` (0: equal).

    ``x`` and ``y`` are values representable in ``fmt`` (or ml_dtypes arrays,
    or integer codes); +0 and -0 are 0 apart, Inf is one step beyond the
    largest finite value, NaN gives NaN.

    >>> ulp_distance([1.0, 448.0, -0.0], [1.125, -448.0, 0.0], "e4m3").tolist()
    [1.0, 252.0, 0.0]
    """
    fmt = get_format(fmt)
    cx, cy = bit_patterns(x, fmt), bit_patterns(y, fmt)
    d = np.abs(_ordinal(cx, fmt) - _ordinal(cy, fmt)).astype(np.float64)
    nan = np.isnan(decode(cx, fmt)) | np.isnan(decode(cy, fmt))
    return np.where(nan, np.nan, d)


def _native_bits(arr):
    arr = np.asarray(arr)
    if arr.dtype.kind == "f" or arr.dtype.name.startswith(("float", "bfloat")):
        return arr.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[arr.dtype.itemsize])
    return None


def assert_bitwise_equal(actual, expected, fmt=None, *, max_report=5):
    """Raise ``AssertionError`` unless ``actual`` and ``expected`` are equal bit for bit.

    Parameters
    ----------
    actual, expected : array_like
        Values (float arrays, ml_dtypes arrays) or, with ``fmt``, integer
        codes.  Shapes must match.
    fmt : str or FloatFormat, optional
        Compare as codes of this format (values must be representable).
        Without it, arrays of the same floating dtype are compared in that
        dtype's bits, anything else as float64 bits.  Signed zeros and NaN
        encodings count either way.
    max_report : int
        How many differing positions the message lists.

    The message says how many values differ, where the first ones are,
    their bit patterns and their distance in units in the last place.

    Examples
    --------
    >>> import numpy as np
    >>> assert_bitwise_equal(np.float32([1.0, -0.0]), np.float32([1.0, -0.0]))
    >>> assert_bitwise_equal([1.0, 0.0], [1.0, -0.0], fmt="e4m3")
    Traceback (most recent call last):
    ...
    AssertionError: 1 of 2 values differ (fmt float8_e4m3fn)
      [1]: actual 0x00 (0.0)  expected 0x80 (-0.0)  0 ulp apart
    """
    a_arr, e_arr = np.asarray(actual), np.asarray(expected)
    if a_arr.shape != e_arr.shape:
        raise AssertionError(f"shapes differ: actual {a_arr.shape}, expected {e_arr.shape}")
    if fmt is not None:
        fmt = get_format(fmt)
        a_bits, e_bits = bit_patterns(a_arr, fmt), bit_patterns(e_arr, fmt)
        a_val, e_val = decode(a_bits, fmt), decode(e_bits, fmt)
        label = fmt.name
        width = (fmt.bits + 3) // 4
    else:
        a_bits, e_bits = _native_bits(a_arr), _native_bits(e_arr)
        if a_bits is None or e_bits is None or a_arr.dtype != e_arr.dtype:
            a_bits, e_bits = bit_patterns(a_arr), bit_patterns(e_arr)
            label = "float64"
        else:
            label = str(a_arr.dtype)
        a_val, e_val = as_float64(a_arr)[0], as_float64(e_arr)[0]
        width = a_bits.dtype.itemsize * 2
    bad = a_bits != e_bits
    if not bad.any():
        return
    idx = np.argwhere(bad)[:max_report]
    ulp_fmt = fmt if fmt is not None else get_format(label) if label in ("float16", "float32", "bfloat16") else None
    lines = [f"{int(bad.sum())} of {bad.size} values differ (fmt {label})"]
    for i in idx:
        i = tuple(int(v) for v in i)
        if ulp_fmt is not None:
            dist = ulp_distance(np.asarray(a_val[i]), np.asarray(e_val[i]), ulp_fmt)
        else:
            dist = _ulp_distance_f64(a_val[i], e_val[i])
        dist_txt = "NaN" if np.isnan(dist) else f"{int(dist)}"
        lines.append(
            f"  {list(i)}: actual 0x{int(a_bits[i]):0{width}x} ({float(a_val[i])!r})  "
            f"expected 0x{int(e_bits[i]):0{width}x} ({float(e_val[i])!r})  {dist_txt} ulp apart"
        )
    raise AssertionError("\n".join(lines))


def _ulp_distance_f64(x, y):
    cx = np.asarray(x, np.float64).view(np.int64)
    cy = np.asarray(y, np.float64).view(np.int64)

    def ordn(c):
        mag = c & np.int64(0x7FFFFFFFFFFFFFFF)
        return np.where(c < 0, -mag, mag)

    with np.errstate(over="ignore"):
        d = np.abs((ordn(cx) - ordn(cy)).astype(np.float64))
    nan = np.isnan(np.asarray(x, np.float64)) | np.isnan(np.asarray(y, np.float64))
    return np.where(nan, np.nan, d)


# --- golden vectors ------------------------------------------------------------------------------

def write_golden(path, arrays: dict, config: dict):
    """Write a golden-vector file (``numpy.savez_compressed``).

    Layout (version 1), readable with any NPZ reader (a ZIP of ``.npy`` files):

    ``a_codes`` (M, K), ``b_codes`` (K, N)
        The inputs as codes of ``config["in_format"]`` and
        ``config["b_format"]`` (uint8 for 8-bit formats, uint16, uint32).
    ``d_bits`` (M, N)
        The expected output as bit patterns of ``config["out_format"]``
        (uint32 for float32, uint16 for bfloat16 / float16).
    ``a_scale_bits``, ``b_scale_bits`` (optional)
        Block scales as codes of ``config["a_scale_format"]`` /
        ``config["b_scale_format"]``, one per tile of ``config["a_tile"]`` /
        ``config["b_tile"]``.
    ``config``
        A uint8 array holding UTF-8 JSON: ``version``, ``unit`` (name and
        every BlockFMA parameter), ``shape`` [M, N, K], ``seed``,
        ``promote_every``, ``scaling``, the formats above, and ``command``.
    """
    payload = dict(arrays)
    payload["config"] = np.frombuffer(json.dumps({"version": GOLDEN_VERSION, **config}).encode(), np.uint8)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **payload)


def read_golden(path):
    """(arrays, config) of a golden file; ``ValueError`` if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable golden file ({exc.__class__.__name__})") from None
    if "config" not in arrays or "d_bits" not in arrays:
        raise ValueError(f"{path}: not a golden file (no config or d_bits)")
    try:
        config = json.loads(arrays.pop("config").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: corrupt config") from None
    if config.get("version") != GOLDEN_VERSION:
        raise ValueError(f"{path}: golden version {config.get('version')!r}, this fp8sim reads {GOLDEN_VERSION}")
    return arrays, config
