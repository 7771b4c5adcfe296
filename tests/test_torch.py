"""fp8sim.torch: the FP8 Linear's three GEMMs against scaled_matmul bit for bit, its gradients against a
float64 reference, recipes, the model swap helper and bad input."""

import copy
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fp8sim.torch needs PyTorch (pip install 'fp8sim[torch]')")

import fp8sim  # noqa: E402
import fp8sim.torch as ft  # noqa: E402
from fp8sim.testing import assert_bitwise_equal  # noqa: E402


def _data(rng, shape, lo=0.25, hi=1.0):
    """Magnitudes in [lo, hi) with random signs, float32: no element lands in a subnormal after scaling."""
    return (rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


def _run(layer, x, g):
    xt = torch.from_numpy(x).requires_grad_(True)
    y = layer(xt)
    y.backward(torch.from_numpy(g))
    return y.detach().numpy(), xt.grad.numpy(), layer.weight.grad.numpy()


def _expected(r, x, w, g):
    """Each GEMM from scratch: quantize_scaled + scaled_matmul on the same operands."""
    x64, w64, g64 = (a.astype(np.float64) for a in (x, w, g))
    A, B = ft.gemm_operands(r, "fprop", x64, w64)
    y = fp8sim.scaled_matmul(A, B, unit=r.fprop.unit, promote_every=r.fprop.promote_every,
                             out_format=r.fprop.out_format, semantics=r.fprop.semantics)
    dx = fp8sim.scaled_matmul(*ft.gemm_operands(r, "dgrad", g64, w64), unit=r.dgrad.unit,
                              promote_every=r.dgrad.promote_every, out_format=r.dgrad.out_format,
                              semantics=r.dgrad.semantics)
    x_src = A.dequantize() if r.saved_x == "fp8" else x64
    dw = fp8sim.scaled_matmul(*ft.gemm_operands(r, "wgrad", g64, x_src), unit=r.wgrad.unit,
                              promote_every=r.wgrad.promote_every, out_format=r.wgrad.out_format,
                              semantics=r.wgrad.semantics)
    return y, dx, dw


@pytest.mark.parametrize("name, tokens, shape", [("deepseek-v3", 200, (128, 256)), ("te-current", 40, (64, 32)),
                                                 ("tensor-fast", 40, (64, 32)), ("tensor-promote", 150, (256, 64)),
                                                 ("mxfp8", 40, (64, 32))])
def test_linear_gemms_equal_scaled_matmul(name, tokens, shape, rng):
    n_in, n_out = shape
    r = ft.recipe(name)
    layer = ft.Linear(n_in, n_out, bias=False, recipe=r)
    x = rng.standard_normal((tokens, n_in)).astype(np.float32)
    g = (rng.standard_normal((tokens, n_out)) * 1e-3).astype(np.float32)
    y, dx, dw = _run(layer, x, g)
    want = _expected(r, x, layer.weight.detach().numpy(), g)
    for got, exp in zip((y, dx, dw), want):
        assert_bitwise_equal(got.astype(np.float64), exp)   # float32 holds every BF16/FP32 output exactly


def test_deepseek_wgrad_requantizes_the_saved_fp8_x(rng):
    # DeepSeek-V3 saves x in FP8 (1 x 128 tiles); Wgrad needs 128 x 1 tiles: dequantize, quantize again.
    # Quantizing the high-precision x instead gives other bits: the choice is visible, hence a parameter.
    r = ft.recipe("deepseek-v3")
    x = rng.standard_normal((256, 128)).astype(np.float32)
    g = rng.standard_normal((256, 128)).astype(np.float32)
    layer = ft.Linear(128, 128, bias=False, recipe=r)
    _, _, dw = _run(layer, x, g)
    other = ft.Linear(128, 128, bias=False, recipe=dataclasses.replace(r, saved_x="input"))
    other.weight.data.copy_(layer.weight.data)
    _, _, dw_input = _run(other, x, g)
    assert_bitwise_equal(dw.astype(np.float64), _expected(r, x, layer.weight.detach().numpy(), g)[2])
    assert (dw != dw_input).any()


def test_per_tensor_saved_fp8_equals_requantized_input(rng):
    # with one scale per tensor, the saved FP8 x and a fresh quantization of x are the same bits
    r = ft.recipe("te-current")
    x, g = rng.standard_normal((64, 64)).astype(np.float32), rng.standard_normal((64, 32)).astype(np.float32)
    a, b = ft.Linear(64, 32, recipe=r), ft.Linear(64, 32, recipe=dataclasses.replace(r, saved_x="input"))
    b.load_state_dict(a.state_dict())
    for got, exp in zip(_run(a, x, g), _run(b, x, g)):
        assert_bitwise_equal(got, exp)


def test_delayed_scaling_records_one_amax_per_tensor_per_step(rng):
    layer = ft.Linear(64, 32, bias=False, recipe="te-delayed")
    w = layer.weight.detach().numpy().astype(np.float64)
    steps = [(rng.standard_normal((16, 64)).astype(np.float32) * s, rng.standard_normal((16, 32)).astype(np.float32))
             for s in (1.0, 3.0)]
    for i, (x, g) in enumerate(steps):
        before = copy.deepcopy(layer.delayed)
        layer.weight.grad = None
        y, dx, dw = _run(layer, x, g)
        assert [len(layer.delayed[t].history) for t in "xwg"] == [i + 1] * 3
        assert layer.delayed["x"].history[-1] == np.abs(x).max()
        assert layer.delayed["g"].history[-1] == np.abs(g).max()
        # the same bits from quantize_scaled with the state the step started from
        A = fp8sim.quantize_scaled(x.astype(np.float64), "e4m3", delayed=before["x"])
        B = fp8sim.quantize_scaled(w.T, "e4m3", delayed=before["w"])
        G = fp8sim.quantize_scaled(g.astype(np.float64), "e5m2", delayed=before["g"])
        assert_bitwise_equal(y.astype(np.float64), fp8sim.scaled_matmul(A, B, unit="H100:e4m3"))
        T = ft._transposed
        assert_bitwise_equal(dx.astype(np.float64),
                             fp8sim.scaled_matmul(G, T(B), unit="H100:e5m2,e4m3", promote_every=128))
        assert_bitwise_equal(dw.astype(np.float64), fp8sim.scaled_matmul(T(G), A, unit="H100:e5m2,e4m3",
                                                                         promote_every=128, out_format="float32"))


# --- gradients against float64 ------------------------------------------------------------------------------

def _bound(u_a, u_b, out_u, extra):
    """Normwise bound on a GEMM of quantized operands: each element of A within a relative u_a of its
    value (u_a may count two quantizations), each of B within u_b, then accumulation (extra) and
    output rounding (out_u): |err| <= ((1+u_a)(1+u_b)(1+extra)(1+out_u) - 1) * (|A| |B|)."""
    return (1 + u_a) * (1 + u_b) * (1 + extra) * (1 + out_u) - 1


@pytest.mark.parametrize("name", ["deepseek-v3", "te-current", "tensor-fast", "mxfp8"])
def test_gradients_within_the_quantization_bound(name, rng):
    r = ft.recipe(name)
    n = 128
    layer = ft.Linear(n, n, bias=True, recipe=r)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(_data(rng, (n, n))))
    x, g = _data(rng, (256, n)), _data(rng, (256, n))
    y, dx, dw = _run(layer, x, g)
    w = layer.weight.detach().numpy().astype(np.float64)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    u = {"e4m3": 2.0 ** -4, "e5m2": 2.0 ** -3}
    ug = u[r.dgrad.a.fmt]
    ux = u["e4m3"] * (2 + u["e4m3"]) if r.saved_x == "fp8" and r.wgrad.b.granularity != "tensor" else u["e4m3"]
    acc = 2.0 ** -10     # 13-bit truncation of chains of at most 128 products, promoted or not at K <= 256
    bf16, fp32 = 2.0 ** -8, 2.0 ** -24
    cases = [(y - layer.bias.detach().numpy(), x64 @ w.T, np.abs(x64) @ np.abs(w.T), _bound(u["e4m3"], u["e4m3"], bf16 + fp32, acc)),
             (dx, g64 @ w, np.abs(g64) @ np.abs(w), _bound(ug, u["e4m3"], bf16, acc)),
             (dw, g64.T @ x64, np.abs(g64.T) @ np.abs(x64), _bound(ug, ux, fp32, acc))]
    for got, exact, scale, gamma in cases:
        err = np.abs(got - exact)
        assert (err <= gamma * scale).all(), (name, float((err / scale).max()), gamma)
        assert np.linalg.norm(err) > 0   # quantization did happen
    assert_bitwise_equal(layer.bias.grad.numpy(), torch.from_numpy(g).sum(0).numpy())


