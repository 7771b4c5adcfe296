import ml_dtypes
import numpy as np
import pytest

import fp8sim
from fp8sim.formats import ALIASES, NAMED_FORMATS, FloatFormat, Specials, get_format

from .conftest import ALL_FORMATS, fmt_id


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_id)
def test_bit_budget(fmt):
    assert fmt.bits == int(fmt.signed) + fmt.exponent_bits + fmt.mantissa_bits
    assert fmt.smallest_subnormal <= fmt.smallest_normal < fmt.max
    assert fmt.eps == 2.0**-fmt.mantissa_bits


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=fmt_id)
def test_derived_limits_match_value_grid(fmt):
    if fmt.bits > 20:
        pytest.skip("too many codes to enumerate")
    v = fmt.values()
    assert np.all(np.diff(v) > 0)
    assert v[-1] == fmt.max
    positive = v[v > 0]
    assert positive[0] == fmt.smallest_subnormal
    normals = positive[positive >= fmt.smallest_normal]
    assert normals[0] == fmt.smallest_normal
    assert np.log2(fmt.max) < fmt.emax + 1 and np.log2(fmt.max) >= fmt.emax
    ones = v[(v >= 1) & (v <= 2)]
    if fmt.max >= 2:
        assert ones[1] - ones[0] == fmt.eps
    if fmt.signed:
        assert v[0] == -fmt.max
    else:
        assert v[0] >= 0


@pytest.mark.parametrize("name", sorted(NAMED_FORMATS))
def test_limits_match_ml_dtypes_finfo(name):
    fmt = NAMED_FORMATS[name]
    if fmt.ml_dtype is None:
        pytest.skip("no ml_dtypes type")
    fi = ml_dtypes.finfo(fmt.ml_dtype)
    assert fmt.max == float(fi.max)
    assert fmt.smallest_normal == float(fi.smallest_normal)
    assert fmt.smallest_subnormal == float(fi.smallest_subnormal)
    assert fmt.eps == float(fi.eps)
    assert fmt.bits == fi.bits


def test_special_value_flags():
    e4m3, e5m2, fnuz, e8m0, e2m1 = (get_format(n) for n in ["e4m3", "e5m2", "float8_e4m3fnuz", "e8m0", "e2m1"])
    assert (e4m3.has_inf, e4m3.has_nan, e4m3.has_negative_zero) == (False, True, True)
    assert (e5m2.has_inf, e5m2.has_nan, e5m2.has_negative_zero) == (True, True, True)
    assert (fnuz.has_inf, fnuz.has_nan, fnuz.has_negative_zero) == (False, True, False)
    assert (e8m0.has_inf, e8m0.has_nan, e8m0.has_negative_zero, e8m0.has_zero) == (False, True, False, False)
    assert (e2m1.has_inf, e2m1.has_nan) == (False, False)


def test_named_formats_ocp_values():
    # OCP OFP8 rev 1.0 table 1; OCP MX v1.0 tables 1-3 (max normals)
    assert get_format("e4m3").max == 448 and get_format("e5m2").max == 57344
    assert get_format("e2m3").max == 7.5 and get_format("e3m2").max == 28 and get_format("e2m1").max == 6
    assert get_format("e8m0").max == 2.0**127 and get_format("e8m0").smallest_normal == 2.0**-127
    assert get_format("tf32").bits == 19 and get_format("bf16").mantissa_bits == 7


