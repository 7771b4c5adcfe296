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
    with pytest.raises(ValueError, match="float8_e8m0fnu scales per 32"):
        fp8sim.scaled_matmul(A, B, unit=block_scaled_unit("B200", "e4m3"))


# --- kind::mxf4 / mxf4nvf4 (GST-FDPA) ------------------------------------------------------------

from fp8sim.blockscale import GroupScaledFMA, group_scaled_chain  # noqa: E402
from fp8sim.hardware import group_scaled_unit  # noqa: E402
from fp8sim.reference import group_scaled_dot  # noqa: E402


@pytest.mark.parametrize("kind, block, sfmt", [("mxf4", 32, "ue8m0"), ("mxf4nvf4", 16, "ue8m0"),
                                               ("mxf4nvf4", 16, "e4m3")])
def test_group_scaled_engine_equals_twin(kind, block, sfmt, rng):
    unit = group_scaled_unit("B200", kind, block, sfmt)
    K = 128
    a = random_inputs(rng, (4, K), "e2m1", spread=1)
    b = random_inputs(rng, (K, 3), "e2m1", spread=1)
    a[1, 16:32] = 0.0
    nb = K // block
    if unit.scale_format.name == "float8_e8m0fnu":
        sa, sb = np.exp2(rng.integers(-20, 20, (4, nb)).astype(float)), np.exp2(rng.integers(-20, 20, (nb, 3)) * 1.0)
    else:
        sa = fp8sim.quantize(np.abs(rng.standard_normal((4, nb))) * 8, "e4m3", overflow="saturate")
        sb = fp8sim.quantize(np.abs(rng.standard_normal((nb, 3))) / 8, "e4m3", overflow="saturate")
        sa[2, 1] = 0.0
    sa[0, 0] = np.nan
    c = fp8sim.quantize(rng.standard_normal((4, 3)), "float32")
    got = group_scaled_chain(a, b, c, sa, sb, unit)
    want = np.array([[group_scaled_dot(a[i], b[:, j], c[i, j], sa[i], sb[:, j], unit) for j in range(3)]
                     for i in range(4)])
    assert same(got, want).all()


def test_group_scaled_infinite_c_stays(rng):
    """An infinite C, given or from an overflow in an earlier instruction (scales near E8M0's top),
    stays infinite through the next instructions (their E2M1 products are finite); the twin once failed
    on it (found by experiments/fuzz_engines.py).  Engine and twin agree."""
    unit = group_scaled_unit("B200", "mxf4", 32, "ue8m0")
    K = 192
    a = np.full((3, K), 6.0)
    b = np.full((K, 2), 6.0)
    sa = np.ones((3, K // 32))
    sb = np.ones((K // 32, 2))
    sa[2, :2] = 2.0**127                              # the first instruction of row 2 overflows
    sb[:2, :] = 2.0**100
    c = np.array([[np.inf, -np.inf], [1.0, np.nan], [0.0, 0.0]])
    got = group_scaled_chain(a, b, c, sa, sb, unit)
    want = np.array([[group_scaled_dot(a[i], b[:, j], c[i, j], sa[i], sb[:, j], unit) for j in range(2)]
                     for i in range(3)])
    assert same(got, want).all()
    assert got[0, 0] == np.inf and got[0, 1] == -np.inf and np.isnan(got[1, 1]) and np.isinf(got[2]).all()


def test_nvfp4_gemm_through_the_group_scaled_unit(rng):
    x, w = rng.standard_normal((4, 128)) * 3, rng.standard_normal((128, 5))
    A = fp8sim.quantize_scaled(x, "e2m1", "nvfp4")
    B = fp8sim.quantize_scaled(w, "e2m1", "nvfp4", axis=0)
    unit = group_scaled_unit("B200", "mxf4nvf4", 16, "e4m3")
    out = fp8sim.scaled_matmul(A, B, unit=unit, out_format="float32")
    acc = group_scaled_chain(A.values, B.values, np.zeros((4, 5)), A.scales, B.scales, unit)
    alpha = fp8sim.quantize(A.global_scale * B.global_scale, "float32")
    np.testing.assert_array_equal(out, fp8sim.quantize(acc * alpha, "float32"))
    assert np.linalg.norm(out - x @ w) / np.linalg.norm(x @ w) < 0.3   # FP4: coarse, but the right product


def test_group_scaled_bad_input():
    with pytest.raises(ValueError, match="not an instruction"):
        group_scaled_unit("B200", "mxf4", 16, "ue8m0")
    with pytest.raises(ValueError, match="multiple of 64"):
        group_scaled_chain(np.ones((1, 32)), np.ones((32, 1)), np.zeros((1, 1)), np.ones((1, 1)), np.ones((1, 1)),
                           GroupScaledFMA())
    with pytest.raises(ValueError, match="UE4M3 values"):
        group_scaled_chain(np.ones((1, 64)), np.ones((64, 1)), np.zeros((1, 1)), np.full((1, 4), 0.3),
                           np.ones((4, 1)), GroupScaledFMA(16, "e4m3"))


@pytest.mark.parametrize("fmt, out", [("e3m2", "bfloat16"), ("e2m3", "float16"), ("e5m2", "float32")])
def test_mxfp6_and_mxfp8_gemms_every_output(fmt, out, rng):
    x, w = rng.standard_normal((3, 96)), rng.standard_normal((96, 4))
    A = fp8sim.quantize_scaled(x, fmt, "mx32")
    B = fp8sim.quantize_scaled(w, fmt, "mx32", axis=0)
    unit = block_scaled_unit("RTX 5090", fmt)
    got = fp8sim.scaled_matmul(A, B, unit=unit, out_format=out)
    acc = block_scaled_chain(A.values, B.values, np.zeros((3, 4)), A.scales, B.scales, unit)
    np.testing.assert_array_equal(got, fp8sim.quantize(acc, out))
