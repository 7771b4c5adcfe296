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
import os
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .codec import decode, encode
from .formats import FloatFormat, FormatLike, Specials, get_format
from .rounding import to_array

__all__ = [
    "assert_bitwise_equal", "compare_bitwise", "Comparison", "ulp_distance", "bit_patterns",
    "write_golden", "read_golden", "read_npy", "GOLDEN_VERSION", "GOLDEN_MAX_BYTES",
]

GOLDEN_VERSION = 1

#: IEEE binary64, for float64 arrays compared in their own bits
FLOAT64 = FloatFormat(11, 52, name="float64")


def _format_of_dtype(dt):
    """The FloatFormat of a floating dtype (numpy or ml_dtypes), or None."""
    if dt == np.float64:
        return FLOAT64
    if dt.kind == "f" and dt.itemsize > 8:
        raise TypeError(f"{dt} (long double) has no portable bit layout; convert it to a format first")
    try:
        fmt = get_format(dt.name)
    except (TypeError, ValueError):
        return None
    if fmt.ml_dtype is None or fmt.ml_dtype != dt:
        return None
    return fmt


def _code_view(arr, itemsize):
    return arr.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize])


def _canonical_nan_bits(dt):
    """The bit patterns NumPy / ml_dtypes give a quiet NaN of dtype ``dt`` (either sign)."""
    with np.errstate(invalid="ignore"):
        return _code_view(np.array([np.nan, -np.nan]).astype(dt), dt.itemsize).astype(np.uint64)


def _bits_in(arr, fmt, name):
    """uint64 bit patterns of ``arr`` as codes of ``fmt``; never through a lossy conversion.

    Integers are codes and must lie in ``[0, 2**fmt.bits)``.  A float array of
    ``fmt``'s own dtype gives its own bits.  A float array of another dtype
    holds values: each must be representable in ``fmt``, and a NaN must be
    its dtype's plain quiet NaN (a payload cannot be carried into another
    format, so it is an error rather than a guess).
    """
    kind = arr.dtype.kind
    if kind in "iu":
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << fmt.bits):
            bad = (arr < 0) | (arr.astype(np.uint64) >= np.uint64(1 << fmt.bits) if fmt.bits < 64 else arr < 0)
            first = arr[bad].reshape(-1)[:3].tolist()
            raise ValueError(f"{name} holds {int(bad.sum())} integer(s) outside the codes of {fmt.name or repr(fmt)}, "
                             f"[0, 2**{fmt.bits}) (first: {first}); codes are never cut to the format's width")
        return arr.astype(np.uint64)
    if kind == "V" and arr.dtype.names is None and _format_of_dtype(arr.dtype) is None:
        if arr.dtype.itemsize != fmt.code_dtype.itemsize:
            raise TypeError(f"{name}: raw {arr.dtype} items do not hold {fmt.name} codes "
                            f"({fmt.code_dtype.itemsize} bytes)")
        return _bits_in(_code_view(arr, arr.dtype.itemsize), fmt, name)
    own = _format_of_dtype(arr.dtype) if kind in "fV" else None
    if own is None and kind != "f":
        raise TypeError(f"{name} must be integer codes or floating-point values, got dtype {arr.dtype}")
    if own is not None and own == fmt:
        return _bits_in(_code_view(arr, arr.dtype.itemsize), fmt, name)
    # values of another floating dtype: exact conversion, canonical NaNs only
    with np.errstate(invalid="ignore"):
        nan = np.isnan(arr.astype(np.float64))
    if nan.any():
        raw = _code_view(arr, arr.dtype.itemsize).astype(np.uint64)
        odd = nan & ~np.isin(raw, _canonical_nan_bits(arr.dtype))
        if odd.any():
            raise ValueError(f"{name} holds NaN payloads of {arr.dtype} that {fmt.name} cannot be shown to carry; "
                             f"pass {name} in {fmt.name}'s own dtype or as integer codes")
    if fmt == FLOAT64:
        with np.errstate(invalid="ignore"):
            return arr.astype(np.float64).view(np.uint64)
    return encode(arr, fmt).astype(np.uint64)


