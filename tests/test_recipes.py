"""Scale conventions by name (fp8sim.recipes, issue 11)."""

import numpy as np
import pytest

import fp8sim
from fp8sim.recipes import SCALE_CONVENTIONS, quantize_by_convention, scale_convention


@pytest.mark.parametrize("name", sorted(n for n in SCALE_CONVENTIONS if n != "DelayedScaling"))
@pytest.mark.parametrize("role", ["input", "weight", "grad"])
def test_each_convention_is_its_quantize_scaled_call(name, role):
    x = np.random.default_rng(0).standard_normal((128, 256))
    fmt, gran, kwargs = scale_convention(name, role)
    got = quantize_by_convention(x, name, role)
    want = fp8sim.quantize_scaled(x, fmt, gran, **kwargs)
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.scales, want.scales)


def test_names_any_spelling_and_delayed():
    assert scale_convention("cublaslt_matmul_matrix_scale_blk128x128_32f")[1] == (128, 128)
    ds = fp8sim.DelayedScaling("e4m3")
    st = quantize_by_convention(np.ones((4, 4)), "DelayedScaling", delayed=ds)
    assert st.scales.item() == 1.0 and len(ds.history) == 1
    with pytest.raises(ValueError, match="needs delayed="):
        quantize_by_convention(np.ones((4, 4)), "DelayedScaling")
    with pytest.raises(ValueError, match="unknown scale convention"):
        scale_convention("FP8_MAGIC")
    with pytest.raises(ValueError, match="role must be"):
        scale_convention("SCALAR_32F", "bias")


def test_cli_prints_the_table(capsys):
    from fp8sim.__main__ import main

    assert main(["conventions"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2 + len(SCALE_CONVENTIONS) and "MXFP8BlockScaling" in out
