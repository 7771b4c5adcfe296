"""fp8sim against GEMMs captured on a real H100 (tests/data/h100_scaled_mm.npz).

The data were captured by ``experiments/capture_gpu.py`` (torch._scaled_mm
and torch.matmul on an H100, cuBLAS); these tests run every captured
product through fp8sim's public API and compare bit patterns.
"""

from __future__ import annotations

import numpy as np
import pytest

import fp8sim
from experiments import gpu_capture
from experiments.capture_gpu import DENSE_KINDS, OUTS, PAIRS, SETS, load, sha256, stats_inputs
from fp8sim.hardware import tensor_core

# CUDA's NaN encodings, as the capture shows them (NumPy's would be 0x7FC00000 / 0x7FC0 / 0x7E00)
GPU_NAN = {"float32": 0x7FFFFFFF, "bfloat16": 0x7FFF, "float16": 0x7FFF}


@pytest.fixture(scope="module")
def captured():
    return load(gpu_capture.DATA)


def _assert_same_bits(sim, gpu, fmt):
    """Bit-identical, except that where both are NaN the GPU writes its own NaN encoding."""
    nan_sim, nan_gpu = gpu_capture.is_nan_bits(sim, fmt), gpu_capture.is_nan_bits(gpu, fmt)
    np.testing.assert_array_equal(nan_sim, nan_gpu)
    assert (gpu[nan_gpu] == GPU_NAN[fmt]).all()
    differ = (sim != gpu) & ~nan_gpu
    assert not differ.any(), (f"{int(differ.sum())} of {sim.size} outputs differ; first at "
                              f"{np.argwhere(differ)[0]}: fp8sim {hex(int(sim[differ][0]))}, GPU {hex(int(gpu[differ][0]))}")


def test_capture_records_what_ran(captured):
    arrays, meta = captured
    v = meta["versions"]
    assert "H100" in v["gpu"] and v["capability"] == [9, 0]
    for key in ("torch", "cuda", "nvidia_smi", "cublasLt_version", "date"):
        assert v[key]
    for name, info in meta["sets"].items():
        assert not info["error"], info["error"]
        assert info["tiles_equal"] and all(info["tiles_equal"].values()), name
    assert all(meta["stats"]["tiles_equal"].values())
    # every case has its output and its kernel
    for name in SETS:
        for pair in PAIRS:
            for mode in ("fast", "split"):
                for out in OUTS:
                    key = f"{name}/{pair}/{mode}/{out}"
                    assert key in arrays and meta["kernels"][key]


@pytest.mark.parametrize("out", OUTS)
@pytest.mark.parametrize("mode", ["fast", "split"])
@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("name", list(SETS))
def test_scaled_mm_bit_exact(captured, name, pair, mode, out):
    """use_fast_accum=True is one wgmma chain, False is promotion to FP32 every 128; the epilogue
    (scales 1.0) rounds the FP32 result once to the output format."""
    arrays, _ = captured
    a_fmt = pair.split("_")[0]
    a = gpu_capture.decode(arrays[f"{name}/a_{a_fmt}"], a_fmt)
    b = gpu_capture.decode(arrays[f"{name}/bt_e4m3"], "e4m3").T
    fmt = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[out]
    y = fp8sim.matmul(a, b, unit=tensor_core("H100", a_fmt, b_format="e4m3"),
                      promote_every=128 if mode == "split" else None,
                      out_format=None if out == "f32" else fmt)
    _assert_same_bits(gpu_capture.to_bits(y, fmt), arrays[f"{name}/{pair}/{mode}/{out}"], fmt)


@pytest.mark.parametrize("name, kind", [(n, k) for n, kinds in DENSE_KINDS.items() for k in kinds])
def test_dense_matmul_bit_exact(captured, name, kind):
    """torch.matmul in BF16 / FP16 / TF32 and torch.mm(out_dtype=float32) in BF16, on the H100 preset of
    the instruction the profiled kernel ran; the overflow set with the default rz_overflow="inf"."""
    arrays, meta = captured
    instr = gpu_capture.instruction_of(meta["kernels"][f"{name}/{kind}"])
    fmt, src, out = gpu_capture.DENSE_FORMAT[kind]
    a = gpu_capture.decode(arrays[f"{name}/a_{src}"], fmt)
    b = gpu_capture.decode(arrays[f"{name}/bt_{src}"], fmt).T
    y = fp8sim.matmul(a, b, unit=tensor_core("H100", fmt, instruction=instr),
                      out_format=None if out == "float32" else out)
    _assert_same_bits(gpu_capture.to_bits(y, out), arrays[f"{name}/{kind}"], out)