def _nan_bits(bits, fmt):
    """Which uint64 codes of ``fmt`` are NaN."""
    u = np.uint64
    e, m = fmt.exponent_bits, fmt.mantissa_bits
    exp = (bits >> u(m)) & u((1 << e) - 1)
    man = bits & u((1 << m) - 1)
    top = exp == u((1 << e) - 1)
    if fmt.specials is Specials.IEEE:
        return top & (man != 0)
    if fmt.specials is Specials.FN:
        return top & (man == u((1 << m) - 1))
    if fmt.specials is Specials.FNUZ:
        return bits == u(1 << (fmt.bits - 1))
    if fmt.specials is Specials.E8M0:
        return top
    return np.zeros(bits.shape, bool)


def _values(bits, fmt):
    if fmt == FLOAT64:
        return bits.view(np.float64)
    return decode(bits.astype(fmt.code_dtype), fmt)


def _ordinal(bits, fmt):
    """Codes mapped to int64 integers ordered like their values (+0 and -0 both 0)."""
    c = np.asarray(bits).astype(np.uint64)
    if not fmt.signed:
        return c.astype(np.int64)
    mag = (c & np.uint64((1 << (fmt.bits - 1)) - 1)).astype(np.int64)
    return np.where((c >> np.uint64(fmt.bits - 1)) != 0, -mag, mag)


def _distance(oa, ob):
    """|oa - ob| for int64 arrays, exact as uint64 (the difference can exceed int64)."""
    ua, ub = oa.view(np.uint64), ob.view(np.uint64)
    return np.where(oa >= ob, ua - ub, ub - ua)


def bit_patterns(x: ArrayLike, fmt: FormatLike | None = None) -> np.ndarray:
    """Bit patterns of ``x`` as codes of ``fmt`` (uint64 for formats over 32 bits).

    Integers are codes already and must lie in ``[0, 2**fmt.bits)``
    (``ValueError`` otherwise: a code is never cut to the format's width).
    A float array of ``fmt``'s own dtype (float32 for ``"float32"``, an
    ml_dtypes array) gives its own bits, NaN payloads included; floats of
    another dtype are values, each representable in ``fmt``.  Without
    ``fmt``: a float array's own bits in its own dtype.

    >>> bit_patterns([1.0, -0.0], "e4m3").tolist()
    [56, 128]
    >>> bit_patterns([300], "e4m3")
    Traceback (most recent call last):
    ...
    ValueError: x holds 1 integer(s) outside the codes of float8_e4m3fn, [0, 2**8) (first: [300]); codes are never cut to the format's width
    """
    arr = to_array(x, "x")
    if fmt is None:
        own = _format_of_dtype(arr.dtype) if arr.dtype.kind in "fV" else None
        if own is None:
            raise TypeError(f"bit_patterns without fmt needs a floating-point array, got dtype {arr.dtype}")
        return _code_view(arr, arr.dtype.itemsize).copy()
    fmt = get_format(fmt)
    return _bits_in(arr, fmt, "x").astype(fmt.code_dtype)


def ulp_distance(x: ArrayLike, y: ArrayLike, fmt: FormatLike) -> np.ndarray:
    """How many representable values of ``fmt`` lie between ``x`` and ``y`` (0: equal).

    ``x`` and ``y`` are values representable in ``fmt`` (or arrays of its
    own dtype, or integer codes); +0 and -0 are 0 apart, Inf is one step
    beyond the largest finite value, NaN gives NaN.  Returned as float64.

    >>> ulp_distance([1.0, 448.0, -0.0], [1.125, -448.0, 0.0], "e4m3").tolist()
    [1.0, 252.0, 0.0]
    """
    fmt = get_format(fmt)
    cx, cy = _bits_in(to_array(x, "x"), fmt, "x"), _bits_in(to_array(y, "y"), fmt, "y")
    d = _distance(_ordinal(cx, fmt), _ordinal(cy, fmt)).astype(np.float64)
    return np.where(_nan_bits(cx, fmt) | _nan_bits(cy, fmt), np.nan, d)


