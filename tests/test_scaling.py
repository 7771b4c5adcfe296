import gfloat
import numpy as np
import pytest
from gfloat.formats import (format_info_mxfp4_e2m1, format_info_mxfp6_e2m3, format_info_mxfp6_e3m2,
                            format_info_mxfp8_e4m3, format_info_mxfp8_e5m2)

import fp8sim
from fp8sim import DelayedScaling, quantize_scaled, scaled_matmul
from fp8sim.formats import get_format
from fp8sim.reference import block_scale, scaled_element, scaled_gemm



def data(rng, shape, outliers=True):
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-4, 5, shape))
    if outliers:
        x.flat[rng.integers(0, x.size, 3)] *= 300
    x.flat[rng.integers(0, x.size, 2)] = 0.0
    return x


def blocks_of(st, x):
    """Yield (block index, block values, element values) for every tile of a 2-D tensor."""
    tm, tn = st.tile
    for i in range(st.scales.shape[0]):
        for j in range(st.scales.shape[1]):
            sl = (slice(i * tm, (i + 1) * tm), slice(j * tn, (j + 1) * tn))
            yield (i, j), x[sl], st.values[sl]


CASES = [
    ("e4m3", "tensor", {}), ("e4m3", "row", {}), ("e5m2", "col", {}), ("e4m3", (1, 128), {}),
    ("e4m3", (128, 128), {}), ("e5m2", (3, 5), {}), ("e4m3", (1, 128), {"pow2": "ceil"}),
    ("e4m3", "row", {"pow2": "floor", "margin": 1}), ("e4m3", "tensor", {"amax_epsilon": 1e3}),
    ("e4m3", (2, 7), {"rounding": "toward_zero"}),
]


@pytest.mark.parametrize("fmt, gran, kw", CASES, ids=[f"{f}-{g}-{k}" for f, g, k in CASES])
def test_fp32_scaled_equals_reference(fmt, gran, kw, rng):
    x = data(rng, (130, 260))
    st = quantize_scaled(x, fmt, gran, **kw)
    rounding = kw.pop("rounding", "nearest_even")
    for idx, blk, vals in blocks_of(st, x):
        s = block_scale(blk.ravel(), fmt, "fp32", **kw)
        assert st.scales[idx] == s
        want = [scaled_element(v, s, fmt, rounding) for v in blk.ravel()]
        assert same64(vals.ravel(), want).all()


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "e2m3", "e3m2", "e2m1"])
@pytest.mark.parametrize("mode", ["floor", "ceil"])
def test_mx_equals_reference(fmt, mode, rng):
    x = data(rng, (5, 70))
    st = quantize_scaled(x, fmt, "mx32", mx_scale=mode)
    assert st.scale_format.name == "float8_e8m0fnu" and st.tile == (1, 32)
    for idx, blk, vals in blocks_of(st, x):
        s = block_scale(blk.ravel(), fmt, "mx_" + mode)
        assert st.scales[idx] == s
        assert same64(vals.ravel(), [scaled_element(v, s, fmt) for v in blk.ravel()]).all()
    fp8sim.encode(st.scales, "e8m0")  # every scale is an E8M0 value


GFLOAT_MX = {"e4m3": format_info_mxfp8_e4m3, "e5m2": format_info_mxfp8_e5m2, "e2m3": format_info_mxfp6_e2m3,
             "e3m2": format_info_mxfp6_e3m2, "e2m1": format_info_mxfp4_e2m1}


@pytest.mark.parametrize("fmt", sorted(GFLOAT_MX))
def test_mx_matches_gfloat(fmt, rng):
    """An independent implementation (gfloat's block quantization), value for value."""
    x = data(rng, (40, 64))
    ours = quantize_scaled(x, fmt, "mx32").dequantize()
    theirs = np.concatenate([gfloat.quantize_block(GFLOAT_MX[fmt], blk, gfloat.compute_scale_amax)
                             for blk in x.reshape(-1, 32)]).reshape(x.shape)
    assert same64(ours, theirs).all()