@pytest.mark.parametrize("kind", DENSE_KINDS["overflow"])
def test_truncated_overflow_is_inf_on_the_h100(captured, kind):
    """Sums of products each within FP32's range, truncated beyond it: the H100 gives Inf (fp8sim's
    default), never FP32 max; rz_overflow="max" differs on exactly the Inf outputs."""
    arrays, _ = captured
    ev = gpu_capture.overflow_evidence(arrays)[kind]
    assert ev["inf_from_in_range_products"] >= 20 and ev["fp32_max"] == 0
    gpu = arrays[f"overflow/{kind}"]
    instr = "mma.sync" if kind == "tf32" else "wgmma"
    alt = gpu_capture.to_bits(gpu_capture.dense_sim(arrays, "overflow", kind, instr, rz_overflow="max"), "float32")
    np.testing.assert_array_equal(alt != gpu, np.isinf(gpu.view(np.float32)))


def test_captured_data_cover_specials_and_zeros(captured):
    arrays, _ = captured
    f32 = arrays["specials/e5m2_e4m3/fast/f32"].view(np.float32)
    assert np.isnan(f32).any() and np.isinf(f32).any()
    z = arrays["zeros/e4m3_e4m3/fast/f32"]
    assert (z == 0).sum() > 500                   # rows of -0 products, cancellations: all +0 on the GPU
    assert not (z == 0x80000000).any()
    a = arrays["zeros/e4m3_e4m3/fast/f32"]
    assert a.size == 32 * 32
    f16 = arrays["dense_k128/fp16"].view(np.float16)
    assert np.isinf(f16).any()                    # the epilogue's FP16 overflow


def test_the_data_reject_other_models(captured):
    """The captured outputs decide the model: a window one bit wider or narrower, or another
    promotion interval, gets most outputs wrong."""
    arrays, _ = captured
    alts = gpu_capture.alternatives(arrays)
    for label, r in alts.items():
        if label.endswith("split as one chain") and label.startswith("k128"):
            assert r["differ"] == 0               # K = 128: promotion every 128 is the plain chain
        elif label.startswith("overflow/"):
            assert r["differ"] >= 100             # every Inf output (test_truncated_overflow_is_inf_on_the_h100)
        else:
            assert r["differ"] > r["outputs"] // 2, (label, r)


def test_accumulation_error_measured_equals_simulated(captured):
    arrays, meta = captured
    errs = gpu_capture.stats_errors(arrays, meta)   # raises if the regenerated inputs differ (SHA-256)
    assert len(errs) == len(meta["stats"]["seeds"]) >= 8
    for e in errs:
        for mode in ("fast", "split"):
            assert e[mode]["bits_equal"] == e[mode]["outputs"]
            assert e[mode]["gpu"] == e[mode]["sim"]
        # DeepSeek-V3's "nearly 2%" and the fix
        assert 0.015 < e["fast"]["gpu"]["max_rel_err"] < 0.025
        assert e["split"]["gpu"]["max_rel_err"] < 0.001


def test_stats_inputs_are_checked(captured):
    _, meta = captured
    import ml_dtypes

    def q(x):
        return fp8sim.quantize(x.astype(np.float64), "e4m3").astype(ml_dtypes.float8_e4m3fn).view(np.uint8)

    a, bt = stats_inputs(0, q)
    assert sha256(a, bt) == meta["stats"]["sha256"]["0"]
    assert sha256(a, bt ^ 1) != meta["stats"]["sha256"]["0"]


def test_capture_script_writes_what_the_check_reads(tmp_path, captured):
    """The capture script on the CPU (torch's own arithmetic, small tiles): the same arrays and
    metadata keys as the committed capture, and identical inputs (the inputs do not depend on the
    device)."""
    torch = pytest.importorskip("torch")
    from experiments import capture_gpu

    arrays, meta = captured
    if not hasattr(torch, "float8_e4m3fn"):
        pytest.skip("this torch has no FP8 dtypes")
    path = tmp_path / "cpu.npz"
    try:
        capture_gpu.capture(path, "cpu", seeds=1, min_gemm=64)
    except RuntimeError as e:  # pragma: no cover - a torch build without CPU _scaled_mm
        pytest.skip(f"torch._scaled_mm on the CPU: {e}")
    got, m = load(path)
    # "@small" outputs are stored only where the small shape differed (on the H100: TF32, split K);
    # what this torch cannot run on the CPU (mm with out_dtype) is recorded as an error instead
    failed = {k for info in m["sets"].values() for k in info["error"]}
    expected = {k for k in arrays if (not k.startswith("stats/") or k.startswith("stats/0/"))
                and "@small" not in k and k not in failed}
    assert {k for k in got if "@small" not in k} == expected
    for k in arrays:
        if "/a_" in k or "/bt_" in k:
            np.testing.assert_array_equal(got[k], arrays[k])
    assert m["stats"]["sha256"]["0"] == meta["stats"]["sha256"]["0"]


def test_check_script_report(tmp_path, capsys):
    rows, errs = gpu_capture.main(["--out", str(tmp_path)])
    assert sum(r["differ"] for r in rows) == 0
    assert sum(r["nan_encoding_only"] for r in rows) > 0
    assert (tmp_path / "gpu_capture.json").exists()
    assert "bit-identical" in capsys.readouterr().out
