"""fp8sim against single mma.sync instructions run on an H100 (experiments/probe_mma.py).

``tests/data/h100_mma_probe.json``: uniform-operand cases (no fragment layout involved) for C's
corner cases; ``tests/data/h100_mma_sync_fp8.npz``: random FP8 tiles of mma.sync.m16n8k32 with
random C, K = 32 and chained to 128.  Together they show H100 FP8 ``mma.sync`` to be an emulation
on the FP16 path (fp8sim.SplitFP16Unit with FP32 output), not the 13-bit unit of ``wgmma``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import fp8sim
from experiments import probe_mma
from experiments.fit_b200 import fp16_emulation
from fp8sim.accumulate import SplitFP16Unit
from fp8sim.gemm import dot_rows
from fp8sim.hardware import tensor_core, validation
from fp8sim.reference import scaled_dot, split_fp16_dot


@pytest.fixture(scope="module")
def probe():
    return json.loads(probe_mma.DATA.read_text())


@pytest.fixture(scope="module")
def tiles():
    with np.load(probe_mma.TILES) as z:
        return {k: z[k] for k in z.files}


def test_probe_records_what_ran(probe):
    assert "H100" in probe["gpu"] and probe["nvcc"] and probe["arch"] == "sm_90a"
    assert len(probe["cases"]) == len(probe_mma.CASES)
    assert all(c["all_equal"] for c in probe["cases"])      # uniform operands: one result per case


_is_nan = probe_mma._nan


@pytest.mark.parametrize("i", range(len(probe_mma.CASES)))
def test_probe_case_bit_exact(probe, i):
    case = probe["cases"][i]
    gpu = int(case["d_bits"], 16)
    sim = probe_mma.simulate(case)
    if _is_nan(gpu):
        assert gpu == 0x7FFFFFFF and _is_nan(sim)           # CUDA's NaN; fp8sim's is NumPy's
    else:
        assert sim == gpu, f"{case['label']}: fp8sim 0x{sim:08x}, GPU {case['d_bits']}"


def test_probe_rejects_the_13_bit_model_for_mma_sync(probe):
    """C is not aligned with 13 bits: a subnormal or many-bit C passes, S + C rounds to nearest-even."""
    differ = [c["label"] for c in probe["cases"] if c["kind"] in (0, 2, 3)
              and probe_mma.simulate(c, instruction="wgmma") != int(c["d_bits"], 16)
              and not _is_nan(int(c["d_bits"], 16))]
    assert len(differ) >= 30
    assert any("ulp" in d for d in differ) and any("subnormal" in d for d in differ)


@pytest.mark.parametrize("name", list(probe_mma.TILE_SETS))
def test_random_tiles_bit_exact(tiles, name):
    fa, a, b, c, d = probe_mma.tile_rows(tiles, name)
    unit = tensor_core("H100", fa, b_format="e4m3", instruction="mma.sync")
    assert isinstance(unit, SplitFP16Unit) and unit.out_format.name == "float32"
    got = dot_rows(a, b, c, unit=unit).astype(np.float32).view(np.uint32)
    bad = np.flatnonzero(got != d)
    assert bad.size == 0, f"{bad.size} of {d.size} differ, first row {bad[0]}"
    # the same through matmul, one tile
    n, K = tiles[f"{name}/a"].shape[0], a.shape[1]
    tile_a, tile_b = a[:128:8], b[:8].T                      # tile 0: rows m = 0..15, columns n = 0..7
    y = fp8sim.matmul(tile_a, tile_b, c[:128].reshape(16, 8), unit=unit)
    np.testing.assert_array_equal(y.astype(np.float32).view(np.uint32), d[:128].reshape(16, 8))
    assert n == 64 and K in (32, 128)


def test_exact_tiles_check_the_layout(tiles):
    """Small-integer tiles: every output is the exact A @ B + C, so the kernel's fragment layout is right."""
    _, a, b, c, d = probe_mma.tile_rows(tiles, "exact")
    np.testing.assert_array_equal(((a * b).sum(axis=1) + c).astype(np.float32).view(np.uint32), d)


def test_random_tiles_reject_the_alternatives(tiles):
    for name in ("spread", "chain", "e5m2"):
        fa, a, b, c, d = probe_mma.tile_rows(tiles, name)
        wg = dot_rows(a, b, c, unit=tensor_core("H100", fa, b_format="e4m3", instruction="wgmma"))
        assert (wg.astype(np.float32).view(np.uint32) != d).mean() > 0.9
        halves = fp16_emulation(a, b, c, fa, gpu="H100")
        assert (halves.astype(np.float32).view(np.uint32) != d).sum() > 1000


def test_fp32_split_unit_engine_equals_twin(rng):
    """SplitFP16Unit with FP32 output: the vectorized chain equals the scalar twin, wide spread, zeros,
    K not a multiple of 32, Inf / NaN in C."""
    unit = tensor_core("H100", "e4m3", instruction="mma.sync")
    f = unit.in_format
    K = 80
    a = fp8sim.quantize(rng.standard_normal((6, K)) * np.exp2(rng.integers(-8, 9, (6, K))), f, overflow="saturate")
    b = fp8sim.quantize(rng.standard_normal((K, 5)) * np.exp2(rng.integers(-8, 9, (K, 5))), f, overflow="saturate")
    a[0] = 0.0
    a[1, ::3] = -0.0
    c = (rng.standard_normal((6, 5)) * np.exp2(rng.integers(-30, 30, (6, 5)))).astype(np.float32).astype(np.float64)
    c[2, 0], c[2, 1], c[2, 2], c[0, 0] = np.inf, -np.inf, np.nan, 2.0**-140
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[split_fp16_dot(a[i], b[:, j], c[i, j], unit) for j in range(5)] for i in range(6)])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(got)
    np.testing.assert_array_equal(got[ok].astype(np.float32).view(np.uint32),
                                  want[ok].astype(np.float32).view(np.uint32))
    assert got[0, 0] == 2.0**-140                             # zero products: C passes exactly


