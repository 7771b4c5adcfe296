"""Error of block-scaled Blackwell GEMMs (MXFP8, MXFP4, NVFP4) next to the FP8 1 x 128 / 128 x 128 recipe on H100.

    python experiments/block_scaled_error.py [--quick] [--seed 0] [--out figures] [--scheduler ADDRESS]

Each recipe quantizes X (M x K) and W (K x N) and runs the GEMM through the
unit that executes it, FP32 output, against the exact product X @ W
(float64):

* FP8 1x128 / 128x128 (DeepSeek-V3's tiles) on the H100 E4M3 unit, DeepGEMM
  order (scales per 128-element K block applied in FP32);
* MXFP8: E4M3, UE8M0 scales per 32, B200 ``kind::mxf8f6f4`` (scales inside
  the fused sum);
* MXFP4: E2M1, UE8M0 scales per 32, B200 ``kind::mxf4``;
* NVFP4: E2M1, UE4M3 scales per 16 and an FP32 tensor scale, B200
  ``kind::mxf4nvf4``.

Reported: the relative Frobenius error ``|Y - XW| / |XW|``, versus K
(standard-normal X and W) and versus the magnitude of outlier channels in X
(0.4% of X's columns scaled up, K = 1024), over three seeds (mean and
min-max band; one seed with ``--quick``).
"""

from __future__ import annotations

import numpy as np

import fp8sim
from fp8sim.hardware import block_scaled_unit, group_scaled_unit

try:
    from ._common import plot_band, point_rng, run_sweep, save_figure
except ImportError:  # run as a script
    from _common import plot_band, point_rng, run_sweep, save_figure

RECIPES = ["FP8 1x128/128x128 (H100)", "MXFP8 (B200)", "MXFP4 (B200)", "NVFP4 (B200)"]


def gemm(recipe, x, w):
    if recipe.startswith("FP8"):
        A, B = fp8sim.quantize_scaled(x, "e4m3", (1, 128)), fp8sim.quantize_scaled(w, "e4m3", (128, 128))
        return fp8sim.scaled_matmul(A, B, unit="H100:e4m3", out_format="float32")
    if recipe.startswith("MXFP8"):
        A, B = fp8sim.quantize_scaled(x, "e4m3", "mx32"), fp8sim.quantize_scaled(w, "e4m3", "mx32", axis=0)
        return fp8sim.scaled_matmul(A, B, unit=block_scaled_unit("B200", "e4m3"), out_format="float32")
    if recipe.startswith("MXFP4"):
        A, B = fp8sim.quantize_scaled(x, "e2m1", "mx32"), fp8sim.quantize_scaled(w, "e2m1", "mx32", axis=0)
        return fp8sim.scaled_matmul(A, B, unit=group_scaled_unit("B200", "mxf4", 32, "ue8m0"), out_format="float32")
    A, B = fp8sim.quantize_scaled(x, "e2m1", "nvfp4"), fp8sim.quantize_scaled(w, "e2m1", "nvfp4", axis=0)
    return fp8sim.scaled_matmul(A, B, unit=group_scaled_unit("B200", "mxf4nvf4", 16, "e4m3"), out_format="float32")


def point(p):
    rng = point_rng(p["seed"], p["K"], round(p["magnitude"]))
    x = rng.standard_normal((p["M"], p["K"]))
    if p["magnitude"] > 1:
        cols = rng.choice(p["K"], max(1, round(0.004 * p["K"])), replace=False)
        x[:, cols] *= p["magnitude"]
    w = rng.standard_normal((p["K"], p["N"]))
    exact = x @ w
    return {**p, **{r: float(np.linalg.norm(gemm(r, x, w) - exact) / np.linalg.norm(exact)) for r in RECIPES}}


def compute(quick, seed, executor):
    M = N = 16 if quick else 64
    Ks = [256, 512] if quick else [256, 512, 1024, 2048, 4096, 8192]
    mags = [1, 100] if quick else [1, 10, 100, 1000, 10000]
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    pts = [dict(seed=s, M=M, N=N, K=K, magnitude=1) for s in seeds for K in Ks]
    pts += [dict(seed=s, M=M, N=N, K=1024 if not quick else 256, magnitude=m) for s in seeds for m in mags if m > 1]
    rows = executor.map(point, pts, desc="block-scaled")
    return {"recipes": RECIPES, "Ks": Ks, "magnitudes": mags, "seeds": seeds, "shape": [M, N],
            "K_outliers": 1024 if not quick else 256, "points": rows}


def spread(result, recipe, key, values, **fixed):
    per_seed = np.array([[next(r[recipe] for r in result["points"] if r["seed"] == s and r[key] == v
                               and all(r[k] == fv for k, fv in fixed.items())) for v in values]
                         for s in result["seeds"]])
    return per_seed.mean(axis=0), per_seed.min(axis=0), per_seed.max(axis=0)


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    M, N = result["shape"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    mags = result["magnitudes"]
    for recipe in result["recipes"]:
        plot_band(axes[0], result["Ks"], *spread(result, recipe, "K", result["Ks"], magnitude=1), recipe)
        if len(mags) > 1:
            plot_band(axes[1], mags, *spread(result, recipe, "magnitude", mags, K=result["K_outliers"]), recipe)
    axes[0].set_xlabel("K (dot-product length)")
    axes[0].set_xscale("log")
    axes[0].set_xticks(result["Ks"], [str(k) for k in result["Ks"]])
    axes[0].minorticks_off()
    axes[0].set_title(f"Standard-normal X ({M} x K) and W (K x {N}), FP32 output")
    axes[1].set_xlabel("outlier magnitude (0.4% of X's columns, x typical)")
    axes[1].set_title(f"Outlier channels in X, K = {result['K_outliers']}")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("relative Frobenius error vs the exact product")
        ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path, legend_from=axes[0],
                legend_title=f"recipe and unit; lines: mean of {len(result['seeds'])} seed(s), bands: min to max")


def main(argv=None):
    result = run_sweep(argv, __doc__, compute, "block_scaled_error", plot)
    print("relative Frobenius error vs the exact product, standard-normal inputs (mean over seeds)")
    print("  K:                       " + " ".join(f"{k:>9d}" for k in result["Ks"]))
    for recipe in result["recipes"]:
        mean = spread(result, recipe, "K", result["Ks"], magnitude=1)[0]
        print(f"  {recipe:25s}" + " ".join(f"{v:9.4f}" for v in mean))
    return result


if __name__ == "__main__":
    main()
