import ml_dtypes
import numpy as np
import pytest

import fp8sim
from fp8sim.testing import assert_bitwise_equal, read_golden, ulp_distance, write_golden


def test_equal_passes_signed_zero_and_nan_encodings_count():
    assert_bitwise_equal(np.float32([1.0, -0.0, np.nan]), np.float32([1.0, -0.0, np.nan]))
    with pytest.raises(AssertionError, match="1 of 2 values differ"):
        assert_bitwise_equal(np.float32([1.0, -0.0]), np.float32([1.0, 0.0]))
    quiet = np.array([0x7FC00000], np.uint32).view(np.float32)
    payload = np.array([0x7FC00001], np.uint32).view(np.float32)
    with pytest.raises(AssertionError, match="0x7fc00001"):
        assert_bitwise_equal(payload, quiet)


def test_message_lists_positions_bits_and_ulps():
    a = np.zeros((3, 4), np.float32)
    b = a.copy()
    b[1, 2] = np.nextafter(np.float32(0), np.float32(1)) * 3
    b[2, 0] = 1.0
    with pytest.raises(AssertionError) as info:
        assert_bitwise_equal(a, b)
    msg = str(info.value)
    assert msg.startswith("2 of 12 values differ (fmt float32)")
    assert "[1, 2]: actual 0x00000000 (0.0)  expected 0x00000003" in msg and "3 ulp apart" in msg
    assert "[2, 0]" in msg and "1065353216 ulp apart" in msg


def test_codes_and_ml_dtypes_inputs():
    x = np.array([1.0, 2.0, 448.0], ml_dtypes.float8_e4m3fn)
    assert_bitwise_equal(x, [1.0, 2.0, 448.0], fmt="e4m3")
    assert_bitwise_equal(x.view(np.uint8), [1.0, 2.0, 448.0], fmt="e4m3")
    with pytest.raises(AssertionError, match="2 ulp apart"):
        assert_bitwise_equal([1.0, 2.0, 384.0], x, fmt="e4m3")
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_bitwise_equal([1.0], [1.0, 2.0])


@pytest.mark.parametrize("name", ["e4m3", "e5m2", "float8_e4m3fnuz", "e2m1", "e8m0", "bf16"])
def test_ulp_distance_counts_values_between(name, rng):
    """Twin: the number of distinct finite values strictly between, plus one, from values()."""
    fmt = fp8sim.get_format(name)
    grid = fmt.values()
    x = rng.choice(grid, 500)
    y = rng.choice(grid, 500)
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    want = np.searchsorted(grid, hi) - np.searchsorted(grid, lo)
    np.testing.assert_array_equal(ulp_distance(x, y, fmt), want)
    assert np.isnan(ulp_distance([np.nan], [1.0], "e4m3")).all()
    assert ulp_distance([np.inf], [57344.0], "e5m2")[0] == 1


def test_golden_round_trip_and_errors(tmp_path):
    path = tmp_path / "g.npz"
    write_golden(path, {"d_bits": np.arange(4, dtype=np.uint32)}, {"out_format": "float32"})
    arrays, config = read_golden(path)
    assert config == {"version": 1, "out_format": "float32"} and arrays["d_bits"].tolist() == [0, 1, 2, 3]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable golden file"):
        read_golden(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="not a golden file"):
        read_golden(tmp_path / "other.npz")


def test_readme_oracle_example_runs(tmp_path, monkeypatch):
    """docs/examples/test_fp8_gemm.py (shown in the README) passes, and fails for a wrong kernel."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    src = (Path(__file__).parent.parent / "docs" / "examples" / "test_fp8_gemm.py").read_text()
    (tmp_path / "test_example.py").write_text(src)
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null", str(tmp_path)]
    r = subprocess.run(run, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:]
    broken = src.replace('return out.astype(np.float32)', 'return (a_fp8.astype(np.float32) @ b_fp8.astype(np.float32))')
    (tmp_path / "test_example.py").write_text(broken)
    r = subprocess.run(run, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 1 and "values differ (fmt float32)" in r.stdout