def test_bf16_recipe_gradients(rng):
    layer = ft.Linear(32, 16, recipe="bf16")
    x, g = rng.standard_normal((8, 32)).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32)
    y, dx, dw = _run(layer, x, g)
    w = layer.weight.detach().numpy().astype(np.float64)
    bf = fp8sim.quantize
    # the GEMM output is a BF16 value: y minus the FP32 bias added after it
    gemm = y.astype(np.float64) - layer.bias.detach().numpy()
    exact = bf(x, "bfloat16") @ bf(w, "bfloat16").T
    assert np.abs(gemm - exact).max() <= 2.0 ** -7 * np.abs(exact).max()
    assert np.abs(dx - g.astype(np.float64) @ w).max() <= 2.0 ** -6 * np.abs(g @ w).max()
    assert np.abs(dw - g.T.astype(np.float64) @ x).max() <= 2.0 ** -6 * np.abs(g.T @ x).max()


# --- channel scale (the outlier stress) ----------------------------------------------------------------------

def test_channel_scale_is_exact_in_bf16_and_felt_by_per_tensor_fp8(rng):
    d = np.ones(64)
    d[[3, 17]] = 2.0 ** 10
    x, g = rng.standard_normal((32, 64)).astype(np.float32), rng.standard_normal((32, 32)).astype(np.float32)
    for name, same in (("bf16", True), ("tensor-promote", False)):
        plain = ft.Linear(64, 32, recipe=name)
        stressed = ft.Linear(64, 32, recipe=name, channel_scale=d)
        stressed.load_state_dict(plain.state_dict())
        got, ref = _run(stressed, x, g), _run(plain, x, g)
        if same:
            for a, b in zip(got, ref):
                assert_bitwise_equal(a, b)
        else:
            # y and dW see x's outlier channels through the per-tensor scale (dx sees only the divided weight
            # columns, which mostly stay representable)
            assert (got[0] != ref[0]).any() and (got[2] != ref[2]).any()


