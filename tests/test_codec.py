import ml_dtypes
import numpy as np
import pytest

import fp8sim
from fp8sim.codec import from_ml_dtypes, to_ml_dtypes
from fp8sim.formats import NAMED_FORMATS, get_format
from fp8sim.reference import decode_scalar

from .conftest import ALL_FORMATS, fmt_id


def all_codes(fmt, rng):
    if fmt.bits <= 16:
        return np.arange(2**fmt.bits, dtype=fmt.code_dtype)
    return rng.integers(0, 2**fmt.bits, 200_000).astype(fmt.code_dtype)


def bits_equal(a, b):
    return (np.asarray(a, np.float64).view(np.uint64) == np.asarray(b, np.float64).view(np.uint64)) | (
        np.isnan(a) & np.isnan(b)
    )


@pytest.mark.parametrize("name", [n for n, f in NAMED_FORMATS.items() if f.ml_dtype is not None])
def test_every_code_decodes_as_ml_dtypes(name, rng):
    fmt = NAMED_FORMATS[name]
    codes = all_codes(fmt, rng)
    with np.errstate(invalid="ignore"):
        expected = codes.view(fmt.ml_dtype).astype(np.float64)
    got = fp8sim.decode(codes, fmt)
    assert bits_equal(got, expected).all()
    # the sign of NaN codes, where the format has signed NaNs
    nan = np.isnan(expected)
    if fmt.signed and fmt.specials.value in ("ieee", "fn"):
        np.testing.assert_array_equal(np.signbit(got[nan]), np.signbit(expected[nan]))


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_id)
def test_decode_equals_reference(fmt, rng):
    codes = all_codes(fmt, rng)[:5000] if fmt.bits > 12 else all_codes(fmt, rng)
    got = fp8sim.decode(codes, fmt)
    want = np.array([decode_scalar(c, fmt) for c in codes])
    assert bits_equal(got, want).all()


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_id)
def test_round_trip_every_code(fmt, rng):
    codes = all_codes(fmt, rng)
    values = fp8sim.decode(codes, fmt)
    back = fp8sim.encode(values, fmt)
    assert back.dtype == fmt.code_dtype
    nan = np.isnan(values)
    np.testing.assert_array_equal(back[~nan], codes[~nan])
    # every NaN code maps to the canonical NaN, which decodes to NaN again
    assert np.isnan(fp8sim.decode(back[nan], fmt)).all()
    assert same_values(fp8sim.decode(back, fmt), values)


def same_values(a, b):
    return bool(bits_equal(a, b).all())


@pytest.mark.parametrize("name", [n for n, f in NAMED_FORMATS.items() if f.bits == 8 and f.ml_dtype is not None])
def test_canonical_nan_and_inf_codes_match_ml_dtypes(name):
    fmt = NAMED_FORMATS[name]
    x = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = x.astype(fmt.ml_dtype).view(np.uint8)
    if fmt.name == "float8_e8m0fnu":
        x, expected = x[:2], expected[:2]
    if not fmt.has_inf:
        keep = ~np.isinf(x)
        x, expected = x[keep], expected[keep]
    np.testing.assert_array_equal(fp8sim.encode(fp8sim.quantize(x, fmt), fmt), expected)


def test_code_dtypes():
    assert get_format("e4m3").code_dtype == np.uint8
    assert get_format("e2m1").code_dtype == np.uint8
    assert get_format("bf16").code_dtype == np.uint16
    assert get_format("tf32").code_dtype == np.uint32
    assert fp8sim.encode([1.0], "tf32").dtype == np.uint32


def test_encode_rejects_unrepresentable():
    with pytest.raises(ValueError, match="2 value"):
        fp8sim.encode([1.0, 0.3, 1000.0], "e4m3")
    with pytest.raises(ValueError, match="not representable"):
        fp8sim.encode([0.0], "e8m0")
    with pytest.raises(ValueError, match="not representable"):
        fp8sim.encode([np.inf], "e4m3")


def test_decode_rejects_bad_codes():
    with pytest.raises(ValueError, match=r"\[0, 2\*\*8\)"):
        fp8sim.decode([256], "e4m3")
    with pytest.raises(ValueError):
        fp8sim.decode([-1], "e4m3")
    with pytest.raises(TypeError, match="integers"):
        fp8sim.decode([1.0], "e4m3")


def test_ml_dtypes_interop():
    values = np.array([0.5, -3.0, 448.0])
    arr = to_ml_dtypes(values, "e4m3")
    assert arr.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(from_ml_dtypes(arr), values)
    np.testing.assert_array_equal(fp8sim.encode(arr, "e4m3"), arr.view(np.uint8))
    with pytest.raises(ValueError, match="no dtype"):
        to_ml_dtypes([1.0], "tf32")
    with pytest.raises(TypeError):
        from_ml_dtypes(np.array([1, 2]))