def test_split_unit_rejects_a_mismatched_step():
    step16 = tensor_core("H100", "float16", out_format="float16", instruction="mma.sync")
    with pytest.raises(ValueError, match="must agree"):
        SplitFP16Unit(step16, "e4m3", out_format="float32")
    with pytest.raises(ValueError, match="out_format must be"):
        SplitFP16Unit(tensor_core("H100", "float16", instruction="mma.sync"), "e4m3", out_format="bfloat16")


def test_presets_say_what_measured_them():
    assert "h100_mma_sync_fp8.npz" in validation(tensor_core("H100", "e4m3", instruction="mma.sync"))
    assert "hw-vectors" in validation(tensor_core("H100", "e4m3"))       # wgmma: the C = 0 measured rows


@pytest.mark.parametrize("i", range(58))
def test_wgmma_probe_case_bit_exact(probe, i):
    """The uniform cases through wgmma: the 13-bit unit with C in the alignment, a subnormal C aligned
    at -126 (c_subnormal_exponent="emin", the default), a truncated overflow Inf."""
    case = probe["wgmma_cases"][i]
    assert case["all_equal"]
    gpu = int(case["d_bits"], 16)
    sim = probe_mma.simulate(case, instruction="wgmma")
    if _is_nan(gpu):
        assert gpu == 0x7FFFFFFF and _is_nan(sim)
    else:
        assert sim == gpu, f"{case['label']}: fp8sim 0x{sim:08x}, GPU {case['d_bits']}"


def test_wgmma_probe_fits_both_subnormal_c_choices(probe):
    """Both c_subnormal_exponent choices fit every wgmma case.  The one case that once told them apart
    (zero products, C = -2^-145: "true" gave -0, the H100 +0) differed only in the sign of a zero, and a
    zero result is +0 under either choice now (MMA-Sim's rule, which its vectors check); so these probes
    do not decide the choice, and the default stays MMA-Sim's (-126)."""
    assert len(probe["wgmma_cases"]) == 58
    for choice in ("emin", "true"):
        differ = [c["label"] for c in probe["wgmma_cases"]
                  if probe_mma.simulate(c, instruction="wgmma", c_subnormal_exponent=choice) != int(c["d_bits"], 16)
                  and not _is_nan(int(c["d_bits"], 16))]
        assert differ == [], choice


def test_check_script_runs(capsys):
    rows, wrows = probe_mma.check()
    assert all(r["fp8sim (wgmma preset)"] in ("equal", "NaN encoding") for r in wrows)
    fit = probe_mma.fit_tiles()
    assert all(r["fp8sim (mma.sync preset)"] in ("equal", "NaN encoding") for r in rows)
    assert all(r["preset"] == r["outputs"] for r in fit.values())
    assert "layout check" in capsys.readouterr().out


def test_fp32_split_unit_promotion_threads_and_scaled_matmul(rng):
    """The H100 mma.sync FP8 unit promotes, runs on threads and drives scaled_matmul like a BlockFMA:
    promotion equals its twin chunk by chunk, threads give the same bits, DeepGEMM's pipeline equals
    its blockwise definition."""
    from fp8sim.reference import _add_fp32

    unit = tensor_core("H100", "e4m3", instruction="mma.sync")
    f = unit.in_format
    M, K, N = 5, 256, 4
    a = fp8sim.quantize(rng.standard_normal((M, K)) * np.exp2(rng.integers(-6, 7, (M, K))), f, overflow="saturate")
    b = fp8sim.quantize(rng.standard_normal((K, N)) * np.exp2(rng.integers(-6, 7, (K, N))), f, overflow="saturate")
    c = rng.standard_normal((M, N)).astype(np.float32).astype(np.float64)
    got = fp8sim.matmul(a, b, c, unit=unit, promote_every=64)
    for i in range(M):
        for j in range(N):
            acc = c[i, j]
            for k0 in range(0, K, 64):
                acc = _add_fp32(acc, split_fp16_dot(a[i, k0:k0 + 64], b[k0:k0 + 64, j], 0.0, unit))
            assert np.float32(got[i, j]).view(np.uint32) == np.float32(acc).view(np.uint32)
    one = fp8sim.matmul(a, b, c, unit=unit, threads=1)
    two = fp8sim.matmul(a, b, c, unit=unit, threads=2)
    np.testing.assert_array_equal(one.view(np.uint64), two.view(np.uint64))
    x, w = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    A = fp8sim.quantize_scaled(x, "e4m3", (1, 128))
    B = fp8sim.quantize_scaled(w, "e4m3", (128, 128))
    out = fp8sim.scaled_matmul(A, B, unit=unit, out_format="float32")
    sa, sb = A.expanded_scales(), B.expanded_scales()
    for i in range(M):
        for j in range(N):
            want = scaled_dot(A.values[i], sa[i, ::128], B.values[:, j], sb[::128, j], unit, "deepgemm",
                              block_k=128, out_format="float32")
            assert np.float32(out[i, j]).view(np.uint32) == np.float32(want).view(np.uint32)
    assert fp8sim.reference.block_fma_dot(a[0], b[:, 0], c[0, 0], unit, 64) == got[0, 0]
    with pytest.raises(ValueError, match="FP32-output SplitFP16Unit"):
        fp8sim.matmul(a, b, unit=tensor_core("H100", "e4m3", out_format="float16", instruction="mma.sync"),
                      promote_every=64)
