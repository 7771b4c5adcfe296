
import ml_dtypes
import numpy as np
import pytest

import fp8sim
from fp8sim import matmul
from fp8sim.gemm import add_fp32, dot_rows, resolve_unit
from fp8sim.hardware import tensor_core

from .test_accumulate import random_inputs, same


def fsum_fp32(a, b, c):
    """Independent exact reference: Fractions, one rounding to FP32."""
    from fractions import Fraction

    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            s = sum(Fraction(x) * Fraction(y) for x, y in zip(a[i], b[:, j])) + Fraction(c[i, j])
            out[i, j] = fp8sim.reference.quantize_scalar(s, "float32")
    return out


def test_exact_unit_fast_and_fallback_paths(rng):
    a = random_inputs(rng, (4, 300), "e4m3")
    b = random_inputs(rng, (300, 3), "e4m3")
    c = fp8sim.quantize(rng.standard_normal((4, 3)), "float32")
    assert same(matmul(a, b, c, unit="exact"), fsum_fp32(a, b, c)).all()
    # values 2**100 apart defeat the one-BLAS-product bound: the fsum path
    a2 = fp8sim.quantize(rng.standard_normal((3, 40)) * np.exp2(rng.integers(-60, 60, (3, 40))), "float32")
    b2 = fp8sim.quantize(rng.standard_normal((40, 3)) * np.exp2(rng.integers(-60, 60, (40, 3))), "float32")
    c2 = np.zeros((3, 3))
    assert same(matmul(a2, b2, c2, unit="exact"), fsum_fp32(a2, b2, c2)).all()


def test_exact_unit_double_rounding_case():
    # exact sum = 1 + 2**-24 + 2**-80: float64 alone rounds to the FP32 midpoint
    a = np.array([[1.0, 2.0**-24, 2.0**-40]])
    b = np.array([[1.0], [1.0], [2.0**-40]])
    assert matmul(a, b, unit="exact")[0, 0] == 1.0 + 2.0**-23


def test_fma_unit_is_sequential_fp32():
    rng = np.random.default_rng(1)
    a = fp8sim.quantize(rng.standard_normal((3, 50)), "float32")
    b = fp8sim.quantize(rng.standard_normal((50, 2)), "float32")
    got = matmul(a, b, unit="fp32_fma")
    for i in range(3):
        for j in range(2):
            acc = 0.0
            for k in range(50):
                acc = fp8sim.reference.quantize_scalar(
                    fp8sim.reference.Fraction(acc) + fp8sim.reference.Fraction(a[i, k]) * fp8sim.reference.Fraction(b[k, j]),
                    "float32")
            assert got[i, j] == acc


def test_add_fp32_rounds_once(rng):
    x = fp8sim.quantize(rng.standard_normal(10000) * np.exp2(rng.integers(-30, 30, 10000)), "float32")
    y = fp8sim.quantize(rng.standard_normal(10000), "float32")
    from fractions import Fraction

    want = [fp8sim.reference.quantize_scalar(Fraction(p) + Fraction(q), "float32") for p, q in zip(x, y)]
    assert same(add_fp32(x, y), want).all()


def test_add_fp32_values_rounds_once(rng):
    """FP32 operands (the chain's): one float32 addition is the exact sum rounded once, ties, subnormal
    and zero results, signed zeros, overflow and specials included."""
    from fractions import Fraction

    from fp8sim.accumulate import add_fp32_values

    n = 20000
    x = fp8sim.quantize(rng.standard_normal(n) * np.exp2(rng.integers(-150, 128, n)), "float32", overflow="saturate")
    y = fp8sim.quantize(rng.standard_normal(n) * np.exp2(rng.integers(-150, 128, n)), "float32", overflow="saturate")
    y[:2000] = x[:2000] * np.exp2(-rng.integers(20, 30, 2000)) * rng.choice([-1.5, 1.0, -1.0], 2000)   # ties near
    y[2000:2100] = -x[2000:2100]                                                                       # exact zeros
    x[2100:2200] = rng.integers(-2**20, 2**20, 100) * 2.0**-149                                        # subnormals
    x[2200], y[2200], x[2201], y[2201] = -0.0, -0.0, -0.0, 0.0
    x[2202], y[2202] = np.float32(3.4e38), np.float32(3.4e38)                                          # overflow
    x[2203:2206], y[2203:2206] = [np.inf, np.nan, np.inf], [1.0, 1.0, -np.inf]
    y = fp8sim.quantize(y, "float32")
    got = add_fp32_values(x, y)
    assert same(got[2203:2206], [np.inf, np.nan, np.nan]).all()
    want = [fp8sim.reference.quantize_scalar(Fraction(p) + Fraction(q), "float32") if p + q != 0 or p != 0
            else (p + q) for p, q in zip(x[:2203], y[:2203])]
    assert same(got[:2203], want).all() and same(got[:2203], add_fp32(x[:2203], y[:2203])).all()
    assert np.signbit(got[2200]) and not np.signbit(got[2201])