def test_mx_worked_examples():
    """Hand-worked from OCP MX v1.0 section 6.3: X = 2**(floor(log2 amax) - emax_elem),
    elements rounded to nearest-even and clamped to the element format's max."""
    # E4M3 (emax 8): amax 1000 -> floor(log2) 9 -> X = 2; 1000 / 2 = 500 clamps to 448
    st = quantize_scaled(np.array([1.0, -2.0, 1000.0, 3.0]), "e4m3", "mx32")
    assert st.scales.tolist() == [2.0] and st.values.tolist() == [0.5, -1.0, 448.0, 1.5]
    # E2M1 (emax 2): amax 5 -> X = 2**0; 0.3 -> 0.5 (nearest of 0, 0.5), 1.25 -> 1 (tie to even), 5 -> 4
    st = quantize_scaled(np.array([0.3, 1.25, 5.0, -0.2]), "e2m1", "mx32")
    assert st.scales.tolist() == [1.0] and st.values.tolist() == [0.5, 1.0, 4.0, -0.0]
    # E5M2 (emax 15): amax 2**-140 -> X clipped to 2**-127 (E8M0's smallest)
    st = quantize_scaled(np.array([2.0**-140, 2.0**-141]), "e5m2", "mx32")
    assert st.scales.tolist() == [2.0**-127] and st.values.tolist() == [2.0**-13, 2.0**-14]


def test_nvfp4_equals_reference(rng):
    x = data(rng, (6, 48))
    st = quantize_scaled(x, "e2m1", "nvfp4")
    assert st.tile == (1, 16) and st.scale_format.name == "float8_e4m3fn"
    g = st.global_scale
    assert g == fp8sim.quantize(np.abs(x).max() / (448 * 6), "float32")
    for idx, blk, vals in blocks_of(st, x):
        s = block_scale(blk.ravel(), "e2m1", "nvfp4", global_scale=g)
        assert st.scales[idx] == s
        assert same64(vals.ravel(), [scaled_element(v, s * g, "e2m1") for v in blk.ravel()]).all()


@pytest.mark.parametrize("fmt, gran", [("e4m3", "tensor"), ("e4m3", (1, 128)), ("e5m2", (128, 128)),
                                       ("e4m3", "mx32"), ("e2m1", "mx32"), ("e3m2", "mx32")])
def test_round_trip_error_within_bound(fmt, gran, rng):
    f = get_format(fmt)
    x = data(rng, (128, 256))
    st = quantize_scaled(x, fmt, gran)
    s = st.expanded_scales()
    y = np.abs(x) / s
    # half a spacing at |x / s| (subnormal spacing below), plus what saturation clipped
    spacing = np.maximum(np.exp2(np.floor(np.log2(np.maximum(y, f.smallest_normal))) - f.mantissa_bits),
                         f.smallest_subnormal)
    bound = s * spacing / 2 + np.maximum(0, np.abs(x) - f.max * s)
    err = np.abs(st.dequantize() - x)
    assert np.all(err <= bound * (1 + 1e-12))
    assert np.mean(err <= bound * 0.75) > 0.3  # the bound is not vacuous


def test_zero_blocks_get_valid_scales():
    x = np.zeros((4, 256))
    x[0, :3] = [1.0, 2.0, 3.0]
    for gran in ["tensor", "row", (1, 128), (2, 2), "mx32", "nvfp4"]:
        fmt = "e2m1" if gran == "nvfp4" else "e4m3"
        st = quantize_scaled(x, fmt, gran)
        assert np.isfinite(st.scales[np.isfinite(st.scales)]).all() and not np.isnan(st.scales).any()
        assert np.all(st.dequantize()[1:] == 0)


