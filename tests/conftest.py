"""Shared test data: the format lists and adversarial inputs."""

import numpy as np
import pytest

from fp8sim.formats import NAMED_FORMATS, FloatFormat

#: every named format, and a few user-built ones, drive the parametrized tests
USER_FORMATS = [
    FloatFormat(3, 3, specials="fn", name="user_e3m3fn"),
    FloatFormat(5, 1, name="user_e5m1"),
    FloatFormat(4, 4, bias=5, signed=False, specials="none", name="user_ue4m4"),
    FloatFormat(3, 2, signed=False, specials="fn", name="user_ue3m2fn"),
    FloatFormat(5, 0, signed=False, specials="e8m0", name="user_e5m0"),
]
ALL_FORMATS = list(NAMED_FORMATS.values()) + USER_FORMATS
EIGHT_BIT_ML = [f for f in NAMED_FORMATS.values() if f.bits == 8 and f.ml_dtype is not None]


def fmt_id(f):
    return f.name


def adversarial(fmt, rng, n_random=2000):
    """float64 inputs that probe every rounding decision of ``fmt``.

    Every finite value, every midpoint between neighbours, one float32 ulp
    either side of both, the overflow band above ``max``, the band below the
    smallest subnormal, signed zeros, infinities and (if the format has one)
    NaN, plus random values spread over the whole range.
    """
    if fmt.bits <= 12:
        v = fmt.values()
    else:
        codes = rng.integers(0, 2**fmt.bits, 4000)
        from fp8sim import decode

        v = np.unique(decode(codes, fmt))
        v = v[np.isfinite(v)]
    mids = (v[1:] + v[:-1]) / 2
    top = fmt.max + 2.0 ** (fmt.emax - fmt.mantissa_bits) * np.array([0.5, 0.75, 1.0, 1.5, 4.0])
    low = fmt.smallest_subnormal * np.array([0.25, 0.5, 0.75, 1.0, 1.5])
    base = np.concatenate([v, mids, top, -top, low, -low])
    around = np.concatenate([base, np.nextafter(base, np.inf), np.nextafter(base, -np.inf)])
    with np.errstate(over="ignore", under="ignore"):
        f32 = base.astype(np.float32)
        around32 = np.concatenate(
            [np.nextafter(f32, np.float32(np.inf)), np.nextafter(f32, np.float32(-np.inf))]
        ).astype(np.float64)
    span = np.log2(fmt.max) - np.log2(fmt.smallest_subnormal)
    rand = np.exp2(np.log2(fmt.smallest_subnormal) - 2 + rng.random(n_random) * (span + 4))
    rand *= rng.choice([-1.0, 1.0], n_random)
    special = np.array([0.0, -0.0, np.inf, -np.inf] + ([np.nan] if fmt.has_nan else []))
    return np.concatenate([around, around32, rand, special])


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def to_f32(x):
    """float32 copy of x; values beyond float32's range become +-Inf quietly."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(x, np.float64).astype(np.float32)