def test_promotion_improves_long_sums():
    rng = np.random.default_rng(0)
    a = fp8sim.quantize(rng.random((8, 4096)), "e4m3")
    b = fp8sim.quantize(rng.random((4096, 8)), "e4m3")
    exact = matmul(a, b, unit="exact")
    fast = matmul(a, b, unit="H100:e4m3")
    promoted = matmul(a, b, unit="H100:e4m3", promote_every=128)
    err_fast = np.max(np.abs(fast - exact) / np.abs(exact))
    err_prom = np.max(np.abs(promoted - exact) / np.abs(exact))
    assert err_fast > 10 * err_prom


def test_ml_dtypes_inputs_and_quantize_inputs():
    a = np.array([[1.5, -2.0]], ml_dtypes.float8_e4m3fn)
    b = np.array([[0.5], [0.25]], ml_dtypes.float8_e4m3fn)
    assert matmul(a, b, unit="H100:e4m3")[0, 0] == 0.25
    with pytest.raises(ValueError, match=r"a: 1 of 2 values are not representable"):
        matmul([[0.3, 1.0]], [[1.0], [1.0]], unit="H100:e4m3")
    assert matmul([[0.3, 1.0]], [[1.0], [1.0]], unit="H100:e4m3", quantize_inputs=True)[0, 0] == 1.3125


def test_bad_arguments():
    a, b = np.ones((2, 64)), np.ones((64, 3))
    with pytest.raises(ValueError, match="shape mismatch"):
        matmul(a, np.ones((63, 3)), unit="H100:e4m3")
    with pytest.raises(ValueError, match="2-D"):
        matmul(np.ones(64), b, unit="H100:e4m3")
    with pytest.raises(ValueError, match="multiple of the unit's block"):
        matmul(a, b, unit="H100:e4m3", promote_every=48)
    with pytest.raises(ValueError, match="promote_every applies"):
        matmul(a, b, unit="exact", promote_every=128)
    with pytest.raises(ValueError, match="unknown gpu"):
        matmul(a, b, unit="H900:e4m3")
    with pytest.raises(ValueError, match="no H100 wgmma unit for in_format .float4_e2m1fn.; H100 wgmma takes"):
        tensor_core("H100", "e2m1")
    with pytest.raises(ValueError, match="unit must be"):
        resolve_unit(42)
    with pytest.raises(ValueError, match="broadcast"):
        matmul(a, b, np.ones((5, 5)), unit="H100:e4m3")
    with pytest.raises(ValueError, match="c: 1 of"):
        matmul(a, b, 0.1, unit="H100:e4m3")
    with pytest.raises(ValueError, match="block must be"):
        fp8sim.BlockFMA("e4m3", block=0, align_bits=13)
    with pytest.raises(ValueError, match="out_rounding"):
        fp8sim.BlockFMA("e4m3", block=32, align_bits=13, out_rounding="upward")
    with pytest.raises(ValueError, match="same shape"):
        dot_rows(a, b, unit="H100:e4m3")


