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


# --- an oracle never calls different bits equal (issue 12) -----------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fp8sim.__main__ import main as cli_main  # noqa: E402
from fp8sim.testing import bit_patterns, compare_bitwise  # noqa: E402


@pytest.mark.parametrize("actual, expected, fmt", [
    ([0x138], [0x38], "e4m3"),
    ([-1], [255], "e4m3"),
    ([0x13F80], [0x3F80], "bf16"),
])
def test_integer_codes_are_never_cut_to_the_format_width(actual, expected, fmt):
    with pytest.raises(ValueError, match="outside the codes"):
        assert_bitwise_equal(np.array(actual), np.array(expected), fmt=fmt)
    with pytest.raises(ValueError, match="outside the codes"):
        ulp_distance(np.array(actual), np.array(expected), fmt)


def test_bit_patterns_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match="outside the codes"):
        bit_patterns([300, -1], "e4m3")
    assert bit_patterns([44, 255], "e4m3").tolist() == [44, 255]


def test_integers_without_fmt_compare_as_exact_integers():
    a = np.array([2**53], np.uint64)
    b = np.array([2**53 + 1], np.int64)
    with pytest.raises(AssertionError, match="1 apart"):
        assert_bitwise_equal(a, b)
    with pytest.raises(AssertionError):
        assert_bitwise_equal(np.array([-1], np.int64), np.array([2**64 - 1], np.uint64))
    assert_bitwise_equal(np.array([7], np.int8), np.array([7], np.uint64))


def test_float64_bit_patterns_one_ulp_apart_differ():
    x = np.array([1.0])
    y = np.nextafter(x, 2.0)
    with pytest.raises(AssertionError, match="fmt float64.*\n.*1 ulp apart"):
        assert_bitwise_equal(x, y)
    with pytest.raises(AssertionError, match="1 ulp apart"):
        assert_bitwise_equal(x.view(np.uint64), y.view(np.uint64), fmt=fp8sim.testing.FLOAT64)


def test_ml_dtypes_distance_in_their_own_ulps():
    a = np.array([1.0], ml_dtypes.float8_e4m3fn)
    b = np.array([1.125], ml_dtypes.float8_e4m3fn)
    with pytest.raises(AssertionError) as info:
        assert_bitwise_equal(a, b)
    assert "(fmt float8_e4m3fn)" in str(info.value) and "1 ulp apart" in str(info.value)


def test_mixed_dtypes_without_fmt_need_fmt():
    with pytest.raises(TypeError, match="pass fmt="):
        assert_bitwise_equal(np.float32([1.0]), np.float64([1.0]))
    with pytest.raises(TypeError, match="pass fmt="):
        assert_bitwise_equal(np.float32([1.0]), np.uint32([0x3F800000]))


def test_nan_payloads_count_unless_equal_nan():
    cuda = np.array([0x7FFFFFFF], np.uint32).view(np.float32)
    numpy_nan = np.array([0x7FC00000], np.uint32).view(np.float32)
    with pytest.raises(AssertionError, match="only differences are NaN encodings"):
        assert_bitwise_equal(cuda, numpy_nan)
    assert_bitwise_equal(cuda, numpy_nan, equal_nan=True)
    with pytest.raises(AssertionError, match="NaN vs a number"):
        assert_bitwise_equal(cuda, np.float32([1.0]), equal_nan=True)
    # a payload cannot be carried through another dtype: an error, not a guess
    with pytest.raises(ValueError, match="NaN payloads"):
        assert_bitwise_equal(cuda.astype(np.float64), numpy_nan, fmt="float32")


def test_masked_arrays_are_refused():
    m = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    with pytest.raises(TypeError, match="masked array"):
        assert_bitwise_equal(m, np.array([1.0, 5.0]))
    with pytest.raises(TypeError, match="masked array"):
        fp8sim.quantize(m, "e4m3")
    with pytest.raises(TypeError, match="masked array"):
        fp8sim.encode(m, "e4m3")
    with pytest.raises(TypeError, match="masked array"):
        fp8sim.decode(np.ma.masked_array([1, 2], mask=[0, 1]), "e4m3")


def test_comparison_summary():
    a = np.float32([1.0, 2.0, 3.0, 4.0, np.nan])
    b = a.copy()
    b[0] = np.nextafter(b[0], np.float32(9))
    b[1] = b[1] + np.float32(2.0**-19)  # 8 ulps of float32 (2**-22) at 2
    b[4] = 1.0
    r = compare_bitwise(a, b)
    assert r.n_differ == 3 and r.max_ulp == 8 and r.histogram == {"1": 1, "5-8": 1, "NaN": 1}
    assert r.as_dict()["positions"] == [[0], [1], [4]]