def test_nonfinite_inputs():
    x = np.ones((2, 64))
    x[1, 40] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        quantize_scaled(x, "e4m3", "row")
    st = quantize_scaled(x, "e4m3", "mx32")  # OCP: the block's scale is NaN
    deq = st.dequantize()
    assert np.isnan(st.scales[1, 1]) and np.isnan(deq[1, 32:]).all() and np.isfinite(deq[:, :32]).all()
    st = quantize_scaled(x, "e4m3", "row", nonfinite="propagate")
    assert np.isnan(st.dequantize()[1]).all() and np.isfinite(st.dequantize()[0]).all()


def test_delayed_scaling_history():
    ds = DelayedScaling("e4m3", history_len=3, algo="max")
    amaxes = [1.0, 2.0, 100.0, 3.0, 2.0, 1.0, 1.0]
    used = []
    for a in amaxes:
        st = quantize_scaled(np.array([a, -a / 2]), "e4m3", delayed=ds)
        used.append(st.scales.item())
    expected = [1.0]
    for i in range(1, len(amaxes)):
        window = amaxes[max(0, i - 3):i]
        expected.append(float(fp8sim.quantize(max(window) / 448, "float32")))
    assert used == expected
    assert used[3] == used[4] == used[5] == float(fp8sim.quantize(100 / 448, "float32"))
    assert used[6] == float(fp8sim.quantize(3 / 448, "float32"))  # the spike left the window
    recent = DelayedScaling("e4m3", history_len=3, algo="most_recent", margin=1)
    for a in [4.0, 8.0]:
        st = quantize_scaled(np.array([a]), "e4m3", delayed=recent)
    assert st.scales.item() == float(fp8sim.quantize(4.0 * 2 / 448, "float32"))


def test_delayed_scaling_counts_saturation():
    ds = DelayedScaling("e4m3", history_len=4)
    quantize_scaled(np.array([1.0]), "e4m3", delayed=ds)
    st = quantize_scaled(np.array([1000.0, 1.0]), "e4m3", delayed=ds)  # stale scale 1/448
    assert st.saturated == 1 and st.values[0] == 448


def test_scaled_tensor_codes_and_shapes():
    x = np.arange(24.0).reshape(4, 6) - 10
    st = quantize_scaled(x, "e4m3", (3, 4))
    assert st.scales.shape == (2, 2) and st.expanded_scales().shape == (4, 6)
    codes, scode = st.codes()
    assert codes.dtype == np.uint8 and scode.dtype == np.uint32
    np.testing.assert_array_equal(fp8sim.decode(codes, "e4m3"), st.values)


def test_bad_arguments():
    x = np.ones((4, 8))
    with pytest.raises(ValueError, match="granularity must be"):
        quantize_scaled(x, "e4m3", "block")
    with pytest.raises(ValueError, match="2 positive integer sizes"):
        quantize_scaled(x, "e4m3", (1, 2, 3))
    with pytest.raises(ValueError, match="mx32 elements"):
        quantize_scaled(x, "bf16", "mx32")
    with pytest.raises(ValueError, match="nvfp4 elements"):
        quantize_scaled(x, "e4m3", "nvfp4")
    with pytest.raises(ValueError, match="2-D"):
        quantize_scaled(np.ones(8), "e4m3", "row")
    with pytest.raises(ValueError, match="pow2"):
        quantize_scaled(x, "e4m3", "row", pow2="up")
    with pytest.raises(ValueError, match="delayed scaling applies"):
        quantize_scaled(x, "e4m3", "row", delayed=DelayedScaling())
    with pytest.raises(ValueError, match="history_len"):
        DelayedScaling(history_len=0)


# --- pipelines --------------------------------------------------------------------------

def reference_scaled(A, B, unit, semantics, block_k, promote_every=None, out_format="bfloat16"):
    return scaled_gemm(A, B, unit, semantics, block_k=block_k, promote_every=promote_every, out_format=out_format)