@dataclass
class Comparison:
    """The outcome of :func:`compare_bitwise`.

    Attributes
    ----------
    label : str
        What the values were compared as (a format name, or ``"integers"``).
    size, n_differ : int
        Values compared, and how many differ in their bits.
    nan_only : bool
        Every difference is between two NaN encodings.
    positions : list of tuple
        The first differing positions (up to ``max_report``).
    lines : list of str
        One report line per listed position.
    max_ulp : int or None
        Largest distance, in ulps of the format (integer steps for integers),
        among differing pairs that are both numbers; ``None`` when none are.
    histogram : dict
        Differing pairs by distance: ``"0"`` (signed zeros), ``"1"``,
        ``"2"``, ``"3-4"``, ``"5-8"`` ... and ``"NaN"`` (a NaN on either side).
    """

    label: str
    size: int
    n_differ: int = 0
    nan_only: bool = False
    positions: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    max_ulp: int | None = None
    histogram: dict = field(default_factory=dict)

    @property
    def equal(self) -> bool:
        return self.n_differ == 0

    def message(self) -> str:
        head = f"{self.n_differ} of {self.size} values differ (fmt {self.label})"
        if self.nan_only:
            head += "; the only differences are NaN encodings (equal_nan=True treats them as equal)"
        return "\n".join([head] + self.lines)

    def as_dict(self) -> dict:
        return {"label": self.label, "size": self.size, "n_differ": self.n_differ, "nan_only": self.nan_only,
                "max_ulp": self.max_ulp, "histogram": self.histogram,
                "positions": [list(p) for p in self.positions]}


def _bucket(d):
    d = int(d)
    if d <= 2:
        return str(d)
    hi = 1 << (d - 1).bit_length()
    return f"{hi // 2 + 1}-{hi}"


def _int_compare(a_arr, e_arr):
    """Exact equality and distance of integer arrays of any integer dtypes."""
    ua, ue = a_arr.astype(np.uint64), e_arr.astype(np.uint64)  # value mod 2**64
    na = a_arr < 0 if a_arr.dtype.kind == "i" else np.zeros(a_arr.shape, bool)
    ne = e_arr < 0 if e_arr.dtype.kind == "i" else np.zeros(e_arr.shape, bool)
    bad = (ua != ue) | (na != ne)
    return bad, ua, ue, na, ne