# every dtype fp8sim accepts, with the format its bits are compared in
_DTYPES = [
    (np.float16, "float16"), (np.float32, "float32"), (np.float64, None),
    (ml_dtypes.bfloat16, "bfloat16"), (ml_dtypes.float8_e4m3fn, "e4m3"), (ml_dtypes.float8_e5m2, "e5m2"),
    (ml_dtypes.float8_e4m3fnuz, "float8_e4m3fnuz"), (ml_dtypes.float8_e5m2fnuz, "float8_e5m2fnuz"),
    (ml_dtypes.float8_e8m0fnu, "e8m0"),
]
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@settings(max_examples=60, deadline=None)
@given(which=st.integers(0, len(_DTYPES) - 1), n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       bit=st.integers(0, 63), as_codes=st.booleans())
def test_property_one_bit_apart_always_fails(tmp_path_factory, which, n, seed, bit, as_codes):
    """Random bit patterns (NaN payloads included) and the same with one bit flipped."""
    dt, fmt = _DTYPES[which]
    dt = np.dtype(dt)
    width = dt.itemsize * 8 if fmt is None else fp8sim.get_format(fmt).bits
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**min(width, 63), n, dtype=np.uint64)
    if width == 64:
        codes |= rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63)
    flipped = codes.copy()
    flipped[rng.integers(n)] ^= np.uint64(1 << (bit % width))
    u = _UINT[dt.itemsize]
    x, y = codes.astype(u).view(dt), flipped.astype(u).view(dt)
    if as_codes:  # integer codes with the format stated
        x, y = codes.astype(u), flipped.astype(u)
    f = fmt if (fmt is not None or as_codes) else None
    if f is None and as_codes:
        f = fp8sim.testing.FLOAT64
    assert_bitwise_equal(x, x.copy(), fmt=f)
    with pytest.raises(AssertionError):
        assert_bitwise_equal(x, y, fmt=f)
    # verify: a golden file holding x as codes, actual files holding x and y in their own dtype
    if fmt is None:
        return  # golden files hold formats fp8sim names; float64 has no golden output format
    d = tmp_path_factory.mktemp("v")
    write_golden(d / "g.npz", {"d_bits": codes.astype(fp8sim.get_format(fmt).code_dtype)},
                 {"out_format": fp8sim.get_format(fmt).name})
    np.save(d / "same.npy", x)
    np.save(d / "flip.npy", y)
    assert cli_main(["verify", str(d / "g.npz"), str(d / "same.npy")]) == 0
    assert cli_main(["verify", str(d / "g.npz"), str(d / "flip.npy")]) == 1


def test_wide_custom_formats_round_trip():
    wide = fp8sim.FloatFormat(11, 40, name="e11m40")
    q = fp8sim.quantize([0.1, -3.0, 1e-310, np.inf, np.nan], wide)
    codes = fp8sim.encode(q, wide)
    assert codes.dtype == np.uint64
    back = fp8sim.decode(codes, wide)
    assert_bitwise_equal(back[:4], q[:4]) and np.isnan(back[4])
    f64 = fp8sim.FloatFormat(11, 52)
    x = np.array([0.1, -0.0, -np.inf, 5e-324])
    np.testing.assert_array_equal(fp8sim.encode(x, f64), x.view(np.uint64))


def test_golden_file_bomb_and_fifo_are_refused(tmp_path):
    import os
    import zipfile

    path = tmp_path / "bomb.npz"
    big = np.zeros(2**28, np.uint8)  # 256 MiB of zeros packs to a few hundred kB
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("d_bits.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, big)
        with zf.open("config.npy", "w") as fh:
            np.lib.format.write_array(fh, np.frombuffer(b'{"version": 1, "out_format": "float32"}', np.uint8))
    del big
    assert path.stat().st_size < 2**21
    with pytest.raises(ValueError, match="beyond the limit"):
        read_golden(path, max_bytes=2**26)
    # a member that unpacks to more than its header declares
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(lying, "w", zipfile.ZIP_DEFLATED) as zf:
        hdr = tmp_path / "h.npy"
        np.save(hdr, np.zeros(4, np.uint32))
        zf.writestr("d_bits.npy", hdr.read_bytes() + bytes(10**6))
        zf.writestr("config.npy", (lambda p: (np.save(p, np.frombuffer(b'{"version": 1}', np.uint8)),
                                              p.read_bytes())[1])(tmp_path / "c.npy"))
    with pytest.raises(ValueError, match="declares"):
        read_golden(lying)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        read_golden(fifo)


def test_golden_shapes_must_match_the_config(tmp_path):
    path = tmp_path / "g.npz"
    write_golden(path, {"d_bits": np.zeros((3, 3), np.uint32)}, {"out_format": "float32", "shape": [2, 2, 8]})
    with pytest.raises(ValueError, match="the config declares"):
        read_golden(path)
