import math

import numpy as np
import pytest

import fp8sim
from fp8sim.bounds import bound_factor, dot_error_bound, step_beta
from fp8sim.hardware import tensor_core


def exact_dot(a, b):
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = math.fsum(a[i] * b[:, j])  # products exact; one rounding to float64
    return out


def draw(kind, rng, shape, fmt):
    x = {"normal": rng.standard_normal(shape), "uniform": rng.random(shape),
         "shifted": rng.standard_normal(shape) + 0.65, "wide": rng.standard_normal(shape) * np.exp2(
             rng.integers(-8, 8, shape))}[kind]
    return fp8sim.quantize(x, fmt, overflow="saturate")


CASES = [("H100", "e4m3", None), ("H100", "e4m3", 128), ("H100", "e5m2", None), ("B200", "e4m3", None),
         ("Ada", "e4m3", 64), ("H100", "bfloat16", None), ("V100", "float16", None)]


@pytest.mark.parametrize("gpu, fmt, promote", CASES)
@pytest.mark.parametrize("kind", ["normal", "uniform", "shifted", "wide"])
def test_deterministic_bound_holds_and_is_not_vacuous(gpu, fmt, promote, kind, rng):
    unit = tensor_core(gpu, fmt)
    a, b = draw(kind, rng, (16, 2048), fmt), draw(kind, rng, (2048, 16), fmt)
    err = np.abs(fp8sim.matmul(a, b, unit=unit, promote_every=promote) - exact_dot(a, b))
    bound = dot_error_bound(a, b, unit, promote_every=promote)
    assert np.all(err <= bound)
    T = np.abs(a) @ np.abs(b)
    assert np.all(bound < T)  # never vacuous: below the trivial bound sum |a_i b_i|


def test_overestimation_measured():
    """How far the bounds sit above the errors (printed by experiments/bounds_check.py too)."""
    rng = np.random.default_rng(0)
    unit = tensor_core("H100", "e4m3")
    a, b = draw("uniform", rng, (32, 4096), "e4m3"), draw("uniform", rng, (4096, 32), "e4m3")
    err = np.abs(fp8sim.matmul(a, b, unit=unit) - exact_dot(a, b))
    ratio = dot_error_bound(a, b, unit) / err
    assert 1 < ratio.min() and ratio.max() < 50  # all-positive sums: within 50x


def test_probabilistic_bound_for_random_signs():
    rng = np.random.default_rng(1)
    unit = tensor_core("H100", "e4m3")
    a, b = draw("normal", rng, (32, 4096), "e4m3"), draw("normal", rng, (4096, 32), "e4m3")
    err = np.abs(fp8sim.matmul(a, b, unit=unit) - exact_dot(a, b))
    prob = dot_error_bound(a, b, unit, kind="probabilistic")
    det = dot_error_bound(a, b, unit)
    assert np.all(err <= prob) and np.all(prob < det / 2)


def test_comparison_units_and_factors():
    rng = np.random.default_rng(2)
    a = fp8sim.quantize(rng.standard_normal((8, 500)), "float32")
    b = fp8sim.quantize(rng.standard_normal((500, 8)), "float32")
    ex = exact_dot(a, b)
    assert np.all(np.abs(fp8sim.matmul(a, b, unit="fp32_fma") - ex) <= dot_error_bound(a, b, "fp32_fma"))
    assert np.all(np.abs(fp8sim.matmul(a, b, unit="exact") - ex) <= dot_error_bound(a, b, "exact"))
    beta = step_beta(tensor_core("H100", "e4m3"))
    assert bound_factor(4096, "H100:e4m3") == pytest.approx((1 + beta) ** 128 - 1)
    assert bound_factor(4096, "H100:e4m3", promote_every=128) < bound_factor(4096, "H100:e4m3") / 20
    with pytest.raises(ValueError, match="kind"):
        bound_factor(10, "H100:e4m3", kind="loose")


# --- bad input (issue 12) ---------------------------------------------------------------------------



@pytest.mark.parametrize("promote_every", [-128, 0, 128.0, 100, True])
def test_promote_every_checked(promote_every):
    a, b = np.ones((1, 256)), np.ones((256, 1))
    with pytest.raises(ValueError, match="promote_every"):
        dot_error_bound(a, b, "H100:e4m3", promote_every=promote_every)


@pytest.mark.parametrize("lam", [-1, 0, float("nan"), "5"])
def test_lam_checked(lam):
    with pytest.raises(ValueError, match="lam"):
        bound_factor(128, "H100:e4m3", kind="probabilistic", lam=lam)


def test_one_dimensional_operands_and_huge_k():
    with pytest.raises(ValueError, match="2-D"):
        dot_error_bound(np.ones(4), np.ones(4), "H100:e4m3")
    with pytest.raises(ValueError, match="K must be"):
        bound_factor(2**70, "H100:e4m3")
    with pytest.raises(ValueError, match="K must be"):
        bound_factor(0, "H100:e4m3")
    assert bound_factor(2**60, "H100:e4m3") == float("inf")  # vacuous, never negative or an error
    assert bound_factor(4096, "H100:e4m3", kind="probabilistic", lam=1) > 0
