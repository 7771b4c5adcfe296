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
    # the baseline engine, threads and (if installed) the numba ceiling compute the same bits
    for p in results["main"]["plans"].values():
        assert p["same_bits_as_classic"] and p["threads_bit_identical"] and p.get("numba_same_bits", True)
    assert set(results["units"]) and all(v["mac_per_s"] > 0 for v in results["units"].values())
    rows = results["instructions"]["rows"]   # issue 10's rows: H100 wgmma, MI300X mfma, B200 tcgen05 FP8
    assert list(rows) == ["H100:float8_e4m3fn@wgmma", benchmark_matmul.CLASSIC_ROW, "MI300X:float8_e4m3fnuz@mfma",
                          "B200:float8_e4m3fn@tcgen05"]
    assert rows["H100:float8_e4m3fn@wgmma"]["rate_vs_h100"] == 1.0
    assert rows[benchmark_matmul.CLASSIC_ROW]["rate_vs_h100_0_1"] == 1.0 and rows[benchmark_matmul.CLASSIC_ROW]["same_bits"]


def test_benchmark_instruction_rows_only(tmp_path, capsys):
    """--instructions-only: issue 10's rows alone, with the 0.1 engine's H100 row, in their own JSON."""
    res = benchmark_matmul.main(["--quick", "--instructions-only", "--out", str(tmp_path)])
    rows = res["instructions"]["rows"]
    assert rows[benchmark_matmul.CLASSIC_ROW]["same_bits"] and len(rows) == 4
    saved = json.loads((tmp_path / "benchmark_instructions.json").read_text())
    assert saved["instructions"]["rows"].keys() == rows.keys()
    assert "fp8sim 0.1's engine" in capsys.readouterr().out


def test_conformance_table(tmp_path):
    from experiments import conformance_table
    from fp8sim.hardware import PACKED_VECTORS

    path = os.environ.get("FP8SIM_HW_VECTORS") or str(PACKED_VECTORS)

    rows = conformance_table.main(["--vectors", path, "--out", str(tmp_path)])
    assert len(rows) == 24 and all(r["fp32_matched"] == r["rows"] for r in rows)


