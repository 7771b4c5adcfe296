"""The vectorized block-FMA engine against its exact scalar twin."""

import numpy as np
import pytest

import fp8sim
from fp8sim import BlockFMA, matmul
from fp8sim.gemm import dot_rows
from fp8sim.hardware import tensor_core
from fp8sim.reference import block_fma_dot


def bits(x):
    return np.asarray(x, np.float64).astype(np.float32).view(np.uint32)


def same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (bits(a) == bits(b)) | (np.isnan(a) & np.isnan(b))


def random_inputs(rng, shape, fmt, spread=6, subnormal_frac=0.05, zero_frac=0.05):
    """Values of fmt over a wide exponent spread, with subnormals and signed zeros."""
    fmt = fp8sim.get_format(fmt)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-spread, spread + 1, shape))
    sub = rng.random(shape) < subnormal_frac
    x[sub] = rng.integers(-2**fmt.mantissa_bits + 1, 2**fmt.mantissa_bits, sub.sum()) * fmt.smallest_subnormal
    zero = rng.random(shape) < zero_frac
    x[zero] = np.where(rng.random(zero.sum()) < 0.5, 0.0, -0.0)
    return fp8sim.quantize(x, fmt, overflow="saturate")


def reference_matmul(a, b, c, unit, promote_every=None):
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = block_fma_dot(a[i], b[:, j], c[i, j], unit, promote_every)
    return out


UNITS = [
    ("H100", "e4m3"), ("H100", "e5m2"), ("B200", "e4m3"), ("B200", "e5m2"), ("Ada", "e4m3"),
    ("H100", "bfloat16"), ("A100", "float16"), ("V100", "float16"), ("H100", "tf32"),
]


@pytest.mark.parametrize("gpu, fmt", UNITS)
@pytest.mark.parametrize("K", [1, 31, 96, 200])
def test_engine_equals_reference_random(gpu, fmt, K, rng):
    unit = tensor_core(gpu, fmt)
    a = random_inputs(rng, (3, K), fmt)
    b = random_inputs(rng, (K, 4), fmt)
    c = fp8sim.quantize(rng.standard_normal((3, 4)) * 4, "float32")
    c[0, 0] = -0.0
    got = matmul(a, b, c, unit=unit)
    assert same(got, reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("gpu, fmt, promote", [("H100", "e4m3", None), ("H100", "e4m3", 128), ("H100", "e5m2", 128),
                                               ("B200", "e4m3", 256), ("H100", "bfloat16", None), ("Ada", "e5m2", 64)])
def test_engine_equals_reference_k4096(gpu, fmt, promote, rng):
    unit = tensor_core(gpu, fmt)
    a = random_inputs(rng, (2, 4096), fmt, spread=3)
    b = random_inputs(rng, (4096, 2), fmt, spread=3)
    c = fp8sim.quantize(rng.standard_normal((2, 2)), "float32")
    got = matmul(a, b, c, unit=unit, promote_every=promote)
    assert same(got, reference_matmul(a, b, c, unit, promote)).all()


def test_engine_equals_reference_custom_units(rng):
    for unit in [
        BlockFMA("e4m3", block=8, align_bits=10, out_frac_bits=16, out_rounding="nearest_even"),
        BlockFMA("e5m2", block=5, align_bits=20, c_in_alignment=False, c_rounding="toward_zero"),
        BlockFMA("float6_e3m2fn", block=3, align_bits=6, out_frac_bits=8),
        BlockFMA("e2m1", block=16, align_bits=4, out_frac_bits=5),
    ]:
        a = random_inputs(rng, (3, 50), unit.in_format, spread=2)
        b = random_inputs(rng, (50, 3), unit.in_format, spread=2)
        c = fp8sim.quantize(rng.standard_normal((3, 3)), "float32")
        assert same(matmul(a, b, c, unit=unit), reference_matmul(a, b, c, unit)).all(), unit


def test_special_values_equal_reference(rng):
    unit = tensor_core("H100", "e5m2")
    K = 96
    a = random_inputs(rng, (6, K), "e5m2")
    b = random_inputs(rng, (K, 5), "e5m2")
    a[0, 3] = np.nan
    a[1, 40] = np.inf          # meets b's zero below -> NaN in one column
    b[40, 2] = 0.0
    a[2, 70] = -np.inf
    b[10, 3] = np.inf          # +Inf and -Inf products in different blocks of row 2
    a[3, 5] = np.inf
    a[3, 6] = np.inf
    b[5, 4] = 1.0
    b[6, 4] = -1.0             # Inf - Inf within one block
    c = np.zeros((6, 5))
    c[4, 0] = np.inf
    c[5, 1] = np.nan
    got = matmul(a, b, c, unit=unit)
    want = reference_matmul(a, b, c, unit)
    assert same(got, want).all()
    assert np.isnan(got[0]).all() and np.isinf(got[4, 0]) and np.isnan(got[5, 1])
    # overflow of the chain follows IEEE rounding toward zero: the largest finite value
    big = np.full((1, 64), 57344.0)
    out = matmul(big, big.T, unit=unit)[0, 0]
    assert out == block_fma_dot(big[0], big[0], 0.0, unit) and np.isfinite(out)


def test_dot_rows_equals_matmul_rows(rng):
    unit = tensor_core("H100", "e4m3")
    a = random_inputs(rng, (20, 200), "e4m3")
    b = random_inputs(rng, (20, 200), "e4m3")
    c = fp8sim.quantize(rng.standard_normal(20), "float32")
    rows = dot_rows(a, b, c, unit=unit, promote_every=64)
    for i in range(20):
        assert same(rows[i], matmul(a[i:i + 1], b[i][:, None], c[i], unit=unit, promote_every=64)[0, 0])


def test_memory_tiling_does_not_change_results(rng):
    unit = tensor_core("H100", "e4m3")
    a = random_inputs(rng, (17, 300), "e4m3")
    b = random_inputs(rng, (300, 9), "e4m3")
    assert same(matmul(a, b, unit=unit, tile_elems=100), matmul(a, b, unit=unit)).all()


def test_limited_accumulation_loses_small_terms():
    # 2**-8 below the largest product lies beyond F = 13 bits only with the H100 FP8 unit
    unit = tensor_core("H100", "e4m3")
    a = np.array([[256.0] + [2.0**-6] * 31])
    b = np.ones((32, 1))
    assert matmul(a, b, unit=unit)[0, 0] == 256.0
    assert matmul(a, b, unit="exact")[0, 0] == 256.0 + 31 * 2.0**-6
    wide = unit.replace(align_bits=20)
    assert matmul(a, b, unit=wide)[0, 0] == 256.0 + 31 * 2.0**-6 - (256 + 31 * 2.0**-6) % 2.0**-5


from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(["e4m3", "e5m2", "float16", "bfloat16", "e2m1", "float6_e3m2fn"]),
    block=st.integers(1, 40),
    align=st.integers(1, 26),
    out_bits=st.integers(1, 23),
    rounding=st.sampled_from(["toward_zero", "nearest_even"]),
    c_in=st.booleans(),
    c_rounding=st.sampled_from(["toward_zero", "nearest_even"]),
    K=st.integers(1, 150),
    seed=st.integers(0, 2**32 - 1),
    b_fmt=st.sampled_from([None, "e4m3", "e5m2", "float16"]),
)
@example(fmt="bfloat16", block=1, align=1, out_bits=1, rounding="toward_zero", c_in=False,
         c_rounding="toward_zero", K=38, seed=0, b_fmt=None)  # once broke: 2**(F - E) beyond float32's range