# --- swap helper and bad input -------------------------------------------------------------------------------

def test_swap_linears_keeps_weights_and_skips(rng):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.GELU(),
                              torch.nn.Sequential(torch.nn.Linear(128, 128)), torch.nn.Linear(128, 10))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ft.swap_linears(net, "deepseek-v3", skip={"3"})
    assert isinstance(net[0], ft.Linear) and isinstance(net[2][0], ft.Linear) and not isinstance(net[3], ft.Linear)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    out = net(torch.randn(4, 128))
    out.sum().backward()
    assert net[0].weight.grad is not None


def test_bad_input():
    with pytest.raises(ValueError, match="unknown recipe.*deepseek-v3"):
        ft.recipe("deepseek-v4")
    with pytest.raises(ValueError, match="dgrad|fprop"):
        ft.recipe("te-current", gpu="V100")              # no FP8 unit on V100
    r = ft.recipe("mxfp8")
    bad = dataclasses.replace(r, dgrad=dataclasses.replace(r.dgrad, a=ft.OperandSpec("e5m2", "mx32",
                                                                                     {"mx_scale": "ceil"})))
    with pytest.raises(ValueError, match="dgrad: operand A is float8_e5m2"):  # the E4M3 unit cannot take E5M2
        ft.Linear(64, 32, recipe=bad)
    with pytest.raises(ValueError, match="gpu= and instruction= apply"):
        ft.recipe(r, gpu="B200")
    with pytest.raises(ValueError, match="in_features=100 is not a multiple of 128"):
        ft.Linear(100, 128, recipe="deepseek-v3")
    with pytest.raises(ValueError, match="out_features=48 is not a multiple of 32"):
        ft.Linear(64, 48, recipe="mxfp8")
    net = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.Linear(128, 10))
    with pytest.raises(ValueError, match="layer '1'.*out_features=10"):
        ft.swap_linears(net, "deepseek-v3")
    assert type(net[0]) is torch.nn.Linear              # nothing was swapped
    with pytest.raises(ValueError, match="skip names no module"):
        ft.swap_linears(net, "deepseek-v3", skip={"head"})
    with pytest.raises(ValueError, match="powers of two"):
        ft.Linear(64, 32, recipe="te-current", channel_scale=np.full(64, 3.0))
    with pytest.raises(ValueError, match="shape"):
        ft.Linear(64, 32, recipe="te-current", channel_scale=np.ones(3))
    with pytest.raises(ValueError, match="amax history"):
        ft.linear(torch.ones(2, 64), torch.ones(32, 64), recipe="te-delayed")
    with pytest.raises(ValueError, match="last dimension"):
        ft.Linear(64, 32, recipe="te-current")(torch.ones(2, 63))
    with pytest.raises(TypeError, match="recipe must be"):
        ft.recipe(3)


def test_linear_float64_and_batched_inputs(rng):
    """Any leading dimensions, float64 activations: the output keeps the input's dtype and shape, and the
    GEMMs see the flattened rows (same bits as a 2-D call)."""
    layer = ft.Linear(64, 32, bias=False, recipe="tensor-promote").double()
    x = torch.from_numpy(rng.standard_normal((2, 3, 64)))
    y = layer(x)
    assert y.dtype == torch.float64 and y.shape == (2, 3, 32)
    assert_bitwise_equal(y.detach().reshape(6, 32).numpy(), layer(x.reshape(6, 64)).detach().numpy())