def test_deepgemm_pipeline_equals_reference(rng):
    unit = fp8sim.hardware.tensor_core("H100", "e4m3")
    A = quantize_scaled(data(rng, (3, 384)), "e4m3", (1, 128))
    B = quantize_scaled(data(rng, (384, 130)), "e4m3", (128, 128))
    got = scaled_matmul(A, B, unit=unit)
    assert same64(got, reference_scaled(A, B, unit, "deepgemm", 128)).all()


@pytest.mark.parametrize("K", [300, 20])
def test_deepgemm_pipeline_with_columnwise_b_equals_reference(K, rng):
    # the weight-gradient GEMM: both operands scaled per 128 along K (the token axis), B per column;
    # K = 300 leaves a partial last block, K = 20 is one block shorter than the unit's (tiles clamp to K)
    unit = fp8sim.hardware.tensor_core("H100", "e4m3")
    A = quantize_scaled(data(rng, (3, K)), "e4m3", (1, 128))
    B = quantize_scaled(data(rng, (K, 5)), "e4m3", (128, 1))
    got = scaled_matmul(A, B, unit=unit, out_format="float32")
    assert same64(got, reference_scaled(A, B, unit, "deepgemm", 128, None, "float32")).all()


@pytest.mark.parametrize("ga, gb, promote, out", [("tensor", "tensor", None, "bfloat16"), ("row", "col", 128, "float16"),
                                                  ("row", "tensor", None, "float32")])
def test_scaled_mm_pipeline_equals_reference(ga, gb, promote, out, rng):
    unit = fp8sim.hardware.tensor_core("H100", "e4m3")
    A = quantize_scaled(data(rng, (3, 256)), "e4m3", ga)
    B = quantize_scaled(data(rng, (256, 4)), "e4m3", gb)
    got = scaled_matmul(A, B, unit=unit, promote_every=promote, out_format=out)
    assert same64(got, reference_scaled(A, B, unit, "scaled_mm", 256, promote, out)).all()


@pytest.mark.parametrize("fmt", ["e4m3", "e2m1"])
def test_mx_pipeline_equals_reference(fmt, rng):
    unit = fp8sim.BlockFMA(fmt, 32, 25, 23, "toward_zero", False, "nearest_even") if fmt == "e2m1" \
        else fp8sim.hardware.tensor_core("B200", fmt)
    A = quantize_scaled(data(rng, (3, 96)), fmt, "mx32")
    B = quantize_scaled(data(rng, (96, 4)), fmt, "mx32", axis=0)
    got = scaled_matmul(A, B, unit=unit, out_format="float32")
    assert same64(got, reference_scaled(A, B, unit, "mx", 32, None, "float32")).all()


def test_pipeline_errors(rng):
    unit = "H100:e4m3"
    A = quantize_scaled(data(rng, (2, 256)), "e4m3", (1, 128))
    B = quantize_scaled(data(rng, (256, 2)), "e4m3", (128, 128))
    with pytest.raises(ValueError, match="promote_every must be None or 128"):
        scaled_matmul(A, B, unit=unit, promote_every=256)
    with pytest.raises(TypeError, match="ScaledTensor"):
        scaled_matmul(A.values, B, unit=unit)
    with pytest.raises(ValueError, match="the unit takes"):
        scaled_matmul(quantize_scaled(data(rng, (2, 256)), "e5m2", (1, 128)), B, unit=unit)
    with pytest.raises(ValueError, match="out_format"):
        scaled_matmul(A, B, unit=unit, out_format="e4m3")
    with pytest.raises(ValueError, match="mx needs"):
        scaled_matmul(quantize_scaled(data(rng, (2, 64)), "e4m3", "mx32"),
                      quantize_scaled(data(rng, (64, 2)), "e4m3", "mx32"), unit="B200:e4m3")


def same64(a, b):  # float64 bit patterns, NaN equal to NaN
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))