def test_accumulation_error_quick(tmp_path):
    from experiments import accumulation_error

    accumulation_error.main(["--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "accumulation_error.json").read_text())
    s = record["deepseek_setting"]
    assert {"distribution", "K", "metric", "fast_max_rel_err", "promoted_max_rel_err"} <= set(s)
    assert s["fast_max_rel_err"] >= 10 * s["promoted_max_rel_err"]
    assert (tmp_path / "accumulation_error.png").stat().st_size > 10000
    assert record["seed"] == 0 and "fp8sim_version" in record and "command" in record


def test_outlier_sensitivity_quick(tmp_path):
    from experiments import outlier_sensitivity

    result = outlier_sensitivity.main(["--quick", "--out", str(tmp_path)])
    f = result["fractions"][0]
    n = len([m for m in result["magnitudes"] if m <= 10000])

    def err(recipe):
        return outlier_sensitivity.series(result, recipe, "rel_err_normal_channels", f)

    tensor, tile = err("per-tensor"), err("1x128 tile")
    assert all(b >= a * 0.98 for a, b in zip(tensor, tensor[1:]))  # per-tensor grows with the outliers
    assert tensor[n - 1] > 1.2 * tensor[0] and tensor[-1] > 3 * tensor[0]
    assert max(tile[:n]) <= 2 * tile[0]                              # 1x128 stays near outlier-free to 10**4
    assert tile[-1] < tensor[-1] / 2
    assert (tmp_path / "outlier_sensitivity.png").exists()


def test_format_error_quick(tmp_path):
    from experiments import format_error

    rows = format_error.main(["--quick", "--out", str(tmp_path)])
    for r in rows.values():
        assert r["max_rel_err_normal_range"] <= r["eps_over_2"]
    assert (tmp_path / "format_error.png").exists()


def test_dask_cluster_gives_the_local_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    from experiments import accumulation_error

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = accumulation_error.main(["--quick", "--out", str(tmp_path / "dask"),
                                          "--scheduler", cluster.scheduler_address])
    local = accumulation_error.main(["--quick", "--out", str(tmp_path / "local")])
    assert remote == local


def test_python_m_experiments_quick(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "experiments", "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ["accumulation_error", "outlier_sensitivity", "format_error"]:
        assert (tmp_path / f"{name}.png").exists() and (tmp_path / f"{name}.json").exists()


def test_quick_without_out_never_touches_the_committed_figures(tmp_path, monkeypatch):
    """--quick without --out writes to a new temporary folder; a full run's default is the repo's figures/."""
    from experiments import _common, format_error

    figures = _common.FIGURES
    before = {p.name: p.stat().st_mtime_ns for p in figures.iterdir()} if figures.is_dir() else {}
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    format_error.main(["--quick"])
    after = {p.name: p.stat().st_mtime_ns for p in figures.iterdir()} if figures.is_dir() else {}
    assert after == before
    assert list(tmp_path.glob("fp8sim-quick-*/format_error.json"))
    assert _common.resolve_out(None, False) == str(figures)


def test_experiments_run_from_another_directory(tmp_path):
    """python REPO/experiments works from any directory (and python -m experiments from the root)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(repo / "experiments"), "--help"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "python -m experiments" in r.stdout, r.stderr[-2000:]


def test_torch_differences(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed: the comparison with PyTorch's casts needs it")
    from experiments import torch_differences

    rows = torch_differences.main(["--out", str(tmp_path)])
    by = {(r["dtype"], r["input"]): r for r in rows}
    # from float32, the options listed reproduce torch's E4M3 cast exactly, and FP16 needs none
    assert by[("float8_e4m3fn", "float32")]["with_options"] == {}
    assert by[("float16", "float32")]["default"] == {}
    assert "double rounding" in by[("float16", "float64")]["default"]  # torch rounds float64 through float32
    assert (tmp_path / "torch_differences.json").exists()


def test_json_records_commit_and_full_command(tmp_path):
    from experiments import format_error

    format_error.main(["--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "format_error.json").read_text())
    assert record["command"].startswith("python") and "git_commit" in record


def test_conformance_table_has_a_row_per_preset(tmp_path):
    from experiments import conformance_table
    from fp8sim.hardware import presets

    conformance_table.main(["--out", str(tmp_path)])
    record = json.loads((tmp_path / "conformance.json").read_text())
    rows = record["presets"]
    keys = {(r["gpu"], r["instruction"], r["a_format"]) for r in rows if r["out_format"] == "float32"}
    assert {(g, i, f) for g, i, f, _ in presets()} <= keys
    for r in rows:
        for kind in ("measured", "mmasim"):
            if kind in r:
                assert r[kind][0] == r[kind][1], r


def test_b200_second_mechanism_fits_and_differs():
    from experiments import fit_b200
    from fp8sim.hardware import PACKED_VECTORS, load_vectors

    v = load_vectors(PACKED_VECTORS, "B200", "E5M2")
    got = fit_b200.fp16_emulation(v["a"], v["b"], v["c"], "e5m2")
    assert (got.astype("float32").view("uint32") == v["d_bits"]).all()
    disc = fit_b200.discriminate(rows=400)
    assert disc["differ"] > 0 and disc["first"] is not None
    # the interleaved emulation (H100's measured FP8 mma.sync) fits every B200 row as well, and differs
    for fmt_dir, fmt in (("E4M3", "e4m3"), ("E5M2", "e5m2")):
        v = load_vectors(PACKED_VECTORS, "B200", fmt_dir)
        inter = fit_b200.interleaved_emulation(v["a"], v["b"], v["c"], fmt)
        assert (inter.astype("float32").view("uint32") == v["d_bits"]).all()
    assert disc["preset_vs_interleaved"] > 0 and disc["halves_vs_interleaved"] > 0


def test_block_scaled_error_quick(tmp_path):
    from experiments import block_scaled_error

    result = block_scaled_error.main(["--quick", "--out", str(tmp_path)])
    errs = {r: block_scaled_error.spread(result, r, "K", result["Ks"], magnitude=1)[0] for r in result["recipes"]}
    # FP4 elements lose far more than FP8 ones; every recipe's error is the size of its element rounding
    assert all(errs["MXFP4 (B200)"] > 2 * errs["MXFP8 (B200)"]) and all(errs["NVFP4 (B200)"] > 2 * errs["MXFP8 (B200)"])
    assert all(0.005 < e < 0.5 for v in errs.values() for e in v)
    assert (tmp_path / "block_scaled_error.png").exists() and (tmp_path / "block_scaled_error.json").exists()


def test_fp8_training_quick(tmp_path):
    pytest.importorskip("torch", reason="the FP8 training experiment needs PyTorch")
    from experiments import fp8_training

    fp8_training.main(["--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "fp8_training.json").read_text())
    runs, seeds = record["runs"], record["seeds"]
    assert runs == fp8_training.DEFAULT_RUNS and seeds == [0, 1]
    assert sorted((p["run"], p["seed"]) for p in record["points"]) == sorted((r, s) for r in runs for s in seeds)
    steps = record["train"]["steps"]
    for p in record["points"]:
        assert p["diverged_at"] is None and len(p["train_losses"]) == steps
        assert p["curve"][-1][0] == steps and all(0 < v < 10 for _, v in p["curve"])
    first = {(p["run"], p["seed"]): p["curve"][0][1] for p in record["points"]}
    final = {(p["run"], p["seed"]): p["final_loss"] for p in record["points"]}
    for s in seeds:  # a seed fixes the initial weights: before any step, the recipes differ by rounding only
        assert all(abs(first[(r, s)] / first[("bf16", s)] - 1) < 0.01 for r in runs)
        assert any(final[(r, s)] != final[("bf16", s)] for r in runs if r != "bf16")
    summary = record["summary"]
    assert set(summary) == set(runs) and len(summary["deepseek-v3"]["rel_error_per_seed"]) == len(seeds)
    assert summary["deepseek-v3"]["rel_error_ci95"][0] <= summary["deepseek-v3"]["rel_error_mean"]
    assert record["corpus"]["sha256"] == fp8_training.CORPUS_SHA256
    assert (tmp_path / "fp8_training.png").stat().st_size > 10000


def test_fp8_training_corpus_is_pinned(tmp_path):
    import gzip

    from experiments import fp8_training

    assert len(fp8_training.load_corpus()) == 4137850
    changed = tmp_path / "kjv.txt.gz"
    changed.write_bytes(gzip.compress(b"In the beginning"))
    with pytest.raises(ValueError, match="SHA-256"):
        fp8_training.load_corpus(changed)


def test_fp8_training_on_dask_gives_the_local_result(tmp_path):
    pytest.importorskip("torch", reason="the FP8 training experiment needs PyTorch")
    distributed = pytest.importorskip("distributed")
    from experiments import fp8_training

    args = ["--quick", "--runs", "deepseek-v3"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = fp8_training.main(args + ["--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address])
    local = fp8_training.main(args + ["--out", str(tmp_path / "local")])
    for r in (remote, local):
        for p in r["points"]:
            p.pop("seconds")
    assert remote["points"] == local["points"] and remote["summary"] == local["summary"]


def test_fuzz_engines_runs_clean_and_finds_a_planted_bug(tmp_path, monkeypatch):
    """experiments/fuzz_engines.py: three cases per unit agree with the twins; a twin made to get the
    sign of zero results wrong is reported (exit status 1, the mismatch recorded)."""
    from experiments import fuzz_engines
    from fp8sim import reference

    n = 3 * len(fuzz_engines.units())
    assert fuzz_engines.main(["--cases", str(n), "--seed", "5", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "fuzz_engines.json").read_text())
    assert record["cases"] == n and not record["first_mismatches"]

    true_twin = reference.block_fma_dot
    monkeypatch.setattr(reference, "block_fma_dot", lambda *args: -true_twin(*args) if true_twin(*args) == 0
                        else true_twin(*args))
    assert fuzz_engines.main(["--cases", "200", "--seed", "5", "--unit", "H100:float8_e4m3fn@wgmma",
                              "--out", str(tmp_path)]) == 1
    record = json.loads((tmp_path / "fuzz_engines.json").read_text())
    assert record["first_mismatches"][0]["unit"] == "H100:float8_e4m3fn@wgmma"


def test_compare_commits_times_both_checkouts(tmp_path, capsys):
    """The alternating-process comparison: each side's process imports fp8sim from its checkout (the
    driver checks), the two results agree bit for bit, and the record lists every round."""
    from experiments import compare_commits

    root = str(compare_commits.ROOT)
    units = "H100:float8_e4m3fn@wgmma,A100:tf32@mma.sync"
    res = compare_commits.main(["--base", root, "--units", units, "--shape", "8,8,64", "--rounds", "2",
                                "--repeats", "1", "--out", str(tmp_path)])
    assert list(res["units"]) == units.split(",")
    for r in res["units"].values():
        assert r["same_bits"] and len(r["rounds_s"]["base"]) == len(r["rounds_s"]["head"]) == 2
        assert r["base_s"] > 0 and r["head_s"] > 0
    assert json.loads((tmp_path / "compare_commits.json").read_text())["shape"] == [8, 8, 64]
    assert "base/head" in capsys.readouterr().out


def test_compare_commits_refuses_bad_input(tmp_path):
    from experiments import compare_commits

    with pytest.raises(SystemExit, match="not a checkout"):
        compare_commits.main(["--base", str(tmp_path), "--shape", "8,8,64", "--rounds", "1"])
    for bad in (["--units", "H100-e4m3"], ["--shape", "8,8"], ["--rounds", "0"], []):
        with pytest.raises(SystemExit):
            compare_commits.main((["--base", str(compare_commits.ROOT)] if bad else []) + bad)


def test_compare_commits_worker_digest_sees_one_bit(monkeypatch):
    """The digest behind ``same bits`` changes when one bit of one result does."""
    import numpy as np

    import fp8sim
    from experiments import compare_commits

    real = fp8sim.matmul

    def one_bit_off(*args, **kwargs):
        r = real(*args, **kwargs)
        r.reshape(-1).view(np.uint64)[0] ^= np.uint64(1)
        return r

    unit = "H100:float8_e4m3fn@wgmma"
    before = compare_commits.worker([unit], [4, 4, 32], 1, 0)["units"][unit]
    monkeypatch.setattr(fp8sim, "matmul", one_bit_off)
    after = compare_commits.worker([unit], [4, 4, 32], 1, 0)["units"][unit]
    assert before["s"] > 0 and before["bits"] != after["bits"]
