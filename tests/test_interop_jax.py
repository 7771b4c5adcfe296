"""JAX arrays in the public functions (issue 14).  Skips without jax."""

import numpy as np
import pytest

import fp8sim

jax = pytest.importorskip("jax", reason="jax is not installed: pip install jax runs these tests")
jnp = jax.numpy


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_jax_arrays_convert_bit_for_bit(dtype):
    x = jnp.asarray(np.random.default_rng(0).standard_normal(32) * 4, dtype=getattr(jnp, dtype))
    arr = fp8sim.formats.as_numpy(x)
    np.testing.assert_array_equal(arr.view(np.uint8), np.asarray(x).view(np.uint8))
    fmt = fp8sim.get_format("float32" if dtype == "float32" else dtype)
    np.testing.assert_array_equal(fp8sim.quantize(x, fmt), np.asarray(x).astype(np.float64))
    out = fp8sim.like_input(fp8sim.quantize(x, "e4m3", overflow="saturate"), x)
    assert isinstance(out, jax.Array)


def test_traced_array_is_a_clear_error():
    with pytest.raises(TypeError, match="inside jax.jit"):
        jax.jit(lambda v: jnp.asarray(fp8sim.quantize(v, "e4m3")))(jnp.ones(3))