def compare_bitwise(actual: ArrayLike, expected: ArrayLike, fmt: FormatLike | None = None, *,
                    equal_nan: bool = False, max_report: int = 5) -> Comparison:
    """Compare two arrays bit for bit; see :func:`assert_bitwise_equal` for the rules.

    >>> import numpy as np
    >>> r = compare_bitwise(np.float32([1.0, 2.0]), np.float32([1.0, 2.0000002]))
    >>> r.n_differ, r.max_ulp, r.histogram
    (1, 1, {'1': 1})
    """
    a_arr, e_arr = to_array(actual, "actual"), to_array(expected, "expected")
    if a_arr.shape != e_arr.shape:
        raise AssertionError(f"shapes differ: actual {a_arr.shape}, expected {e_arr.shape}")
    for name, arr in (("actual", a_arr), ("expected", e_arr)):
        if arr.dtype.kind not in "iufV" or arr.dtype.names is not None:
            raise TypeError(f"{name} must be integer codes or floating-point values, got dtype {arr.dtype}")
    if fmt is None and a_arr.dtype.kind in "iu" and e_arr.dtype.kind in "iu":
        return _compare_ints(a_arr, e_arr, max_report)
    if fmt is None:
        fa = _format_of_dtype(a_arr.dtype) if a_arr.dtype.kind in "fV" else None
        fe = _format_of_dtype(e_arr.dtype) if e_arr.dtype.kind in "fV" else None
        if fa is None or fe is None or fa != fe:
            raise TypeError(
                f"actual is {a_arr.dtype}, expected is {e_arr.dtype}: without fmt both must be integers or both "
                "arrays of the same floating dtype; pass fmt= to say which format's bits to compare"
            )
        fmt = fa
    else:
        fmt = get_format(fmt)
    a_bits, e_bits = _bits_in(a_arr, fmt, "actual"), _bits_in(e_arr, fmt, "expected")
    a_nan, e_nan = _nan_bits(a_bits, fmt), _nan_bits(e_bits, fmt)
    bad = a_bits != e_bits
    if equal_nan:
        bad &= ~(a_nan & e_nan)
    out = Comparison(label=fmt.name or repr(fmt), size=int(bad.size), n_differ=int(bad.sum()))
    if not out.n_differ:
        return out
    either_nan = (a_nan | e_nan)[bad]
    out.nan_only = bool((a_nan & e_nan)[bad].all())
    dist = _distance(_ordinal(a_bits[bad], fmt), _ordinal(e_bits[bad], fmt))
    num = dist[~either_nan]
    if num.size:
        out.max_ulp = int(num.max())
        vals, counts = np.unique(num, return_counts=True)
        for v, n in zip(vals.tolist(), counts.tolist()):
            key = _bucket(v)
            out.histogram[key] = out.histogram.get(key, 0) + n
    if either_nan.any():
        out.histogram["NaN"] = int(either_nan.sum())
    width = (fmt.bits + 3) // 4
    a_val, e_val = _values(a_bits, fmt), _values(e_bits, fmt)
    for i in np.argwhere(bad)[:max_report]:
        i = tuple(int(v) for v in i)
        if a_nan[i] or e_nan[i]:
            txt = "NaN encodings differ" if a_nan[i] and e_nan[i] else "NaN vs a number"
        else:
            d = int(_distance(_ordinal(a_bits[i], fmt).reshape(1), _ordinal(e_bits[i], fmt).reshape(1))[0])
            txt = f"{d} ulp apart" + (" (signed zeros)" if d == 0 else "")
        out.positions.append(i)
        out.lines.append(f"  {list(i)}: actual 0x{int(a_bits[i]):0{width}x} ({float(a_val[i])!r})  "
                         f"expected 0x{int(e_bits[i]):0{width}x} ({float(e_val[i])!r})  {txt}")
    return out


def _compare_ints(a_arr, e_arr, max_report):
    bad, ua, ue, na, ne = _int_compare(a_arr, e_arr)
    out = Comparison(label="integers", size=int(bad.size), n_differ=int(bad.sum()))
    if not out.n_differ:
        return out
    diffs = [abs(int(a) - int(e)) for a, e in zip(a_arr[bad].tolist(), e_arr[bad].tolist())] \
        if out.n_differ <= 100_000 else None
    if diffs is not None:
        out.max_ulp = max(diffs)
        for d in diffs:
            key = _bucket(d)
            out.histogram[key] = out.histogram.get(key, 0) + 1
    for i in np.argwhere(bad)[:max_report]:
        i = tuple(int(v) for v in i)
        a, e = int(a_arr[i]), int(e_arr[i])
        out.positions.append(i)
        out.lines.append(f"  {list(i)}: actual {a} (0x{a & (2**64 - 1):x})  expected {e} (0x{e & (2**64 - 1):x})  "
                         f"{abs(a - e)} apart")
    return out


