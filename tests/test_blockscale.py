"""Block-scaled kind::mxf8f6f4 (fp8sim.blockscale, issue 11): engine against its exact twin, the
scaled_matmul path, and bad input."""

import numpy as np
import pytest

import fp8sim
from fp8sim.blockscale import BlockScaledFMA, block_scaled_chain
from fp8sim.hardware import block_scaled_unit
from fp8sim.reference import block_scaled_dot

from .test_accumulate import random_inputs, same

PAIRS = [("e4m3", "e4m3"), ("e5m2", "e4m3"), ("e2m1", "e2m1"), ("e3m2", "e2m3"), ("e2m1", "e5m2")]


@pytest.mark.parametrize("fa, fb", PAIRS)
@pytest.mark.parametrize("K", [32, 96])
def test_engine_equals_twin(fa, fb, K, rng):
    unit = BlockScaledFMA(fa, fb)
    nb = K // 32
    a = random_inputs(rng, (4, K), unit.in_format, spread=3)
    b = random_inputs(rng, (K, 3), unit.b_format, spread=3)
    sa = np.exp2(rng.integers(-127, 20, (4, nb)).astype(float))
    sb = np.exp2(rng.integers(-20, 20, (nb, 3)).astype(float))
    sa[0, 0] = np.nan
    c = fp8sim.quantize(rng.standard_normal((4, 3)) * 4, "float32")
    c[1, 1], c[2, 2] = 0.0, 5 * 2.0**-149
    got = block_scaled_chain(a, b, c, sa, sb, unit)
    want = np.array([[block_scaled_dot(a[i], b[:, j], c[i, j], sa[i], sb[:, j], unit) for j in range(3)]
                     for i in range(4)])
    assert same(got, want).all()
    assert np.isnan(got[0]).all()


def test_scaled_matmul_through_the_block_scaled_unit(rng):
    x, w = rng.standard_normal((8, 128)), rng.standard_normal((128, 6))
    A = fp8sim.quantize_scaled(x, "e4m3", "mx32")
    B = fp8sim.quantize_scaled(w, "e4m3", "mx32", axis=0)
    unit = block_scaled_unit("B200", "e4m3")
    out = fp8sim.scaled_matmul(A, B, unit=unit, out_format="float32")
    want = block_scaled_chain(A.values, B.values, np.zeros((8, 6)), A.scales, B.scales, unit)
    np.testing.assert_array_equal(out, want)
    # the FP32-per-block software order (semantics "mx", as microxcaling / torchao's emulation) is another model
    emulated = fp8sim.scaled_matmul(A, B, unit="B200:e4m3", semantics="mx", out_format="float32")
    rel = np.abs(out - emulated) / np.abs(x @ w)
    assert rel.max() < 1e-5


def test_bad_input():
    with pytest.raises(ValueError, match="kind::mxf8f6f4 takes element formats"):
        BlockScaledFMA("bf16")
    with pytest.raises(ValueError, match="blocks of 32"):
        BlockScaledFMA("e4m3", block=16)
    unit = BlockScaledFMA("e4m3")
    a, b = np.ones((1, 32)), np.ones((32, 1))
    with pytest.raises(ValueError, match="E8M0 values"):
        block_scaled_chain(a, b, np.zeros((1, 1)), np.array([[3.0]]), np.array([[1.0]]), unit)
    with pytest.raises(ValueError, match="modelled for B200 and RTX50"):
        block_scaled_unit("H100", "e4m3")
    A = fp8sim.quantize_scaled(np.ones((2, 64)), "e4m3", (1, 32))  # FP32 scales, not E8M0
    B = fp8sim.quantize_scaled(np.ones((64, 2)), "e4m3", "mx32", axis=0)
    with pytest.raises(ValueError, match="E8M0 scales per 32"):
        fp8sim.scaled_matmul(A, B, unit=block_scaled_unit("B200", "e4m3"))
