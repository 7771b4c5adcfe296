"""Example: checking an FP8 GEMM kernel against fp8sim, bit for bit.

Copy into your kernel project's tests and replace ``my_fp8_gemm`` with a
call into your kernel.  Here it is a stand-in built from fp8sim itself so
the example runs as it is (fp8sim's own suite runs it).
"""

import numpy as np
import pytest

import fp8sim
from fp8sim.codec import to_ml_dtypes
from fp8sim.testing import assert_bitwise_equal


def my_fp8_gemm(a_fp8, b_fp8, fast_accum):
    """Stand-in for the kernel under test: takes ml_dtypes float8_e4m3fn arrays, returns float32."""
    out = fp8sim.matmul(a_fp8, b_fp8, unit="H100:e4m3", promote_every=None if fast_accum else 128)
    return out.astype(np.float32)


@pytest.mark.parametrize("K", [32, 128, 1024])
@pytest.mark.parametrize("fast_accum", [True, False])
def test_fp8_gemm_matches_simulated_h100(K, fast_accum):
    rng = np.random.default_rng(K)
    a = fp8sim.quantize(rng.standard_normal((64, K)), "e4m3", overflow="saturate")
    b = fp8sim.quantize(rng.standard_normal((K, 64)), "e4m3", overflow="saturate")
    expected = fp8sim.matmul(a, b, unit="H100:e4m3", promote_every=None if fast_accum else 128)
    actual = my_fp8_gemm(to_ml_dtypes(a, "e4m3"), to_ml_dtypes(b, "e4m3"), fast_accum)
    assert_bitwise_equal(actual, expected.astype(np.float32))


def test_error_within_the_units_bound():
    """Where bit-exactness is not the contract: stay within fp8sim's deterministic bound."""
    from fp8sim.bounds import dot_error_bound

    rng = np.random.default_rng(0)
    a = fp8sim.quantize(rng.random((16, 4096)), "e4m3")
    b = fp8sim.quantize(rng.random((4096, 16)), "e4m3")
    actual = my_fp8_gemm(to_ml_dtypes(a, "e4m3"), to_ml_dtypes(b, "e4m3"), fast_accum=True)
    exact = a @ b  # float64 is exact for these E4M3 products and K
    assert np.all(np.abs(actual - exact) <= dot_error_bound(a, b, "H100:e4m3"))