def test_engine_equals_reference_random_units(fmt, block, align, out_bits, rounding, c_in, c_rounding, K, seed,
                                              b_fmt):
    """Any BlockFMA parameters, not only the presets, mixed operand formats included."""
    unit = BlockFMA(fmt, block=block, align_bits=align, out_frac_bits=out_bits, out_rounding=rounding,
                    c_in_alignment=c_in, c_rounding=c_rounding, b_format=b_fmt)
    rng = np.random.default_rng(seed)
    a = random_inputs(rng, (2, K), fmt, spread=4)
    b = random_inputs(rng, (K, 2), b_fmt or fmt, spread=4)
    c = fp8sim.quantize(rng.standard_normal((2, 2)) * np.exp2(rng.integers(-10, 10, (2, 2))), "float32")
    assert same(matmul(a, b, c, unit=unit), reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("fa, fb", [("e5m2", "e4m3"), ("e4m3", "e5m2")])
@pytest.mark.parametrize("gpu", ["H100", "B200", "Ada"])
def test_mixed_fp8_operands_equal_reference(fa, fb, gpu, rng):
    unit = tensor_core(gpu, fa, b_format=fb)
    assert unit.b_format.name == fp8sim.get_format(fb).name and unit is not None
    a = random_inputs(rng, (3, 200), fa)
    b = random_inputs(rng, (200, 3), fb)
    c = fp8sim.quantize(rng.standard_normal((3, 3)), "float32")
    for promote in (None, 64 if gpu == "Ada" else 128):
        got = matmul(a, b, c, unit=f"{gpu}:{fa},{fb}", promote_every=promote)
        assert same(got, reference_matmul(a, b, c, unit, promote)).all()
    # each operand is checked against its own format: 28672 is an E5M2 value, not an E4M3 one
    b_e5m2 = fp8sim.quantize(np.full((200, 3), 3e4), "e5m2")
    with pytest.raises(ValueError, match="b: 600 of 600 values are not representable in 'float8_e4m3fn'"):
        matmul(a if fa == "e5m2" else fp8sim.quantize(a, "e5m2"), b_e5m2, unit=f"{gpu}:e5m2,e4m3")


def test_mixed_operands_only_within_the_instruction_family():
    with pytest.raises(ValueError, match="both must be among"):
        tensor_core("H100", "float16", b_format="bfloat16")
    with pytest.raises(ValueError, match="both must be among"):
        tensor_core("H100", "e4m3", b_format="e2m1")           # wgmma takes FP8 pairs only
    u = tensor_core("B200", "e2m1", b_format="e4m3")          # tcgen05 kind::f8f6f4: every pair
    assert u.name == "B200:float4_e2m1fn,float8_e4m3fn@tcgen05"


# --- the k-major engine (issue 13) against the classic engine and the scalar twin ---------------------

from fp8sim.accumulate import dot_chain  # noqa: E402

ENGINE_UNITS = [tensor_core(g, f) for g, f in UNITS] + [
    tensor_core("Ada", "e4m3", out_format="float16"),
    BlockFMA("e4m3", block=32, align_bits=8, out_frac_bits=23),           # F below the output's fraction bits
    BlockFMA("e5m2", block=16, align_bits=17, out_frac_bits=20),
    BlockFMA("e4m3", block=8, align_bits=13, out_frac_bits=13, c_in_alignment=False),
    BlockFMA("float8_e4m3fnuz", block=32, align_bits=13, out_frac_bits=13),
    BlockFMA("e2m1", block=64, align_bits=12, out_frac_bits=23, b_format="e2m1"),
    BlockFMA("e4m3", block=32, align_bits=13, out_frac_bits=13, b_format="e5m2"),
]


def _addends(rng, shape):
    """C: zeros, ordinary, FP32 subnormals, near FP32 max, and the specials."""
    c = fp8sim.quantize(rng.standard_normal(shape) * 8, "float32")
    flat = c.reshape(-1)
    kinds = rng.integers(0, 8, flat.size)
    flat[kinds == 0] = 0.0
    flat[kinds == 1] = -0.0
    flat[kinds == 2] = rng.integers(-2**20, 2**20, (kinds == 2).sum()) * 2.0**-149
    flat[kinds == 3] = fp8sim.quantize(rng.choice([-1, 1], (kinds == 3).sum()) * 3.3e38, "float32")
    return c


@pytest.mark.parametrize("unit", ENGINE_UNITS, ids=lambda u: u.name or repr(u))
@pytest.mark.parametrize("K", [1, 45, 160])
def test_kmajor_equals_classic_and_twin(unit, K, rng):
    M, N = 6, 5
    a = random_inputs(rng, (M, K), unit.in_format, spread=8, zero_frac=0.2)
    b = random_inputs(rng, (K, N), unit.b_format, spread=8, zero_frac=0.2)
    a[1, :min(K, unit.block)] = 0.0  # an all-zero block: the float32 step hands over to the general one
    c = _addends(rng, (M, N))
    got = dot_chain(a, b, c, unit, tile_elems=2 * N * unit.block)  # several row tiles
    classic = dot_chain(a, b, c, unit, engine="classic")
    np.testing.assert_array_equal(got.view(np.uint64), classic.view(np.uint64))
    assert same(got, reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("unit", ENGINE_UNITS[:4], ids=lambda u: u.name)
def test_kmajor_specials_and_promotion(unit, rng):
    K = 96
    a = random_inputs(rng, (4, K), unit.in_format)
    b = random_inputs(rng, (K, 3), unit.b_format)
    if unit.in_format.has_inf:
        a[0, 5] = np.inf
        b[7, 2] = -np.inf
    if unit.in_format.has_nan:
        a[2, 40] = np.nan
    c = _addends(rng, (4, 3))
    c[3, 0], c[3, 1], c[3, 2] = np.inf, -np.inf, np.nan
    for promote in (None, 32, 64):
        if promote is not None and promote % unit.block:
            continue
        got = matmul(a, b, c, unit=unit, promote_every=promote)
        assert same(got, reference_matmul(a, b, c, unit, promote)).all()


def test_kmajor_equals_classic_large(rng):
    """Many row tiles and a long K on the H100 unit, with promotion: both engines, every bit."""
    unit = tensor_core("H100", "e4m3")
    a = random_inputs(rng, (64, 1024), "e4m3", spread=3, zero_frac=0.01)
    b = random_inputs(rng, (1024, 48), "e4m3", spread=3, zero_frac=0.01)
    c = np.zeros((64, 48))
    for tile in (None, 4096):
        got = dot_chain(a, b, c, unit, tile_elems=tile)
        np.testing.assert_array_equal(got.view(np.uint64), dot_chain(a, b, c, unit, engine="classic").view(np.uint64))


# --- instruction-keyed units (issue 10) -----------------------------------------------------------

from fp8sim.accumulate import SplitFP16Unit  # noqa: E402
from fp8sim.reference import split_fp16_dot  # noqa: E402

NEW_UNITS = [tensor_core("B200", "e4m3"), tensor_core("B200", "e2m1", b_format="e4m3"),
             tensor_core("B200", "e3m2", b_format="e2m3"), tensor_core("RTX50", "e5m2"),
             tensor_core("B200", "e4m3", out_format="float16"), tensor_core("T4", "float16")]


@pytest.mark.parametrize("unit", NEW_UNITS, ids=lambda u: u.name)
@pytest.mark.parametrize("K", [7, 64, 150])
def test_instruction_units_equal_twin(unit, K, rng):
    a = random_inputs(rng, (4, K), unit.in_format, spread=4)
    b = random_inputs(rng, (K, 3), unit.b_format, spread=4)
    c = _addends(rng, (4, 3))
    if unit.out_frac_bits == 10:
        c = fp8sim.quantize(c, "float16", overflow="saturate")
    assert same(matmul(a, b, c, unit=unit), reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("gpu, fmt", [("H100", "e4m3"), ("B200", "e5m2")])
@pytest.mark.parametrize("K", [32, 20, 100, 256])
def test_split_fp16_unit_equals_twin(gpu, fmt, K, rng):
    unit = tensor_core(gpu, fmt, out_format="float16", instruction="mma.sync")
    assert isinstance(unit, SplitFP16Unit)
    a = random_inputs(rng, (5, K), fmt, spread=5)
    b = random_inputs(rng, (K, 4), fmt, spread=5)
    c = fp8sim.quantize(rng.standard_normal((5, 4)) * 16, "float16")
    c[0, 0] = -0.0
    got = matmul(a, b, c, unit=unit)
    want = np.array([[split_fp16_dot(a[i], b[:, j], c[i, j], unit) for j in range(4)] for i in range(5)])
    assert same(got, want).all()
    paired = dot_rows(a[:4], np.ascontiguousarray(b.T), c[:4, 0], unit=unit)   # row i of a with column i of b
    assert same(paired, [split_fp16_dot(a[i], b[:, i], c[i, 0], unit) for i in range(4)]).all()


@pytest.mark.parametrize("out", ["float16", "float32"])
def test_split_fp16_kmajor_tiles_and_fallbacks_equal_twin(out, rng, monkeypatch):
    """The k-major SplitFP16Unit chain over several row tiles and three chunks of K (operands prepared per
    chunk in group order), with a first group that overflows FP16 (its second group then starts from
    Inf), a NaN input in one block of the first chunk and in the second group of a block of the
    third, an infinite C and a partial last block: each tile falls back to dot_chain where it must,
    and every output equals the twin."""
    import fp8sim.accumulate as acc

    monkeypatch.setattr(acc, "KMAJOR_TILE", 16 * 2 * 3)
    monkeypatch.setattr(acc, "KMAJOR_CHUNK_K", 64)
    unit = tensor_core("H100", "e4m3", out_format=out, instruction="mma.sync")
    M, K, N = 7, 4 * 32 + 11, 3
    a = random_inputs(rng, (M, K), unit.in_format, spread=4)
    b = random_inputs(rng, (K, N), unit.b_format, spread=4)
    a, b = np.where(np.isfinite(a), a, 1.0), np.where(np.isfinite(b), b, 1.0)
    a[2, 32:64:4] = a[2, 33:64:4] = 448.0   # group G1 of block 1 in row 2: sixteen 448 * 448 products
    b[32:64, :] = 448.0
    a[4, 20] = np.nan
    b[128 + 6, 2] = np.nan                  # k = 6 of the last block: its second group (G2)
    c = fp8sim.quantize(rng.standard_normal((M, N)), out)
    c[5, 1] = -np.inf
    got = matmul(a, b, c, unit=unit)
    want = np.array([[split_fp16_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    assert np.isnan(got[4]).all() and np.isinf(got[5, 1]) and np.isnan(got[:, 2]).all()


def test_unit_strings_name_the_instruction():
    assert fp8sim.gemm.resolve_unit("B200:e4m3@mma.sync") == tensor_core("B200", "e4m3", instruction="mma.sync")
    assert fp8sim.gemm.resolve_unit("B200:e4m3") == tensor_core("B200", "e4m3", instruction="tcgen05")
    assert fp8sim.gemm.resolve_unit("H100:e4m3").name == "H100:float8_e4m3fn@wgmma"
    with pytest.raises(ValueError, match="H100 has no instruction 'tcgen05'; it has \\['mma.sync', 'wgmma'\\]"):
        tensor_core("H100", "e4m3", instruction="tcgen05")
    with pytest.raises(ValueError, match="RTX50 mma.sync takes"):
        tensor_core("RTX50", "bfloat16")


@pytest.mark.parametrize("choices", [dict(rz_overflow="max"), dict(c_subnormal_exponent="true"),
                                     dict(rz_overflow="max", c_subnormal_exponent="true")])
@pytest.mark.parametrize("fmt", ["bfloat16", "e4m3", "tf32"])
def test_undecided_choices_engine_equals_twin(choices, fmt, rng):
    """The parameters for the choices no measurement decides, on data where they matter."""
    base = tensor_core("H100", fmt)
    unit = base.replace(**choices)
    f = unit.in_format
    K = 2 * unit.block
    a = random_inputs(rng, (6, K), f, spread=4)
    b = random_inputs(rng, (K, 3), f, spread=4)
    a[0] = fp8sim.quantize(np.full(K, f.max / 2), f)  # overflows FP32 for wide formats
    b[:, 0] = fp8sim.quantize(np.full(K, 4.0), f)
    a[1] = 0.0                                         # no products: C alone
    a[2] = fp8sim.quantize(np.full(K, f.smallest_subnormal), f)
    c = _addends(rng, (6, 3))
    c[1:3] = rng.integers(-2**22, 2**22, (2, 3)) * 2.0**-149  # FP32 subnormal C
    got = matmul(a, b, c, unit=unit)
    assert same(got, reference_matmul(a, b, c, unit)).all()
    if "rz_overflow" in choices and f.emax > 100:
        assert got[0, 0] == np.finfo(np.float32).max and np.isinf(matmul(a, b, c, unit=base)[0, 0])


def _exponent_band(rng, shape, fmt, lo, hi, zero_frac=0.1):
    """Values of fmt whose exponents lie in [lo, hi], both ends present, with signed zeros."""
    fmt = fp8sim.get_format(fmt)
    e = rng.integers(lo, hi + 1, shape)
    e.flat[0], e.flat[-1] = lo, hi
    x = np.ldexp(rng.uniform(1, 2, shape), e) * rng.choice([-1.0, 1.0], shape)
    x = fp8sim.quantize(x, fmt, "toward_zero")      # stays in [2**e, 2**(e+1))
    zero = rng.random(shape) < zero_frac
    x[zero] = np.where(rng.random(zero.sum()) < 0.5, 0.0, -0.0)
    return x


# the engine plans its work types on the exponents the data holds (issue 13): BF16, TF32 and FP16 data of
# ordinary magnitude take the float32 / int8 path; bands at the edges of each condition take either side
DATA_BANDS = [(-28, 27), (-29, 27), (-28, 28), (-67, 62), (-68, 62), (-60, 63), (-3, 3)]


@pytest.mark.parametrize("unit", [tensor_core(g, f) for g, f in [("H100", "bfloat16"), ("A100", "bfloat16"),
                                                                  ("H100", "tf32"), ("A100", "tf32"),
                                                                  ("V100", "float16"), ("B200", "bfloat16")]],
                         ids=lambda u: u.name)
@pytest.mark.parametrize("band", DATA_BANDS)
def test_data_planned_work_types_equal_classic_and_twin(unit, band, rng):
    from fp8sim.accumulate import _Plan

    lo, hi = band
    if unit.in_format.emin > lo or unit.in_format.emax < hi:
        pytest.skip("band outside the format")
    M, K, N = 5, 70, 4
    a = _exponent_band(rng, (M, K), unit.in_format, lo // 2, hi // 2)
    b = _exponent_band(rng, (K, N), unit.b_format, lo - lo // 2, hi - hi // 2)
    c = _addends(rng, (M, N))
    got = dot_chain(a, b, c, unit, tile_elems=2 * N * unit.block)
    classic = dot_chain(a, b, c, unit, engine="classic")
    np.testing.assert_array_equal(got.view(np.uint64), classic.view(np.uint64))
    assert same(got, reference_matmul(a, b, c, unit)).all()
    if band == (-3, 3):
        plan = _Plan(unit, a, b)   # ordinary data: float32 products and int8 exponents, whatever the format
        assert plan.dtype == np.float32 and plan.exp_dtype == np.int8


@pytest.mark.parametrize("unit", [tensor_core("H100", "float16"), tensor_core("H100", "bfloat16"),
                                  tensor_core("H100", "tf32"), tensor_core("V100", "float16"),
                                  tensor_core("A100", "bfloat16")], ids=lambda u: u.name)
def test_float64_step_int32_sums_at_their_largest(unit, rng):
    """The float64 step sums the truncated terms as int32 in chunks of 2**(29 - F): products with the
    largest significands, all of one sign, give the largest chunk sums; both engines and the twin agree."""
    from fp8sim.accumulate import _Plan

    f = unit.in_format
    top = 2.0 - 2.0 ** -f.mantissa_bits                    # the largest significand
    K, M, N = 4 * unit.block, 6, 5
    a = np.full((M, K), top) * np.exp2(rng.integers(-3, 4, (M, 1)))
    b = np.full((K, N), top)
    a[1] *= -1.0
    a[2, ::3] = fp8sim.quantize(rng.standard_normal(len(a[2, ::3])), f)     # mixed with ordinary values
    a[3] = fp8sim.quantize(a[3] * 0.75, f)
    c = np.zeros((M, N))
    c[4] = fp8sim.quantize(np.full(N, top * 2.0**10), "float32")
    plan = _Plan(unit, a, b)
    assert plan.f64 and plan.dtype == np.float32           # the path under test
    got = dot_chain(a, b, c, unit)
    classic = dot_chain(a, b, c, unit, engine="classic")
    np.testing.assert_array_equal(got.view(np.uint64), classic.view(np.uint64))
    assert same(got, reference_matmul(a, b, c, unit)).all()


F32_INT_UNITS = [tensor_core("A100", "bfloat16"), tensor_core("V100", "float16"), tensor_core("A100", "tf32"),
                 tensor_core("H100", "tf32"), tensor_core("B200", "tf32"), tensor_core("Ada", "float16")]


@pytest.mark.parametrize("unit", F32_INT_UNITS, ids=lambda u: u.name)
@pytest.mark.parametrize("state", ["float32", "float64"])
def test_float32_step_with_int32_sums_at_its_range_edges(unit, state, rng):
    """The float32 step with int32 sums (plan.f32_int: FP32 results whose float32 block sums would not
    be exact), on data it applies to (input exponents within 28 of zero): C's biased exponent at the
    lowest and highest of the step's range and one beyond each (those tiles take the general step),
    products with the largest significands of one sign, all-zero blocks, signed zeros, cancellation
    to zero, K not a multiple of the block; in one-row tiles and in one tile.  ``state="float64"``: a
    C that is not an FP32 value keeps a float64 state and the float64 step.  Engines and twin agree
    bit for bit."""
    from fp8sim.accumulate import _Plan

    f = unit.in_format
    M, K, N = 9, 3 * unit.block + 5, 4
    a = fp8sim.quantize(rng.standard_normal((M, K)), f)
    b = fp8sim.quantize(rng.standard_normal((K, N)), f)
    top = 2.0 - 2.0 ** -f.mantissa_bits
    e_top = min(f.emax, 27)
    a[0], b[:, 0] = top * 2.0**e_top, top * 2.0**e_top   # the largest products the step takes, one sign
    a[7, -1], b[-1, 3] = 2.0**-16, 2.0**-16              # and small ones (a zero input stays below)
    a[2, :unit.block] = 0.0                               # C alone in the first block
    a[3] = 0.0                                            # and in every block
    a[4, :unit.block] = -0.0
    plan = _Plan(unit, a, b)
    assert plan.f32 and plan.f32_int and plan.f64         # the path under test
    lo, hi = plan.f32_range
    c = fp8sim.quantize(rng.standard_normal((M, N)), "float32")
    c[0] = np.ldexp(1.5, hi - 127) * np.array([1, -1, 1, 2.0**-100])
    c[1] = np.ldexp(1.0, hi + 1 - 127)                    # beyond the top: the general step
    c[2] = np.ldexp(1.0, lo - 127) * np.array([1, -1, 1.5, -1.75])
    c[3] = np.ldexp(1.0, lo - 1 - 127)                    # below the bottom: the general step
    c[3, 0] = np.ldexp(1.5, lo - 40 - 127)  # far below the exponent a zero input and the top one make
    c[4] = [0.0, -0.0, 2.0**-149, -1.0]
    c[5] = -fp8sim.quantize(dot_chain(a[5:6, :unit.block], b[:unit.block], np.zeros((1, N)), unit), "float32")
    c[8, :3] = [np.inf, -np.inf, np.nan]                  # outside the range too
    if state == "float64":
        c[6, 0] = 1.0 + 2.0**-40                          # not an FP32 value
    with np.errstate(invalid="ignore"):
        classic = dot_chain(a, b, c, unit, engine="classic")
        for tile in (N * unit.block, M * N * unit.block):
            got = dot_chain(a, b, c, unit, tile_elems=tile)
            np.testing.assert_array_equal(got.view(np.uint64), classic.view(np.uint64))
    assert same(classic, reference_matmul(a, b, c, unit)).all()


C_AFTER_CASES = [(tensor_core("B200", "e4m3", instruction="mma.sync"), (-12, 16), True),
                 (tensor_core("B200", "e5m2", instruction="mma.sync"), (-28, 30), True),
                 (tensor_core("B200", "e4m3", instruction="mma.sync").replace(in_format="bfloat16",
                                                                             b_format="bfloat16"), (-3, 3), True),
                 (tensor_core("B200", "e4m3", instruction="mma.sync").replace(in_format="bfloat16",
                                                                             b_format="bfloat16"), (-110, 10), False),
                 (tensor_core("B200", "e4m3", instruction="mma.sync").replace(in_format="bfloat16",
                                                                             b_format="bfloat16"), (-20, 124), False)]


@pytest.mark.parametrize("unit, band, fast", C_AFTER_CASES, ids=lambda x: getattr(x, "name", str(x)))
def test_c_after_alignment_step_equals_classic_and_twin(unit, band, fast, rng):
    """C outside the alignment (B200 mma.sync FP8): the products' truncated sum masked to FP32, then C
    added with one nearest-even rounding, where plan.c_after's conditions hold (and the general step
    where they do not): the largest significands of one sign, all-zero blocks, signed zero, subnormal
    and large cancelling C, K not a multiple of the block; engines and twin agree bit for bit."""
    from fp8sim.accumulate import _Plan

    f = unit.in_format
    lo, hi = band
    M, K, N = 7, 2 * unit.block + 9, 5
    a = _exponent_band(rng, (M, K), f, lo // 2, hi // 2)
    b = _exponent_band(rng, (K, N), unit.b_format, lo - lo // 2, hi - hi // 2)
    top = 2.0 - 2.0 ** -f.mantissa_bits
    a[0], b[:, 0] = top * 2.0 ** (hi // 2), top * 2.0 ** (hi - hi // 2)   # one sign, largest significands
    a[1, :unit.block] = 0.0                                               # an all-zero block
    c = _addends(rng, (M, N))
    c[2] = [0.0, -0.0, 2.0**-149, -3 * 2.0**-140, 1.0]
    assert _Plan(unit, a, b).c_after == fast
    with np.errstate(over="ignore", invalid="ignore"):    # the widest band overflows FP32 (as matmul runs it)
        c[3] = -fp8sim.quantize(dot_chain(a[3:4], b, np.zeros((1, N)), unit), "float32")  # cancels the sums
        got = dot_chain(a, b, c, unit, tile_elems=2 * N * unit.block)
        classic = dot_chain(a, b, c, unit, engine="classic")
    np.testing.assert_array_equal(got.view(np.uint64), classic.view(np.uint64))
    assert same(got, reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("unit", [tensor_core("H100", "e4m3"), tensor_core("H100", "bfloat16"),
                                  tensor_core("A100", "tf32")], ids=lambda u: u.name)
@pytest.mark.parametrize("tiles", ["one", "several"])
def test_state_turning_infinite_mid_chain(unit, tiles, rng):
    """The k-major engine tries the steps on bits first, on the state as it is; a state that has become
    Inf or NaN (here from products beyond FP32 in one block, or an infinite C) falls outside their range
    and the block's products, already formed, go through the special-value rules: both engines and the
    twin agree over the following finite blocks, in one row tile or several."""
    f = unit.in_format
    M, K, N = 6, 4 * unit.block + 3, 3
    a = fp8sim.quantize(rng.standard_normal((M, K)), f)
    b = fp8sim.quantize(rng.standard_normal((K, N)), f)
    c = fp8sim.quantize(rng.standard_normal((M, N)), "float32")
    c[4, 1], c[5, 2] = np.inf, -np.inf
    if f.emax > 100:    # products beyond FP32 in the second block of row 1
        a[1, unit.block:2 * unit.block] = fp8sim.quantize(2.0**100, f)
        b[unit.block:2 * unit.block] = fp8sim.quantize(2.0**100, f)
    tile = M * N * unit.block if tiles == "one" else 2 * N * unit.block
    with np.errstate(over="ignore", invalid="ignore"):
        got = dot_chain(a, b, c, unit, tile_elems=tile)
        classic = dot_chain(a, b, c, unit, engine="classic")
    assert same(got, classic).all()
    assert same(got, reference_matmul(a, b, c, unit)).all()
    assert np.isinf(got[4, 1]) and np.isinf(got[5, 2])
    if f.emax > 100:
        assert not np.isfinite(got[1]).any()


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "e4m3fnuz", "e5m2fnuz", "e2m1", "e3m2", "float16", "bfloat16",
                                 "tf32"])
def test_exponents_from_float32_fields_equal_clamped_exponents(fmt, rng):
    """The k-major engines read float32 operands' exponents from their fields (_ProductRange.exponents32):
    equal to clamped_exponents (frexp, clamped at the format's emin, zeros at no_exp) on every code of
    the format (its subnormals, both zeros; for BF16 and TF32 float32 subnormals too), in int8 and int16."""
    from fp8sim.accumulate import _ProductRange, clamped_exponents

    f = fp8sim.get_format(fmt)
    if f.bits <= 16:
        codes = np.arange(2**f.bits, dtype=np.uint32)
        x = fp8sim.decode(codes, f)
    else:   # tf32: random patterns of its 19 bits, and its smallest values
        x = fp8sim.quantize(rng.standard_normal(50000) * np.exp2(rng.integers(-140, 128, 50000)), f)
        x = np.concatenate([x, [f.smallest_subnormal, -f.smallest_subnormal, f.smallest_normal, 0.0, -0.0]])
    x = x[np.isfinite(x)].astype(np.float32)
    for a, b in [(None, None), (np.array([[2.0**40]]), np.array([[1.0]]))]:   # int8, then int16 exponents
        pr = _ProductRange(f, f, a, b)
        want = clamped_exponents(x.astype(np.float64), f, pr.no_exp).astype(pr.exp_dtype)
        got = pr.exponents32(x, f)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert (x == 0).any() and (np.abs(x[x != 0]) < f.smallest_normal).any()


@pytest.mark.parametrize("unit", [tensor_core("H100", "e4m3"), tensor_core("A100", "bfloat16"),
                                  tensor_core("H100", "bfloat16"), tensor_core("V100", "float16")],
                         ids=lambda u: u.name)
def test_non_finite_operand_in_the_first_chunk_only(unit, rng):
    """A non-finite input in the first chunk of K that the k-major engine prepares (here in the first
    block) turns rows infinite or NaN; the chunks after it are finite and go through the steps on bits
    first, whose range check must hand those rows to the special-value rules: both engines and the
    twin agree over three chunks."""
    f = unit.in_format
    M, K, N = 4, 300, 3                       # 128-element chunks: the special one and two finite ones
    a = fp8sim.quantize(rng.standard_normal((M, K)), f)
    b = fp8sim.quantize(rng.standard_normal((K, N)), f)
    a[0, 1] = np.inf if f.has_inf else np.nan
    a[2, 3] = np.nan if f.has_nan else a[2, 3]
    b[2, 1] = -np.inf if f.has_inf else b[2, 1]
    c = fp8sim.quantize(rng.standard_normal((M, N)), "float32")
    with np.errstate(invalid="ignore"):
        got = dot_chain(a, b, c, unit)
        classic = dot_chain(a, b, c, unit, engine="classic")
    assert same(got, classic).all()
    assert same(got, reference_matmul(a, b, c, unit)).all()
    assert not np.isfinite(got[0]).any()



@pytest.mark.parametrize("unit", [tensor_core("A100", "bfloat16"), tensor_core("H100", "bfloat16"),
                                  tensor_core("A100", "tf32")], ids=lambda u: u.name)
def test_zero_input_never_sets_the_alignment(unit, rng):
    """A zero input's exponent must stay below every non-zero product's: with data spanning 2**-28 to
    2**27, a zero met by 2**27 next to products of 2**-56 (an int8 zero exponent of -60 gave -33) once
    set the alignment and truncated those products in both engines; the twin aligns on the non-zero
    products only.  The exact case, then random blocks built to contain it; engines and twin agree."""
    m = fp8sim.quantize(1 + 3 * 2.0**-7, unit.in_format)
    a = np.array([[0.0, m * 2.0**-28, -m * 2.0**-28, 0.0]])
    b = np.array([[2.0**27], [m * 2.0**-28], [-m * 2.0**-28], [2.0**27]])
    want = block_fma_dot(a[0], b[:, 0], 0.0, unit)
    assert want == 2 * m * m * 2.0**-56                       # exact: the products alone set the alignment
    for engine in ("kmajor", "classic"):
        assert dot_chain(a, b, np.zeros((1, 1)), unit, engine=engine)[0, 0] == want
    M, K, N = 6, 3 * unit.block + 3, 5
    a = _exponent_band(rng, (M, K), unit.in_format, -28, -22, zero_frac=0.3)   # small values and zeros
    b = _exponent_band(rng, (K, N), unit.b_format, -28, -22, zero_frac=0.05)   # small ones
    b[a[0] == 0] = 2.0**27              # row 0: every zero meets the largest value, its products stay small
    c = _addends(rng, (M, N))
    c[0] = 0.0
    got = dot_chain(a, b, c, unit, tile_elems=2 * N * unit.block)
    classic = dot_chain(a, b, c, unit, engine="classic")
    np.testing.assert_array_equal(got.view(np.uint64), classic.view(np.uint64))
    assert same(got, reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("tiles", [False, True], ids=["one_tile", "row_tiles"])
@pytest.mark.parametrize("unit", [tensor_core("H100", "e4m3"), tensor_core("A100", "bfloat16"),
                                  tensor_core("A100", "tf32")], ids=lambda u: u.name)
def test_float32_runs_stop_and_resume_mid_chunk(unit, tiles, rng, monkeypatch):
    """The k-major engine runs each row tile through a chunk's blocks with the float32 step in one loop
    (_f32_run).  Here block 1 cancels block 0 exactly (products of +-1, C = 0) and block 2 is all
    zeros, so the range check fails inside the first chunk (no products and a zero C): the run must
    stop there, that block take the per-block path from the state before it, and the run resume at
    block 3.  With one row per tile (``tiles``), only row 0 has the zero block: its tile stops and
    resumes, the others run through.  The runs seen are exactly those; both engines and the twin
    agree."""
    from fp8sim import accumulate

    f, blk = unit.in_format, unit.block
    M, K, N = 3, 2 * 128 + 3, 4              # two chunks of 128 and a partial last block
    a = fp8sim.quantize(rng.uniform(1, 2, (M, K)) * rng.choice([-1, 1], (M, K)), f)
    b = fp8sim.quantize(rng.uniform(1, 2, (K, N)), f)
    a[:, :blk] = rng.choice([-1.0, 1.0], (M, blk))
    a[:, blk:2 * blk] = -a[:, :blk]
    b[:2 * blk] = 1.0
    a[0 if tiles else slice(None), 2 * blk:3 * blk] = 0.0
    runs = []
    run = accumulate._f32_run

    def recorded(plan, aT_c, eaT_c, bk_c, ebk_c, c, j0, j1, *bufs):
        c, stop = run(plan, aT_c, eaT_c, bk_c, ebk_c, c, j0, j1, *bufs)
        runs.append((j0, stop))
        return c, stop

    monkeypatch.setattr(accumulate, "_f32_run", recorded)
    if tiles:
        monkeypatch.setattr(accumulate, "KMAJOR_PLANE", N)
    c = np.zeros((M, N))
    got = dot_chain(a, b, c, unit)
    if tiles:
        assert runs == [(0, 2 * blk), (3 * blk, 128), (0, 128), (0, 128)] + [(0, 128)] * 3
    else:
        assert runs == [(0, 2 * blk), (3 * blk, 128), (0, 128)]
    assert same(got, dot_chain(a, b, c, unit, engine="classic")).all()
    assert same(got, reference_matmul(a, b, c, unit)).all()


@pytest.mark.parametrize("gpu, fmt", [("A100", "tf32"), ("H100", "e4m3"), ("V100", "float16")])
def test_float32_runs_unchecked_only_in_range(gpu, fmt, rng, monkeypatch):
    """A float32 run skips the per-step range check only where it has shown, once, that the range
    holds for the whole run (_f32_in_range): no zero input, and C bounded below 2**(127 - L).  One
    row per tile: ordinary rows run unchecked; a row with a zero input, and one whose C starts at
    2**126, run checked (the latter's steps leave the range and take the per-block path).  Engine,
    classic engine and twin agree."""
    from fp8sim import accumulate

    unit = tensor_core(gpu, fmt)
    f, M, K, N = unit.in_format, 4, 2 * 128, 3
    a = fp8sim.quantize(rng.uniform(1, 2, (M, K)) * rng.choice([-1.0, 1.0], (M, K)), f)
    b = fp8sim.quantize(rng.uniform(1, 2, (K, N)) * rng.choice([-1.0, 1.0], (K, N)), f)
    a[1, 130] = 0.0                                     # a zero input in row 1's second chunk
    c = fp8sim.quantize(rng.standard_normal((M, N)), "float32")
    c[2] = 1.5 * 2.0**126
    assert accumulate._Plan(unit, a, b).f32_static
    seen = {}
    run = accumulate._f32_in_range

    def recorded(plan, aT, eaT, bk, ebk, c):
        kind = "huge C" if np.abs(c).max() >= 2.0**125 else "zero" if (eaT == plan.no_exp).any() else "plain"
        seen.setdefault(kind, []).append(run(plan, aT, eaT, bk, ebk, c))
        return seen[kind][-1]

    monkeypatch.setattr(accumulate, "_f32_in_range", recorded)
    monkeypatch.setattr(accumulate, "KMAJOR_PLANE", N)
    got = dot_chain(a, b, c, unit)
    assert {k: set(v) for k, v in seen.items()} == {"plain": {True}, "zero": {False}, "huge C": {False}}
    assert len(seen["plain"]) == 2 * 3 - 1 and len(seen["zero"]) == 1   # rows 0, 1, 3; row 1 in chunk 1
    assert same(got, dot_chain(a, b, c, unit, engine="classic")).all()
    assert same(got, reference_matmul(a, b, c, unit)).all()


def test_twin_promotion_adds_zeros_as_ieee():
    """Promotion adds each chain's result into FP32 with an IEEE addition: -0 + -0 is -0, +0 + -0 and
    an exact cancellation are +0.  The twin's addition once went through a Fraction and lost the sign
    (found by experiments/fuzz_engines.py).  A chain's zero result is +0, also where a tiny negative
    sum underflows (FP16-output units), so a C of -0 promoted with such chains gives +0, in both."""
    from fp8sim.reference import _add_fp32

    assert np.signbit(_add_fp32(-0.0, -0.0)) and not np.signbit(_add_fp32(0.0, -0.0))
    assert not np.signbit(_add_fp32(-0.0, 0.0)) and not np.signbit(_add_fp32(1.5, -1.5))
    unit = tensor_core("A100", "bfloat16", out_format="float16")
    a, b = np.full((1, 16), 2.0**-60), np.full((16, 1), -(2.0**-60))   # products far below FP16's range
    for c0 in (-0.0, 0.0):
        want = block_fma_dot(a[0], b[:, 0], c0, unit, promote_every=8)
        got = matmul(a, b, np.array([[c0]]), unit=unit, promote_every=8)[0, 0]
        assert want == 0 and not np.signbit(want) and same(got, want)


@pytest.mark.parametrize("gpu", ["H100", "B200"])
def test_split_fp16_zero_results_are_positive(gpu):
    """The FP16-path emulation: a block whose second FP16 step rounds a tiny negative sum (E5M2
    subnormals: 2**-32) to zero gives +0 from that step (a zero result is +0, MMA-Sim's rule for the
    units it models), then C is added with an IEEE addition: +0 for C = +0 and -0.  (The twin's
    last addition once went through a Fraction; found by experiments/fuzz_engines.py.)  Engine and
    twin agree."""
    from fp8sim.reference import split_fp16_dot

    unit = tensor_core(gpu, "e5m2", out_format="float16", instruction="mma.sync")
    tiny = fp8sim.get_format("e5m2").smallest_subnormal
    a = np.array([[0.0, 0.0, -tiny]])                         # k = 0, 1: the first step; k = 2: the second
    b = np.array([[-1.0], [1.0], [tiny]])
    for c0 in (-0.0, 0.0):
        want = split_fp16_dot(a[0], b[:, 0], c0, unit)
        got = matmul(a, b, np.array([[c0]]), unit=unit)[0, 0]
        assert want == 0 and not np.signbit(want) and same(got, want)


def exact_tier_operands(rng, unit, M, K, N):
    """Operands on which the exact tiers run: ordinary FP8 values, or BF16 over few binades (where its
    products stay on the grid); some zeros, and row 3 all -0."""
    if unit.in_format.name == "bfloat16":
        a = fp8sim.quantize(rng.uniform(1, 2, (M, K)) * rng.choice([-1.0, 1.0], (M, K)), unit.in_format)
        b = fp8sim.quantize(rng.uniform(1, 4, (K, N)) * rng.choice([-1.0, 1.0], (K, N)), unit.b_format)
    else:
        a = fp8sim.quantize(rng.standard_normal((M, K)), unit.in_format, overflow="saturate")
        b = fp8sim.quantize(rng.standard_normal((K, N)), unit.b_format, overflow="saturate")
    a[rng.random((M, K)) < 0.05] = 0.0
    a[3] = -0.0
    return a, b


def check_bound_cases(rng, unit, twin, cases):
    """Each case ``(a_row, b_col, c, expected)`` on the diagonal of a 24 x 24 product of one block,
    among ordinary elements (uniform inputs in [1, 2), C in [64, 128)), so that an exact tier runs on
    the tile and sends only the cases past its bounds elsewhere: engine equals twin bit for bit, and
    each case gives its expected value."""
    M, N = 24, 24
    a = fp8sim.quantize(rng.uniform(1, 2, (M, unit.block)), unit.in_format)
    b = fp8sim.quantize(rng.uniform(1, 2, (unit.block, N)), unit.in_format)
    c = fp8sim.quantize(rng.uniform(64, 128, (M, N)), "float32")
    for r, (ar, br, cr, _) in enumerate(cases):
        a[r], b[:, r], c[r, r] = 0.0, 0.0, cr
        a[r, :len(ar)], b[:len(br), r] = ar, br
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[twin(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    assert [got[r, r] for r in range(len(cases))] == [x for *_, x in cases]


def _nvidia_exact_tier_calls(monkeypatch):
    """Record whether each step of the NVIDIA exact tier computed its tile-step."""
    import fp8sim.accumulate as acc

    calls = []
    step = acc._exact_f64_step

    def spy(*args):
        res = step(*args)
        calls.append(res is not None)
        return res

    monkeypatch.setattr(acc, "_exact_f64_step", spy)
    return calls


@pytest.mark.parametrize("gpu, fa, fb", [("B200", "e4m3", None), ("B200", "e5m2", "e4m3"), ("B200", "e2m1", None),
                                         ("RTX50", "e4m3", None), ("H100", "bfloat16", None)])
def test_exact_tier_equals_twin(gpu, fa, fb, rng, monkeypatch):
    """The exact tier of the truncating units with F >= 23 (a step as S + C with its float64 fraction
    masked, S the block's exact product sum by a float64 matrix product) on data where it runs:
    ordinary values (BF16 over few binades), C from zero to far above the products, a few C far
    outside (those elements take the general step), zero rows and -0, K not a multiple of the block;
    engine equals twin, and the tier computed tile-steps."""
    calls = _nvidia_exact_tier_calls(monkeypatch)
    unit = tensor_core(gpu, fa, b_format=fb)
    M, N, K = 24, 20, 3 * unit.block + 5
    a, b = exact_tier_operands(rng, unit, M, K, N)
    c = fp8sim.quantize(rng.standard_normal((M, N)) * 64, "float32")
    c[rng.random((M, N)) < 0.03] *= 2.0**40
    c[rng.random((M, N)) < 0.03] *= 2.0**-40
    c[rng.random((M, N)) < 0.1] = 0.0
    c[3, :4] = -0.0
    got = fp8sim.matmul(a, b, c, unit=unit)
    assert same(got, reference_matmul(a, b, c, unit)).all()
    assert any(calls)


def test_exact_tier_bounds(rng, monkeypatch):
    """Each bound of the NVIDIA exact tier (B200 ``tcgen05`` E4M3, F = 25) at its edge, one element just
    past it among ordinary ones (so the tier runs and sends that element to the general step): where
    the bound were one binade looser, the tier would keep a bit that the unit's truncation onto
    ``2**(E - 25)`` drops, and truncating the sum to FP32 would land one grid point lower.

    - C 3 binades below the products (``e_C = e_dot - 3``): C = -(2**-3 + 2**-26) loses 2**-26, S =
      1 + 2**-3: 1, where the exact sum 1 - 2**-26 truncates to 1 - 2**-24;
    - C 26 binades above the products' grid (``e_C = Lb + 26``): C = 1536 sets the grid 2**-15, the
      product -81 * 2**-16 truncates to -80 * 2**-16: 1536 - 80 * 2**-16, not 1536 - 88 * 2**-16;
    - products 26 binades apart (``e_dot - Lb = 26``), C = 0: 1024 and -81 * 2**-16 on the grid
      2**-15: 1024 - 80 * 2**-16, not 1024 - 84 * 2**-16."""
    calls = _nvidia_exact_tier_calls(monkeypatch)
    unit = tensor_core("B200", "e4m3")
    t = 1.125 * 2.0**-5
    cases = [([1.0, 0.5], [1.0, 0.25], -(2.0**-3 + 2.0**-26), 1.0),
             ([t], [-t], 1536.0, 1536 - 80 * 2.0**-16),
             ([32.0, t], [32.0, -t], 0.0, 1024 - 80 * 2.0**-16)]
    check_bound_cases(rng, unit, block_fma_dot, cases)
    assert calls == [True]


@pytest.mark.parametrize("k", [1, 4, 8, 16, 32, 128])
def test_block_exponents23_is_the_largest_exponent_sum(k, rng):
    """The exponent maxima from float64 matrix products of powers of 2**8 (block_exponents23) against
    a loop over each block: int8 exponents over the whole range a plan uses ([-28, 28]) with zeros'
    -60, a block whose k sums all equal the largest one (the sums' largest total, 2**7 for k = 128,
    still below the next multiple of 8), a block of zeros only (-120, the smallest), the largest sum
    (56), and a row tile sliced out of wider codes, as the engines pass them."""
    from fp8sim.accumulate import block_exponents23, exponent_code

    nb, r, n = 3, 6, 5
    eaT = rng.integers(-28, 29, (nb * k, r + 2)).astype(np.int8)
    eb = rng.integers(-28, 29, (nb * k, n)).astype(np.int8)
    eaT[rng.random(eaT.shape) < 0.2] = -60
    eb[rng.random(eb.shape) < 0.2] = -60
    eaT[:k, 1], eb[:k, 0] = 28, 28                  # block 0, (0, 0): k sums of 56
    eaT[k:2 * k, 2], eb[k:2 * k, 1] = -60, -60      # block 1, (1, 1): zeros only
    eaT[2 * k:, 3], eb[2 * k:, 2] = -28, 0          # block 2, (2, 2): k equal sums of -28
    eaT[2 * k + k // 2, 3] = -27                    # ... one of them -27
    want = np.empty((nb, r, n), np.int64)
    for blk in range(nb):
        for i in range(r):
            for j in range(n):
                want[blk, i, j] = max(int(eaT[blk * k + t, i + 1]) + int(eb[blk * k + t, j]) for t in range(k))
    assert want[0, 0, 0] == 56 and want[1, 1, 1] == -120 and want[2, 2, 2] == -27
    codes = exponent_code(eaT, True)[:, 1:r + 1], exponent_code(eb, False)
    got = block_exponents23(*codes, k, np.empty((nb, r + 1, n + 2)))
    assert got.dtype == np.int32 and got.shape == (nb, r, n)
    np.testing.assert_array_equal(got, (want + 127) << 23)


CODED_UNITS = [tensor_core(g, f) for g, f in [("H100", "e4m3"), ("Ada", "e5m2"), ("A100", "float16"),
                                              ("H100", "tf32"), ("A100", "bfloat16"), ("A100", "tf32"),
                                              ("H100", "bfloat16"), ("B200", "e4m3"), ("B200", "float16")]]
CODED_UNITS.append(tensor_core("B200", "e4m3", instruction="mma.sync"))    # C outside the alignment


@pytest.mark.parametrize("unit", CODED_UNITS, ids=lambda u: u.name)
def test_coded_exponent_maxima_equal_int8_sums(unit, rng, monkeypatch):
    """The k-major engine takes its exponent maxima from matrix products for blocks of
    CODED_EXP_BLOCK or more (block_exponents23) and from int8 sums below, in the float32 runs and
    block by block (the float64 steps on bits, C outside the alignment, the general step): the same
    bits either way, and the twin's, on data with zeros (zero rows: blocks without products, C
    alone), C of every kind (_addends), a partial last block and row tiles.  The path named is the
    path taken (A100 TF32, blocks of 4, made to take the coded one)."""
    from fp8sim import accumulate

    M, K, N = 7, 2 * 128 + 3 * unit.block + 5, 6
    f = unit.in_format
    lo, hi = max(f.emin, -14), min(f.emax, 13)
    a = _exponent_band(rng, (M, K), f, lo, hi, zero_frac=0.15)
    b = _exponent_band(rng, (K, N), unit.b_format, lo, hi, zero_frac=0.15)
    a[2] = 0.0
    a[4, : 3 * unit.block] = 0.0
    c = _addends(rng, (M, N))
    assert accumulate._Plan(unit, a, b).exp_dtype == np.int8
    calls = []
    coded = accumulate.block_exponents23
    monkeypatch.setattr(accumulate, "block_exponents23", lambda *args: calls.append(1) or coded(*args))
    results = {}
    for first in (4, 10**9):          # coded for every block size, then never
        monkeypatch.setattr(accumulate, "CODED_EXP_BLOCK", first)
        for tile in (None, 2 * N * unit.block):
            calls.clear()
            results[first, tile] = dot_chain(a, b, c, unit, tile_elems=tile)
            assert bool(calls) == (first == 4)
    want = results[4, None]
    for got in results.values():
        np.testing.assert_array_equal(got.view(np.uint64), want.view(np.uint64))
    assert same(want, reference_matmul(a, b, c, unit)).all()