@pytest.mark.parametrize("gran, kw", [("mx32", {}), ((1, 64), {"pow2": "ceil"}), ("row", {"pow2": "floor"})])
@pytest.mark.parametrize("rounding", ["upward", "downward", "to_odd", "nearest_away", "stochastic"])
def test_power_of_two_scales_take_every_rounding(gran, kw, rounding, rng):
    x = data(rng, (4, 96))
    extra = {"rng": np.random.default_rng(5), "sr_bits": 8} if rounding == "stochastic" else {}
    st = quantize_scaled(x, "e4m3", gran, rounding=rounding, **kw, **extra)
    draws = np.random.default_rng(5).integers(0, 2**8, x.size) if rounding == "stochastic" else [None] * x.size
    s = st.expanded_scales().ravel()
    want = [scaled_element(v, sc, "e4m3", rounding, draw=d, sr_bits=8 if d is not None else None)
            for v, sc, d in zip(x.ravel(), s, draws)]
    assert same64(st.values.ravel(), want).all()


def test_other_scales_refuse_directed_and_stochastic_rounding():
    with pytest.raises(ValueError, match="power-of-two scales"):
        quantize_scaled(np.array([[1.0, 3.0]]), "e4m3", "row", rounding="upward")


# --- clear errors, never a silent zero or NaN (issue 12) --------------------------------------------

def test_fp32_scale_underflow_and_overflow_raise():
    tiny = np.full((2, 4), 1e-43, np.float32)
    with pytest.raises(ValueError, match="underflows FP32's normal range"):
        quantize_scaled(tiny, "e4m3", "tensor")
    with pytest.raises(ValueError, match="underflows"):
        quantize_scaled(np.ones((2, 4)), "e4m3", "tensor", margin=-200)
    with pytest.raises(ValueError, match="overflows"):
        quantize_scaled(np.full((2, 4), 1e300), "e4m3", "row")
    # amax_epsilon is the documented way out: a normal scale (data far below it then rounds to zero)
    st = quantize_scaled(tiny, "e4m3", "tensor", amax_epsilon=1e-30)
    assert st.scales.item() >= 2.0**-126


def test_delayed_scaling_is_not_wiped_out_by_denormals():
    ds = DelayedScaling("e4m3", history_len=4)
    quantize_scaled(np.array([2.0, 1.0]), "e4m3", delayed=ds)
    state = (ds.scale, list(ds.history))
    with pytest.raises(ValueError, match="underflows"):
        quantize_scaled(np.full(4, 1e-44, np.float32), "e4m3", delayed=DelayedScaling("e4m3", algo="most_recent"))
    fresh = DelayedScaling("e4m3", algo="most_recent")
    quantize_scaled(np.array([1.0]), "e4m3", delayed=fresh)
    before = (fresh.scale, list(fresh.history))
    with pytest.raises(ValueError, match="underflows"):
        quantize_scaled(np.full(4, 1e-44, np.float32), "e4m3", delayed=fresh)
    assert (fresh.scale, list(fresh.history)) == before  # the state is as it was
    assert quantize_scaled(np.array([3.0]), "e4m3", delayed=fresh).values.item() != 0
    assert (ds.scale, list(ds.history)) == state
    with pytest.raises(ValueError, match="finite and >= 0"):
        ds.record(-1.0)
    with pytest.raises(ValueError, match="built for float8_e4m3fn"):
        quantize_scaled(np.ones(3), "e5m2", delayed=ds)


def test_nvfp4_outlier_beyond_fp32_raises():
    x = np.ones((2, 32))
    x[0, 0] = 1e300
    with pytest.raises(ValueError, match="nvfp4: the FP32 tensor scale"):
        quantize_scaled(x, "e2m1", "nvfp4")


@pytest.mark.parametrize("fmt", ["e8m0", "float8_e8m0fnu", fp8sim.FloatFormat(3, 2, signed=False, specials="fn")])
def test_element_formats_need_a_sign_and_a_zero(fmt):
    with pytest.raises(ValueError, match="cannot be an element format"):
        quantize_scaled(np.array([[1.0, -2.0]]), fmt, "tensor")