def assert_bitwise_equal(actual: ArrayLike, expected: ArrayLike, fmt: FormatLike | None = None, *,
                         equal_nan: bool = False, max_report: int = 5) -> None:
    """Raise ``AssertionError`` unless ``actual`` and ``expected`` are equal bit for bit.

    Parameters
    ----------
    actual, expected : array_like
        Values (float arrays, ml_dtypes arrays) or integer codes.  Shapes
        must match.  Masked arrays are refused (``TypeError``).
    fmt : str or FloatFormat, optional
        Compare as codes of this format.  Integers are codes and must lie in
        ``[0, 2**fmt.bits)`` (``ValueError`` otherwise; nothing is cut to
        the format's width).  An array of the format's own dtype is compared
        in its own bits (NaN payloads included); floats of another dtype
        are values, each representable in ``fmt``, NaN only as that dtype's
        plain NaN.  Without ``fmt``: two integer arrays are compared as
        exact integers, two arrays of the same floating dtype in that
        dtype's bits, and anything else is a ``TypeError`` asking for
        ``fmt``.  Nothing goes through float64 or a rounding.
    equal_nan : bool
        Treat every NaN encoding of the format as equal (CUDA writes
        0x7FFFFFFF, NumPy 0x7FC00000).  Off by default: an oracle compares
        bits.  The message says when NaN encodings are the only difference.
    max_report : int
        How many differing positions the message lists.

    The message says how many values differ, where the first ones are,
    their bit patterns and their distance in ulps of the format the values
    are in.

    Examples
    --------
    >>> import numpy as np
    >>> assert_bitwise_equal(np.float32([1.0, -0.0]), np.float32([1.0, -0.0]))
    >>> assert_bitwise_equal([1.0, 0.0], [1.0, -0.0], fmt="e4m3")
    Traceback (most recent call last):
    ...
    AssertionError: 1 of 2 values differ (fmt float8_e4m3fn)
      [1]: actual 0x00 (0.0)  expected 0x80 (-0.0)  0 ulp apart (signed zeros)
    >>> assert_bitwise_equal([0x138], [0x38], fmt="e4m3")
    Traceback (most recent call last):
    ...
    ValueError: actual holds 1 integer(s) outside the codes of float8_e4m3fn, [0, 2**8) (first: [312]); codes are never cut to the format's width
    """
    result = compare_bitwise(actual, expected, fmt, equal_nan=equal_nan, max_report=max_report)
    if not result.equal:
        raise AssertionError(result.message())


# --- golden vectors ------------------------------------------------------------------------------

def write_golden(path: str | os.PathLike, arrays: dict, config: dict) -> None:
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


#: the most a golden file may unpack to, in bytes, unless the caller allows more
GOLDEN_MAX_BYTES = 1 << 30


def regular_file(path: str | os.PathLike, what: str = "file") -> int:
    """``path`` if it names a regular file; ``ValueError`` for a FIFO, a device, a directory or nothing
    (so reading never blocks on a pipe)."""
    import stat

    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot open the {what} ({exc.strerror or exc.__class__.__name__})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path}: the {what} is not a regular file (a FIFO, device or directory is refused)")
    return st.st_size


def read_npy(path: str | os.PathLike, *, with_raw: bool = False):
    """A ``.npy`` file as an array, including what NumPy alone cannot load.

    ml_dtypes arrays saved with ``numpy.save`` carry descriptors such as
    ``'<f1'`` (FP8) or ``'|V2'`` (bfloat16) that NumPy cannot turn back into
    their dtype; such items are returned as unsigned integers of their size,
    their raw bit patterns (``with_raw=True`` returns ``(array, raw)``,
    ``raw`` saying so).  Only regular files are read, and the data must be
    exactly as long as the header declares.
    """
    size = regular_file(path, ".npy file")
    with open(path, "rb") as fh:
        arr, raw = _npy_stream(fh, size, str(path))
    return (arr, raw) if with_raw else arr


