"""Property tests over randomly built formats: vectorized quantize/encode/decode against the twins."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import fp8sim
from fp8sim.formats import FloatFormat
from fp8sim.reference import decode_scalar, quantize_scalar

from .test_rounding import same_bits


@st.composite
def formats(draw):
    specials = draw(st.sampled_from(["ieee", "fn", "fnuz", "none", "e8m0"]))
    signed = specials != "e8m0" and (specials == "fnuz" or draw(st.booleans()))
    e = draw(st.integers(1 if specials in ("none", "fnuz") else 2, 6))
    m = 0 if specials == "e8m0" else draw(st.integers(1 if specials == "ieee" else 0, 5))
    default_bias = 2 ** (e - 1) - 1
    bias = draw(st.integers(default_bias - 3, default_bias + 3))
    try:
        return FloatFormat(e, m, bias, signed, specials)
    except ValueError:
        return FloatFormat(e, m, None, signed, specials)


@settings(max_examples=150, deadline=None)
@given(fmt=formats(), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["nearest_even", "nearest_away", "toward_zero", "upward", "downward", "to_odd"]),
       policy=st.sampled_from([None, "saturate", "infinity", "nan"]), subnormals=st.booleans())
def test_quantize_twin_on_random_formats(fmt, seed, mode, policy, subnormals):
    if (policy == "infinity" and not fmt.has_inf) or (policy == "nan" and not fmt.has_nan):
        return
    rng = np.random.default_rng(seed)
    v = fmt.values()
    x = np.concatenate([v, (v[1:] + v[:-1]) / 2, rng.standard_normal(50) * fmt.max,
                        rng.standard_normal(20) * fmt.smallest_subnormal * 4, [fmt.max * 1.2, -fmt.max * 3]])
    if not fmt.signed and not fmt.has_nan:
        x = np.abs(x)
    got = fp8sim.quantize(x, fmt, mode, policy, subnormals=subnormals)
    want = [quantize_scalar(t, fmt, mode, policy, subnormals=subnormals) for t in x]
    assert same_bits(got, want).all()
    codes = np.arange(2**fmt.bits)
    assert same_bits(fp8sim.decode(codes, fmt), [decode_scalar(c, fmt) for c in codes]).all()
    finite = np.isfinite(got)
    np.testing.assert_array_equal(fp8sim.decode(fp8sim.encode(got[finite], fmt), fmt), got[finite] + 0.0
                                  if not fmt.has_negative_zero else got[finite])
