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