@pytest.mark.parametrize("tile", [(1, 0), (1, 2.5), (1.0, 2), (True, 2), (1, -4)])
def test_tile_sizes_must_be_positive_integers(tile):
    with pytest.raises(ValueError, match="positive integer sizes"):
        quantize_scaled(np.ones((4, 8)), "e4m3", tile)


def test_tiles_larger_than_the_tensor_are_clamped():
    x = np.random.default_rng(1).standard_normal((4, 40))
    st = quantize_scaled(x, "e4m3", (128, 128))
    assert st.tile == (4, 40) and st.scales.shape == (1, 1)
    np.testing.assert_array_equal(st.values, quantize_scaled(x, "e4m3", "tensor").values)


@pytest.mark.parametrize("kw, err", [
    ({"margin": float("nan")}, ValueError), ({"margin": "1"}, TypeError), ({"margin": True}, TypeError),
    ({"amax_epsilon": float("nan")}, ValueError), ({"amax_epsilon": -1.0}, ValueError),
    ({"amax_epsilon": None}, TypeError),
])
def test_margin_and_amax_epsilon_checked(kw, err):
    with pytest.raises(err, match="margin|amax_epsilon"):
        quantize_scaled(np.ones((2, 2)), "e4m3", "tensor", **kw)


def test_mx_pipeline_refuses_non_power_of_two_scales():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 64)), rng.standard_normal((64, 3))
    A = quantize_scaled(x, "e4m3", (1, 32))
    B = quantize_scaled(w, "e4m3", (32, 1))
    with pytest.raises(ValueError, match="E8M0"):
        fp8sim.scaled_matmul(A, B, unit="B200:e4m3", semantics="mx")


def test_rounding_names_any_case_and_short():
    x = np.array([[0.3, -0.7, 1.9]])
    a = quantize_scaled(x, "e4m3", "tensor", rounding="RTZ")
    b = quantize_scaled(x, "e4m3", "tensor", rounding="toward_zero")
    np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("alias, canonical", [("rowwise", "row"), ("ROWWISE", "row"), ("tensorwise", "tensor"),
                                              ("axiswise", "row"), ("columnwise", "col"), ("MXFP8", "mx32")])
def test_granularity_names_of_other_libraries(alias, canonical):
    x = np.random.default_rng(0).standard_normal((4, 64))
    a, b = quantize_scaled(x, "e4m3", alias), quantize_scaled(x, "e4m3", canonical)
    assert a.tile == b.tile
    np.testing.assert_array_equal(a.values, b.values)


def test_string_options_any_case():
    x = np.random.default_rng(3).standard_normal((4, 64))
    a = quantize_scaled(x, "E4M3", "MX32", mx_scale="CEIL", nonfinite="Propagate")
    b = quantize_scaled(x, "e4m3", "mx32", mx_scale="ceil", nonfinite="propagate")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(quantize_scaled(x, "e4m3", "Row", pow2="Ceil").scales,
                                  quantize_scaled(x, "e4m3", "row", pow2="ceil").scales)
    assert DelayedScaling("e4m3", algo="Most_Recent").algo == "most_recent"
    w = np.random.default_rng(4).standard_normal((64, 3))
    A, B = quantize_scaled(x, "e4m3", "tensor"), quantize_scaled(w, "e4m3", "tensor")
    np.testing.assert_array_equal(scaled_matmul(A, B, unit="H100:e4m3", semantics="SCALED_MM"),
                                  scaled_matmul(A, B, unit="H100:e4m3", semantics="scaled_mm"))


def test_delayed_scaling_takes_transformer_engine_names():
    ds = DelayedScaling(amax_history_len=8, amax_compute_algo="most_recent", fp8_format="HYBRID", margin=1)
    assert ds.history.maxlen == 8 and ds.algo == "most_recent" and ds.fmt.name == "float8_e4m3fn"
    assert DelayedScaling(fp8_format="E5M2").fmt.name == "float8_e5m2"
    with pytest.raises(TypeError, match="unexpected arguments"):
        DelayedScaling(interval=1)
