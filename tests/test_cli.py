import subprocess
import sys

from fp8sim.__main__ import format_rows, main
from fp8sim.formats import NAMED_FORMATS


def test_formats_table(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(NAMED_FORMATS)
    e4m3 = next(line for line in out if line.startswith("| float8_e4m3fn "))
    assert "| 448 |" in e4m3 and "| e4m3 |" in e4m3


def test_formats_csv(capsys):
    assert main(["formats", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("name,alias,bits")
    assert {r["name"] for r in format_rows()} == set(NAMED_FORMATS)


def test_bad_command_is_one_line_no_traceback():
    r = subprocess.run([sys.executable, "-m", "fp8sim", "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fp8sim", *args], capture_output=True, text=True, timeout=300)


def test_golden_and_verify_round_trip(tmp_path):
    import numpy as np

    import fp8sim
    from fp8sim.testing import read_golden

    g = tmp_path / "g.npz"
    r = run_cli("golden", "--unit", "H100:e4m3", "--shape", "8x4x256", "--seed", "3", "--promote-every", "128",
                "--out", str(g))
    assert r.returncode == 0, r.stderr
    arrays, config = read_golden(g)
    assert config["shape"] == [8, 4, 256] and config["unit"]["align_bits"] == 13 and config["promote_every"] == 128
    # the file is self-contained: recompute from codes alone
    a = fp8sim.decode(arrays["a_codes"], config["in_format"])
    b = fp8sim.decode(arrays["b_codes"], config["in_format"])
    d = fp8sim.matmul(a, b, unit="H100:e4m3", promote_every=128)
    np.testing.assert_array_equal(fp8sim.encode(d, "float32"), arrays["d_bits"])

    good = tmp_path / "good.npy"
    np.save(good, d.astype(np.float32))
    r = run_cli("verify", str(g), str(good))
    assert r.returncode == 0 and r.stdout.startswith("OK")
    np.save(good, arrays["d_bits"])  # bit patterns work too
    assert run_cli("verify", str(g), str(good)).returncode == 0

    bad = tmp_path / "bad.npy"
    wrong = d.astype(np.float32)
    wrong[2, 1] = np.nextafter(wrong[2, 1], np.float32(np.inf))
    np.save(bad, wrong)
    r = run_cli("verify", str(g), str(bad))
    assert r.returncode == 1 and "1 of 32 values differ" in r.stdout and "[2, 1]" in r.stdout


def test_golden_with_scaling(tmp_path):
    from fp8sim.testing import read_golden

    g = tmp_path / "s.npz"
    r = run_cli("golden", "--unit", "H100:e4m3", "--shape", "4x130x256", "--scaling", "deepgemm", "--out", str(g))
    assert r.returncode == 0, r.stderr
    arrays, config = read_golden(g)
    assert config["out_format"] == "bfloat16" and arrays["d_bits"].dtype.name == "uint16"
    assert arrays["a_scale_bits"].shape == (4, 2) and arrays["b_scale_bits"].shape == (2, 2)


def test_unusable_input_exits_2_with_one_line(tmp_path):
    import numpy as np

    g = tmp_path / "g.npz"
    assert run_cli("golden", "--unit", "H100:e4m3", "--shape", "2x2x32", "--out", str(g)).returncode == 0
    np.save(tmp_path / "shape.npy", np.zeros((3, 3), np.float32))
    (tmp_path / "corrupt.npz").write_bytes(b"garbage")
    cases = [
        ("verify", str(g), str(tmp_path / "shape.npy")),
        ("verify", str(tmp_path / "corrupt.npz"), str(tmp_path / "shape.npy")),
        ("verify", str(g), str(tmp_path / "missing.npy")),
        ("golden", "--unit", "H100:e9m9", "--shape", "2x2x32", "--out", str(tmp_path / "x.npz")),
        ("golden", "--unit", "H100:e4m3", "--shape", "2x2", "--out", str(tmp_path / "x.npz")),
        ("golden", "--unit", "H100:e4m3", "--shape", "2x2x32", "--promote-every", "7", "--out", str(tmp_path / "x.npz")),
    ]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- verify and golden hardening (issue 12) -----------------------------------------------------

def _golden(tmp_path, bits, out_format="float32"):
    import numpy as np

    from fp8sim.testing import write_golden

    path = tmp_path / "g.npz"
    write_golden(path, {"d_bits": np.asarray(bits)}, {"out_format": out_format})
    return path


def test_verify_refuses_wide_integers_and_nan_payloads(tmp_path, capsys):
    import numpy as np

    bits = np.array([[0x3F800000, 0x7FC00000]], np.uint32)
    g = _golden(tmp_path, bits)
    np.save(tmp_path / "wide.npy", bits.astype(np.int64) | (1 << 32))
    assert main(["verify", str(g), str(tmp_path / "wide.npy")]) == 1
    assert "not float32 codes" in capsys.readouterr().out
    payload = bits.copy()
    payload[0, 1] = 0x7FC00001
    np.save(tmp_path / "nan.npy", payload.view(np.float32))
    assert main(["verify", str(g), str(tmp_path / "nan.npy")]) == 1
    out = capsys.readouterr().out
    assert "NaN encodings differ" in out and "only differences are NaN encodings" in out
    assert main(["verify", str(g), str(tmp_path / "nan.npy"), "--equal-nan"]) == 0


def test_verify_ml_dtypes_raw_binaries_transpose_summary_json(tmp_path, capsys):
    import json

    import ml_dtypes
    import numpy as np

    rng = np.random.default_rng(0)
    vals = rng.standard_normal((3, 5)).astype(ml_dtypes.bfloat16)
    g = _golden(tmp_path, vals.view(np.uint16), "bfloat16")
    np.save(tmp_path / "bf.npy", vals)  # stored as |V2
    assert main(["verify", str(g), str(tmp_path / "bf.npy")]) == 0
    vals.tofile(tmp_path / "out.bin")
    assert main(["verify", str(g), str(tmp_path / "out.bin"), "--dtype", "bfloat16"]) == 0
    assert main(["verify", str(g), str(tmp_path / "out.bin"), "--dtype", "bfloat16", "--shape", "3x5"]) == 0
    capsys.readouterr()
    assert main(["verify", str(g), str(tmp_path / "out.bin"), "--dtype", "float32"]) == 2  # wrong size
    np.save(tmp_path / "t.npy", vals.T.copy())
    assert main(["verify", str(g), str(tmp_path / "t.npy")]) == 1
    assert "transpose of the expected" in capsys.readouterr().out
    off = vals.view(np.uint16).copy()
    off[0, 0] += 1
    off[1, 1] += 3
    np.save(tmp_path / "off.npy", off)
    assert main(["verify", str(g), str(tmp_path / "off.npy")]) == 1
    out = capsys.readouterr().out
    assert "2 of 15 values differ" in out and "largest distance: 3 ulp" in out and "1: 1, 3-4: 1" in out
    assert main(["verify", str(g), str(tmp_path / "off.npy"), "--max-ulp", "3"]) == 0
    assert main(["verify", str(g), str(tmp_path / "off.npy"), "--max-ulp", "2", "--json"]) == 1
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["status"] == "mismatch" and report["max_ulp"] == 3 and report["n_differ"] == 2


def test_verify_fifo_is_an_error_not_a_hang(tmp_path):
    import os

    import numpy as np

    g = _golden(tmp_path, np.zeros((2, 2), np.uint32))
    os.mkfifo(tmp_path / "fifo")
    r = run_cli("verify", str(g), str(tmp_path / "fifo"))
    assert r.returncode == 2 and "not a regular file" in r.stderr
    r = run_cli("verify", str(tmp_path / "fifo"), str(g))
    assert r.returncode == 2 and "not a regular file" in r.stderr


def test_golden_shape_parsing_strict_size_limit_and_ignored_options(tmp_path, capsys):
    out = str(tmp_path / "x.npz")
    for shape in ["２x2x32", "2_0x2x32", "2x2x+32", " 2x2x32", "2x2x32x1", "0x2x32"]:
        assert main(["golden", "--unit", "H100:e4m3", "--shape", shape, "--out", out]) == 2, shape
        assert "--shape must be MxNxK" in capsys.readouterr().err
    assert main(["golden", "--unit", "H100:e4m3", "--shape", "100000x100000x100000", "--out", out]) == 2
    assert "--max-elements" in capsys.readouterr().err
    assert main(["golden", "--unit", "H100:e4m3", "--shape", "2x2x32", "--out-format", "float16", "--out", out]) == 2
    assert "--out-format applies with --scaling only" in capsys.readouterr().err


def test_formats_csv_rows_match_the_header(capsys):
    import csv
    import io

    assert main(["formats", "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert all(len(r) == len(rows[0]) for r in rows)


def test_golden_block_scaled_recipes_and_user_inputs(tmp_path):
    import numpy as np

    import fp8sim
    from fp8sim.blockscale import block_scaled_chain
    from fp8sim.hardware import block_scaled_unit
    from fp8sim.testing import read_golden

    for scaling in ("mxfp8", "mxfp4", "nvfp4", "deepgemm_pow2"):
        g = tmp_path / f"{scaling}.npz"
        assert main(["golden", "--unit", "B200:e4m3", "--shape", "4x3x128", "--scaling", scaling, "--out-format",
                     "float32", "--out", str(g)]) == 0
        arrays, config = read_golden(g)
        assert config["scaling"] == scaling and arrays["d_bits"].shape == (4, 3)
    arrays, config = read_golden(tmp_path / "mxfp8.npz")
    a, b = fp8sim.decode(arrays["a_codes"], "e4m3"), fp8sim.decode(arrays["b_codes"], "e4m3")
    sa, sb = fp8sim.decode(arrays["a_scale_bits"], "e8m0"), fp8sim.decode(arrays["b_scale_bits"], "e8m0")
    d = block_scaled_chain(a, b, np.zeros((4, 3)), sa, sb, block_scaled_unit("B200", "e4m3"))
    np.testing.assert_array_equal(fp8sim.encode(d, "float32"), arrays["d_bits"])   # self-contained
    assert config["unit"]["kind"] == "BlockScaledFMA"
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((5, 64)))
    np.save(tmp_path / "w.npy", rng.standard_normal((64, 2)).astype(np.float32))
    g = tmp_path / "user.npz"
    assert main(["golden", "--unit", "H100:e4m3", "--a", str(tmp_path / "x.npy"), "--b", str(tmp_path / "w.npy"),
                 "--out", str(g)]) == 0
    arrays, config = read_golden(g)
    assert config["shape"] == [5, 2, 64] and "sha256" in config["inputs"]
    assert main(["golden", "--unit", "H100:e4m3", "--a", str(tmp_path / "x.npy"), "--out", str(g)]) == 2