def test_aliases_and_lookup():
    for alias, name in ALIASES.items():
        assert get_format(alias) is NAMED_FORMATS[name]
        assert get_format(alias.upper()) is NAMED_FORMATS[name]
    assert get_format(ml_dtypes.float8_e5m2) is NAMED_FORMATS["float8_e5m2"]
    assert get_format(np.float16) is NAMED_FORMATS["float16"]
    f = FloatFormat(4, 3, specials="fn")
    assert get_format(f) is NAMED_FORMATS["float8_e4m3fn"]  # an unnamed format equal to a named one is that one
    mine = FloatFormat(4, 3, specials="fn", name="my_e4m3")
    assert get_format(mine) is mine  # a user's own name is kept
    odd = FloatFormat(4, 2)
    assert get_format(odd) is odd
    assert f == get_format("e4m3")  # the name is a label, not part of identity
    assert fp8sim.get_format is get_format


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(exponent_bits=0, mantissa_bits=3), "exponent_bits"),
        (dict(exponent_bits=4, mantissa_bits=-1), "mantissa_bits"),
        (dict(exponent_bits=4, mantissa_bits=60), "mantissa_bits"),
        (dict(exponent_bits=4, mantissa_bits=3, specials="weird"), "specials"),
        (dict(exponent_bits=4, mantissa_bits=3, bias=5000), "bias"),
        (dict(exponent_bits=8, mantissa_bits=3, specials="e8m0"), "e8m0"),
        (dict(exponent_bits=4, mantissa_bits=3, signed=False, specials="fnuz"), "fnuz"),
        (dict(exponent_bits=1, mantissa_bits=2, specials="ieee"), "ieee"),
        (dict(exponent_bits=12, mantissa_bits=2), "exponent_bits"),
    ],
)
def test_invalid_parameters(kwargs, word):
    with pytest.raises(ValueError, match=word):
        FloatFormat(**kwargs)


def test_invalid_types_and_names():
    with pytest.raises(TypeError, match="exponent_bits"):
        FloatFormat(4.0, 3)
    with pytest.raises(ValueError, match="unknown format 'e9m9'"):
        get_format("e9m9")
    with pytest.raises(TypeError):
        get_format(3.5)
    with pytest.raises(ValueError, match="int64"):
        get_format(np.int64)


def test_frozen_and_repr():
    f = get_format("e4m3")
    with pytest.raises(AttributeError):
        f.bias = 3
    assert "float8_e4m3fn" in repr(f) and "max=448" in repr(f)
    assert Specials("fnuz") is Specials.FNUZ


# --- bad input (issue 12) ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["false", "False", 0, 1, None])
def test_boolean_parameters_refuse_non_booleans(value):
    with pytest.raises(TypeError, match="signed must be True or False"):
        FloatFormat(4, 3, signed=value)


def test_subnormals_flag_refuses_strings():
    with pytest.raises(TypeError, match="subnormals must be True or False"):
        fp8sim.quantize([1e-3], "e4m3", subnormals="false")


def test_none_is_not_a_format():
    with pytest.raises(TypeError, match="a format is required"):
        get_format(None)
    with pytest.raises(TypeError, match="a format is required"):
        fp8sim.quantize(1.0, None)


def test_unnamed_format_finds_the_preset():
    from fp8sim.hardware import tensor_core

    unit = tensor_core("H100", FloatFormat(4, 3, specials="fn"))
    assert unit == tensor_core("H100", "e4m3")


# --- the names users try first (issue 14) -----------------------------------------------------------

@pytest.mark.parametrize("alias, name", [
    ("e4m3fn", "float8_e4m3fn"), ("fp8_e4m3fn", "float8_e4m3fn"), ("FP8_E5M2", "float8_e5m2"),
    ("e8m0fnu", "float8_e8m0fnu"), ("ue8m0", "float8_e8m0fnu"), ("fp4_e2m1", "float4_e2m1fn"),
    ("fp6_e3m2", "float6_e3m2fn"), ("e2m3fn", "float6_e2m3fn"),
])
def test_other_libraries_names(alias, name):
    assert get_format(alias) is NAMED_FORMATS[name]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_finfo_names_agree_with_numpy(dtype):
    fi = np.finfo(dtype)
    f = FloatFormat(fi.nexp, fi.nmant)
    for name in ("tiny", "nmant", "nexp", "iexp", "machep", "minexp", "maxexp", "precision", "resolution", "eps",
                 "epsneg", "max", "min", "smallest_normal", "smallest_subnormal", "bits"):
        theirs = getattr(fi, name)
        ours = np.asarray(getattr(f, name)).astype(np.asarray(theirs).dtype)  # finfo stores some in the dtype
        assert float(ours) == float(theirs), name


def test_finfo_dtype():
    assert get_format("e4m3").dtype == np.dtype(ml_dtypes.float8_e4m3fn)
    assert get_format("tf32").dtype is None