def test_memory_flat_in_k():
    """Peak memory grows with K only by a few copies of the inputs (checks, exponents),
    never by the (M, N, K) products: those are formed one block and one row tile at a time."""
    import tracemalloc

    unit = tensor_core("H100", "e4m3")
    peaks = []
    for K in (1024, 4096):
        a = np.ones((64, K))
        b = np.ones((K, 64))
        tracemalloc.start()
        matmul(a, b, unit=unit, tile_elems=1 << 16)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    input_bytes_growth = 2 * 64 * (4096 - 1024) * 8
    assert peaks[1] - peaks[0] < 6 * input_bytes_growth
    assert peaks[1] < 64 * 64 * 4096 * 8 / 4  # far below the full product tensor


# --- engine bad input (issue 12) --------------------------------------------------------------------

@pytest.mark.parametrize("tile_elems", [0, -5, 2.5, True, "big"])
def test_tile_elems_checked(tile_elems):
    with pytest.raises(ValueError, match="tile_elems"):
        fp8sim.matmul(np.ones((2, 32)), np.ones((32, 2)), unit="H100:e4m3", tile_elems=tile_elems)


def test_c_that_does_not_broadcast():
    with pytest.raises(ValueError, match="does not broadcast"):
        fp8sim.matmul(np.ones((2, 32)), np.ones((32, 3)), np.ones((3, 2)), unit="H100:e4m3")


def test_masked_operands_refused():
    a = np.ma.masked_array(np.ones((2, 32)), mask=np.eye(2, 32, dtype=bool))
    with pytest.raises(TypeError, match="masked array"):
        fp8sim.matmul(a, np.ones((32, 2)), unit="H100:e4m3")


def test_products_beyond_float64_refused():
    wide = fp8sim.FloatFormat(11, 3, name="e11m3")
    with pytest.raises(ValueError, match="beyond what float64 holds exactly"):
        fp8sim.BlockFMA(wide, block=4, align_bits=24)


@pytest.mark.parametrize("promote_every", [0, -32, 48, 32.0])
def test_promote_every_positive_multiple(promote_every):
    with pytest.raises(ValueError, match="promote_every must be a positive multiple"):
        fp8sim.matmul(np.ones((2, 64)), np.ones((64, 2)), unit="H100:e4m3", promote_every=promote_every)


def test_boolean_parameters_refuse_strings():
    with pytest.raises(TypeError, match="quantize_inputs must be True or False"):
        fp8sim.matmul(np.ones((2, 32)), np.ones((32, 2)), unit="H100:e4m3", quantize_inputs="false")
    with pytest.raises(TypeError, match="c_in_alignment must be True or False"):
        fp8sim.BlockFMA("e4m3", block=32, align_bits=13, c_in_alignment="no")


@pytest.mark.parametrize("alias", ["H800", "h20", "sm90", "SM_90", "hopper", "GH200", "H200"])
def test_gpu_aliases_name_the_measured_part(alias):
    from fp8sim.hardware import tensor_core

    assert tensor_core(alias, "e4m3") == tensor_core("H100", "e4m3")


def test_unknown_gpu_lists_the_names():
    from fp8sim.hardware import tensor_core

    with pytest.raises(ValueError, match="unknown gpu 'Z80'; accepted"):
        tensor_core("Z80", "e4m3")


def test_threads_bit_identical(rng):
    a = fp8sim.quantize(rng.standard_normal((37, 96)), "e4m3")
    b = fp8sim.quantize(rng.standard_normal((96, 11)), "e4m3")
    one = fp8sim.matmul(a, b, unit="H100:e4m3", threads=1)
    for n in (2, 3, 64):
        got = fp8sim.matmul(a, b, unit="H100:e4m3", threads=n, promote_every=None)
        np.testing.assert_array_equal(got.view(np.uint64), one.view(np.uint64))
    np.testing.assert_array_equal(fp8sim.matmul(a, b, unit="H100:e4m3", threads=2, promote_every=32).view(np.uint64),
                                  fp8sim.matmul(a, b, unit="H100:e4m3", threads=1, promote_every=32).view(np.uint64))
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads"):
            fp8sim.matmul(a, b, unit="H100:e4m3", threads=bad)