def _npy_stream(fh, size, name, *, limit=None, raw_ok=True, versions=None):
    """(array, raw) of one ``.npy`` stream of ``size`` bytes, read no further than its header declares.

    ``raw_ok``: accept descriptors NumPy cannot load (ml_dtypes' ``<f1``, ``|V2``) as unsigned codes
    (``raw`` True); ``limit``: refuse a header that declares more bytes; ``versions``: the .npy
    format versions accepted (default any).
    """
    import ast
    import re

    try:
        version = np.lib.format.read_magic(fh)
    except ValueError as exc:
        raise ValueError(f"{name}: not a .npy file ({exc})") from None
    if versions is not None and version not in versions:
        raise ValueError(f"{name}: unsupported .npy version {version}")
    major = version[0]
    hlen = int.from_bytes(fh.read(2 if major == 1 else 4), "little")
    if hlen > 1 << 16:
        raise ValueError(f"{name}: .npy header of {hlen} bytes")
    try:
        header = ast.literal_eval(fh.read(hlen).decode("latin1"))
        descr, fortran, shape = header["descr"], header["fortran_order"], tuple(int(v) for v in header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise ValueError(f"{name}: corrupt .npy header ({exc.__class__.__name__})") from None
    if not isinstance(descr, str):
        raise ValueError(f"{name}: structured arrays are not outputs")
    kinds = "biufV" if raw_ok else "biuf"
    raw = False
    try:
        dtype = np.dtype(descr)
        if dtype.hasobject or dtype.kind not in kinds or dtype.names is not None:
            raise ValueError(f"{name}: dtype {dtype} is not a plain numeric array")
    except TypeError:
        m = re.fullmatch(r"[<>|=]?[fV]([1248])", descr)
        if m is None or not raw_ok:
            raise ValueError(f"{name}: unknown dtype descriptor {descr!r}") from None
        dtype, raw = np.dtype(f"<u{m.group(1)}"), True
    if dtype.kind == "V":
        raw = True
        if dtype.itemsize not in (1, 2, 4, 8):
            raise ValueError(f"{name}: raw items of {dtype.itemsize} bytes are not codes")
        dtype = np.dtype(f"<u{dtype.itemsize}")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if limit is not None and nbytes > limit:
        raise ValueError(f"{name} declares {nbytes} bytes, beyond the limit of {limit} (read_golden(..., max_bytes=))")
    if size != fh.tell() + nbytes:
        raise ValueError(f"{name}: {size - fh.tell()} bytes of data, the header declares {nbytes}")
    data = fh.read(nbytes + 1)
    if len(data) != nbytes:
        raise ValueError(f"{name}: holds {len(data)} bytes of data, its header declares {nbytes}")
    arr = np.frombuffer(data, dtype=dtype)
    return (arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)).copy(), raw


def _read_member(zf, info, limit):
    """One ``.npy`` member of a ZIP, expanded no further than its header declares."""
    with zf.open(info) as fh:
        return _npy_stream(fh, info.file_size, info.filename, limit=limit, raw_ok=False,
                           versions=((1, 0), (2, 0)))[0]


def read_golden(path: str | os.PathLike, *, max_bytes: int = GOLDEN_MAX_BYTES) -> tuple[dict, dict]:
    """(arrays, config) of a golden file; ``ValueError`` if it is not one.

    The file is read without trusting it: only regular files; every member
    is expanded no further than its ``.npy`` header declares, and the
    declared sizes together must stay within ``max_bytes`` (checked before
    anything is expanded), so a small file that would unpack to gigabytes
    is refused up front; the arrays must have the shapes ``config["shape"]``
    declares.
    """
    import zipfile

    regular_file(path, "golden file")
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ValueError(f"{path}: not a readable golden file ({exc.__class__.__name__})") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if "config.npy" not in names or "d_bits.npy" not in names:
            raise ValueError(f"{path}: not a golden file (no config or d_bits)")
        if any(not n.endswith(".npy") or "/" in n for n in names):
            raise ValueError(f"{path}: not a golden file (unexpected member {names})")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise ValueError(f"{path}: unpacks to {total} bytes, beyond the limit of {max_bytes} "
                             "(read_golden(..., max_bytes=))")
        try:
            arrays = {i.filename[:-4]: _read_member(zf, i, max_bytes) for i in infos}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable golden file ({exc})") from None
    try:
        config = json.loads(arrays.pop("config").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: corrupt config") from None
    if not isinstance(config, dict) or config.get("version") != GOLDEN_VERSION:
        version = config.get("version") if isinstance(config, dict) else None
        raise ValueError(f"{path}: golden version {version!r}, this fp8sim reads {GOLDEN_VERSION}")
    shape = config.get("shape")
    if shape is not None:
        try:
            M, N, K = (int(v) for v in shape)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: config shape {shape!r} is not [M, N, K]") from None
        for name, want in (("a_codes", (M, K)), ("b_codes", (K, N)), ("d_bits", (M, N))):
            if name in arrays and arrays[name].shape != want:
                raise ValueError(f"{path}: {name} has shape {arrays[name].shape}, the config declares {want}")
    return arrays, config
