"""The experiment scripts run (in their quick modes) and write their records."""

import json
import os

import pytest

from experiments import benchmark_matmul, benchmark_quantize, exhaustive_casts


def test_exhaustive_casts_quick(tmp_path):
    results = exhaustive_casts.main(["--quick", "--out", str(tmp_path)])
    assert all(r["mismatches"] == 0 for r in results.values())
    assert results["float8_e4m3fn"]["checked"] > 60000
    record = json.loads((tmp_path / "exhaustive_casts.json").read_text())
    assert record["stride"] == 65537 and "fp8sim_version" in record


def test_benchmark_quantize_quick(tmp_path):
    ratios = benchmark_quantize.main(["--quick", "--out", str(tmp_path)])
    assert ratios["fp8sim_over_ml_dtypes"] > 0
    assert (tmp_path / "benchmark_quantize.json").exists()


def test_benchmark_matmul_quick(tmp_path):
    results = benchmark_matmul.main(["--quick", "--out", str(tmp_path)])
    # the obvious implementation in the script computes the same bits
    assert all(p["same_bits_as_obvious"] for p in results["plans"].values())


def test_conformance_table(tmp_path):
    path = os.environ.get("FP8SIM_HW_VECTORS")
    if not path:
        pytest.skip("FP8SIM_HW_VECTORS is not set")
    from experiments import conformance_table

    rows = conformance_table.main(["--vectors", path, "--out", str(tmp_path)])
    assert len(rows) == 24 and all(r["fp32_matched"] == r["rows"] for r in rows)