def test_exact_unit_wide_range_is_exactly_rounded(rng, monkeypatch):
    """The compensated whole-array path (issue 13) equals an exact rational twin, and its per-element
    fallback gives the same bits where it is forced everywhere."""
    from fractions import Fraction

    import fp8sim.gemm as g
    from fp8sim.reference import quantize_scalar

    M, K, N = 6, 200, 5
    a = fp8sim.quantize(rng.standard_normal((M, K)) * np.exp2(rng.integers(-70, 70, (M, K))), "float32")
    b = fp8sim.quantize(rng.standard_normal((K, N)) * np.exp2(rng.integers(-70, 70, (K, N))), "float32")
    a[:, K // 2:] = a[:, :K // 2]
    b[K // 2:] = -b[:K // 2]                    # exact cancellation ...
    b[K // 2] = fp8sim.quantize(b[K // 2] * 1.5, "float32")   # ... but not quite
    c = fp8sim.quantize(rng.standard_normal((M, N)), "float32")
    got = fp8sim.matmul(a, b, c, unit="exact")
    want = np.array([[quantize_scalar(sum((Fraction(x) * Fraction(y) for x, y in zip(a[i], b[:, j])),
                                          Fraction(c[i, j])), "float32") for j in range(N)] for i in range(M)])
    np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    # force the fallback everywhere: the same bits
    real_round_pair = g.round_pair
    calls = []

    def undecided(hi, lo, fmt, rounding):
        calls.append(1)
        r = real_round_pair(hi, lo, fmt, rounding)
        return r if len(calls) % 2 else r + 1.0   # the two ends never agree
    monkeypatch.setattr(g, "round_pair", undecided)
    np.testing.assert_array_equal(fp8sim.matmul(a, b, c, unit="exact").view(np.uint64), want.view(np.uint64))


def test_matmul_memory_does_not_grow_with_k():
    """The engine copies only its block of the inputs: peak traced memory stays far below the inputs'
    size for a long K (a regression test for the data-planned work types, which scan the operands)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    a = fp8sim.quantize(rng.standard_normal((32, 1 << 17)), "e4m3", overflow="saturate")
    b = fp8sim.quantize(rng.standard_normal((1 << 17, 32)), "e4m3", overflow="saturate")
    tracemalloc.start()
    fp8sim.matmul(a, b, unit="H100:e4m3", threads=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < (a.nbytes + b.nbytes) / 4, (peak, a.nbytes + b.nbytes)


def test_fl32_product_rounds_once(rng):
    """The scale products of scaled_matmul: FP32 operands through one float32 multiplication, other
    values through quantize; both the exact product rounded once to FP32 (overflow, subnormal and zero
    results, NaN included)."""
    from fractions import Fraction

    from fp8sim.gemm import _fl32_product

    x = fp8sim.quantize(rng.standard_normal((300, 1)) * np.exp2(rng.integers(-150, 128, (300, 1))), "float32",
                        overflow="saturate")
    y = fp8sim.quantize(rng.standard_normal((1, 200)) * np.exp2(rng.integers(-150, 128, (1, 200))), "float32",
                        overflow="saturate")
    x[0, 0], y[0, 0] = np.nan, 0.0
    got = _fl32_product(x, y)
    with np.errstate(over="ignore", invalid="ignore"):
        assert same(got, fp8sim.quantize(x * y, "float32")).all()
    i, j = np.nonzero(np.isfinite(x * y) & (np.abs(x * y) < 3e38) & (x * y != 0))   # (zeros: IEEE signs, above)
    k = rng.choice(len(i), 2000, replace=False)
    want = [fp8sim.reference.quantize_scalar(Fraction(x[a, 0]) * Fraction(y[0, b]), "float32") for a, b in zip(i[k], j[k])]
    assert same(got[i[k], j[k]], want).all()
    assert np.isinf(got).any() and (got[np.isfinite(got)] == 0).any() and np.isnan(got[0]).all()
    x64 = x.copy()
    x64[1, 0] = 1.0 + 2.0**-40                                 # not an FP32 value: the exact product, rounded
    assert same(_fl32_product(x64, y)[1], fp8sim.quantize(x64[1, 0] * y[0], "float32")).all()
