"""PyTorch tensors in every public function, bit for bit (issue 14).  Skips without torch."""

import ml_dtypes
import numpy as np
import pytest

import fp8sim
from fp8sim.testing import assert_bitwise_equal

torch = pytest.importorskip("torch", reason="torch is not installed: pip install -e '.[torch]' runs these tests")

FP8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"]


def _values(n=64, seed=0):
    return np.random.default_rng(seed).standard_normal(n) * 8


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32", "float64", *FP8])
def test_tensors_of_every_float_dtype_convert_bit_for_bit(name):
    t = torch.from_numpy(_values()).to(getattr(torch, name))
    arr = fp8sim.formats.as_numpy(t)
    bits_t = t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).numpy()
    assert arr.dtype.itemsize == t.element_size()
    np.testing.assert_array_equal(arr.view(bits_t.dtype), bits_t)
    if name in FP8 or name == "bfloat16":
        assert arr.dtype == np.dtype(getattr(ml_dtypes, name))


@pytest.mark.parametrize("name", ["bfloat16", *FP8])
def test_public_functions_take_low_precision_tensors(name):
    fmt = fp8sim.get_format(name)
    t = torch.from_numpy(_values()).to(getattr(torch, name))
    want = t.to(torch.float64).numpy()
    assert fp8sim.get_format(getattr(torch, name)) is fmt
    np.testing.assert_array_equal(fp8sim.quantize(t, fmt), want)          # already in the format: unchanged
    np.testing.assert_array_equal(fp8sim.encode(t, fmt), t.view(torch.uint8 if fmt.bits == 8 else torch.int16)
                                  .numpy().view(fmt.code_dtype))
    assert_bitwise_equal(t, fp8sim.quantize(want, fmt), fmt=fmt)
    st = fp8sim.quantize_scaled(t, "e4m3" if name != "float8_e4m3fnuz" else "e4m3fnuz", "tensor")
    assert st.shape == (64,)


def test_tensors_with_grad_and_matmul():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.standard_normal((4, 64))).to(torch.float8_e4m3fn)
    b = torch.from_numpy(rng.standard_normal((64, 3))).to(torch.float8_e4m3fn)
    want = fp8sim.matmul(a.float().numpy().astype(np.float64), b.float().numpy().astype(np.float64), unit="H100:e4m3")
    np.testing.assert_array_equal(fp8sim.matmul(a, b, unit="H100:e4m3"), want)
    x = torch.randn(5, 7, dtype=torch.float32, requires_grad=True)
    np.testing.assert_array_equal(fp8sim.quantize(x, "bf16"), fp8sim.quantize(x.detach().numpy(), "bf16"))
    c = torch.zeros(4, 3, dtype=torch.float32, requires_grad=True)
    np.testing.assert_array_equal(fp8sim.matmul(a, b, c, unit="H100:e4m3"), want)


def test_one_bit_difference_in_tensors_fails():
    t = torch.tensor([1.0, 2.0]).to(torch.bfloat16)
    u = t.view(torch.int16).clone()
    u[1] += 1
    with pytest.raises(AssertionError, match="1 ulp apart"):
        assert_bitwise_equal(t, u.view(torch.bfloat16))


def test_torch_dtypes_as_formats():
    assert fp8sim.get_format(torch.float8_e5m2).name == "float8_e5m2"
    assert fp8sim.get_format(torch.float16).name == "float16"
    with pytest.raises(ValueError, match="not a floating-point format"):
        fp8sim.get_format(torch.int8)
    with pytest.raises(TypeError, match="packed FP4"):
        fp8sim.quantize(torch.zeros(2, dtype=torch.uint8).view(torch.float4_e2m1fn_x2), "e2m1")


def test_results_back_in_the_input_array_type():
    t = torch.tensor([0.3, 500.0], dtype=torch.float32)
    out = fp8sim.like_input(fp8sim.quantize(t, "e4m3", overflow="saturate"), t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.device == t.device
    assert out.tolist() == [0.3125, 448.0]
    assert isinstance(fp8sim.like_input(np.zeros(2), np.ones(2)), np.ndarray)
