"""Bit-exact conformance with measured GPU outputs.

The data ships with the tests (``tests/data/hw_vectors.npz``, packed from
``../shared/hw-vectors`` by ``experiments/pack_conformance.py``), so every
measured row is checked on a fresh clone.  ``FP8SIM_HW_VECTORS`` names
another copy (the text folder or a packed file) to check against instead;
set but missing, the tests fail.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from fp8sim import matmul
from fp8sim.gemm import dot_rows
from fp8sim.hardware import PACKED_VECTORS, VECTOR_SETS, load_vectors, measured_instruction, tensor_core

SETS = VECTOR_SETS


@pytest.fixture(scope="module")
def root():
    path = os.environ.get("FP8SIM_HW_VECTORS")
    if not path:
        assert PACKED_VECTORS.is_file(), f"the shipped conformance data {PACKED_VECTORS} is missing"
        return str(PACKED_VECTORS)
    if not Path(path).exists():
        pytest.fail(f"FP8SIM_HW_VECTORS={path} does not exist")
    return path


def test_packed_data_equals_the_text_layout():
    """When the text folder is at hand, the shipped file holds the same bits (sampled sets)."""
    text = Path(os.environ.get("FP8SIM_HW_VECTORS", Path(__file__).parents[2] / "shared" / "hw-vectors"))
    if not text.is_dir():
        pytest.skip(f"no text-layout copy of the data at {text} to compare the packed file with")
    for gpu, fmt_dir in [("H100", "E4M3"), ("V100", "fp16"), ("B200", "bf16"), ("Ada", "tf32")]:
        want, got = load_vectors(text, gpu, fmt_dir), load_vectors(PACKED_VECTORS, gpu, fmt_dir)
        for name in ("a", "b", "c", "d_bits"):
            np.testing.assert_array_equal(np.asarray(want[name]).view(np.uint8), np.asarray(got[name]).view(np.uint8))


def addend(gpu, fmt_dir, v):
    # hw-vectors README: the H100 FP8 sets were run with C = 0
    return np.zeros_like(v["c"]) if gpu == "H100" and fmt_dir in ("E4M3", "E5M2") else v["c"]


@pytest.mark.parametrize("gpu, fmt_dir", SETS, ids=[f"{g}-{f}" for g, f in SETS])
def test_every_row_bit_exact_through_matmul(root, gpu, fmt_dir):
    v = load_vectors(root, gpu, fmt_dir)
    assert v["a"].shape[0] == 5000
    unit = tensor_core(gpu, v["in_format"], instruction=measured_instruction(gpu, fmt_dir))  # the measured one
    c = addend(gpu, fmt_dir, v)
    got = np.array([matmul(v["a"][i:i + 1], v["b"][i][:, None], c[i], unit=unit)[0, 0] for i in range(len(c))])
    got_bits = got.astype(np.float32).view(np.uint32)
    bad = np.flatnonzero(got_bits != v["d_bits"])
    assert bad.size == 0, f"{bad.size} rows differ, first {bad[:5]}"
    # the batched path gives the same bits
    np.testing.assert_array_equal(dot_rows(v["a"], v["b"], c, unit=unit).astype(np.float32).view(np.uint32),
                                  v["d_bits"])


def test_published_model_does_not_fit_b200_fp8(root):
    """The variant matters: B200 FP8 with C in the alignment and truncation misses rows."""
    v = load_vectors(root, "B200", "E5M2")
    unit = tensor_core("B200", "e5m2", instruction="mma.sync").replace(c_in_alignment=True, align_bits=13,
                                                                       out_frac_bits=23)
    got = dot_rows(v["a"], v["b"], v["c"], unit=unit).astype(np.float32).view(np.uint32)
    assert (got != v["d_bits"]).sum() > 1000


FP16_OUT = [("V100", "fp16"), ("A100", "fp16"), ("Ada", "fp16"), ("L40S", "fp16"), ("H100", "fp16"), ("B200", "fp16"),
            ("Ada", "E4M3"), ("Ada", "E5M2"), ("H100", "E4M3"), ("H100", "E5M2"), ("B200", "E4M3"), ("B200", "E5M2")]


@pytest.mark.parametrize("gpu, fmt_dir", FP16_OUT, ids=[f"{g}-{f}" for g, f in FP16_OUT])
def test_fp16_output_rows_bit_exact(root, gpu, fmt_dir):
    """The FP16-output mode (C in FP16): every measured row, through matmul (a sample) and dot_rows (all).
    H100 and B200 FP8 go through SplitFP16Unit; the H100 FP8 FP16-output rows were run with the C they hold."""
    import fp8sim

    v = load_vectors(root, gpu, fmt_dir, output="fp16")
    unit = tensor_core(gpu, v["in_format"], out_format="float16", instruction="mma.sync")
    c16 = fp8sim.quantize(v["c"], "float16")
    rows = range(0, 5000, 7)  # every 7th row through matmul; all rows through dot_rows
    got = np.array([matmul(v["a"][i:i + 1], v["b"][i][:, None], c16[i], unit=unit, out_format="float16")[0, 0]
                    for i in rows])
    np.testing.assert_array_equal(got.astype(np.float32).view(np.uint32), v["d_bits"][list(rows)])
    all_rows = dot_rows(v["a"], v["b"], c16, unit=unit, out_format="float16")
    np.testing.assert_array_equal(all_rows.astype(np.float32).view(np.uint32), v["d_bits"])


def test_fp8_fp16_output_is_the_split_model():
    """H100/B200 FP8 mma.sync with FP16 output is the two-group FP16 emulation; one 32-term sum is not."""
    from fp8sim.accumulate import SplitFP16Unit

    for gpu in ("H100", "B200"):
        assert isinstance(tensor_core(gpu, "e4m3", out_format="float16", instruction="mma.sync"), SplitFP16Unit)
    with pytest.raises(ValueError, match="out_format"):
        tensor_core("A100", "fp16", out_format="bfloat16")
