"""Accumulation error of the H100 FP8 tensor core, fast chain versus promotion (DeepSeek-V3).

    python experiments/accumulation_error.py [--quick] [--seed 0] [--out figures] [--scheduler ADDRESS]

DeepSeek-V3 (arXiv 2412.19437, section 3.3.2) reports that with K = 4096
the limited accumulation precision of Hopper's FP8 tensor cores gives a
maximum relative error of nearly 2% for random matrices, and that
promoting partial sums to FP32 every 128 elements fixes it; it states
neither the input distribution nor the metric.  This script simulates
(M, K) @ (K, N) GEMMs with E4M3 inputs through fp8sim's H100 unit:

* error versus K (128 to 16384) for the fast chain, promotion every 128
  and the exact sum, over input distributions (zero-mean normal, normal
  with mean mu * std, uniform [0, 1), half-normal) and three metrics
  (max elementwise relative error, relative Frobenius error, DeepGEMM's
  ``1 - 2 sum(xy) / sum(x^2 + y^2)``), each against the exact sum rounded
  to FP32;
* the setting where the fast chain's max relative error at K = 4096 is
  closest to 2% (searched over the mean of a shifted normal), and what
  promotion brings it to: the ``deepseek_setting`` of the JSON;
* a sweep of the accumulator width (align bits 10 to 23) against the input
  mean at K = 4096 (heatmap with the 2% contour), and of the promotion
  interval (32 to 4096).

Inputs are drawn per sweep point from the seed and the point, so local and
Dask runs give identical numbers.
"""

from __future__ import annotations

import numpy as np

import fp8sim
from fp8sim.hardware import tensor_core

try:
    from ._common import point_rng, run_sweep, save_figure
except ImportError:  # run as a script
    from _common import point_rng, run_sweep, save_figure

DISTS = ["normal", "shifted_normal", "uniform", "halfnormal"]
METRICS = ["max_rel_err", "rel_frobenius", "deepgemm_diff"]


def inputs(dist, mu, rng, M, K, N):
    def draw(shape):
        if dist in ("normal", "shifted_normal"):
            x = rng.standard_normal(shape) + mu
        elif dist == "uniform":
            x = rng.random(shape)
        elif dist == "halfnormal":
            x = np.abs(rng.standard_normal(shape))
        else:
            raise ValueError(dist)
        return fp8sim.quantize(x, "e4m3", overflow="saturate")

    return draw((M, K)), draw((K, N))


def metrics(y, exact):
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(y - exact) / np.abs(exact)
    return {
        "max_rel_err": float(np.max(rel[exact != 0])),
        "rel_frobenius": float(np.linalg.norm(y - exact) / np.linalg.norm(exact)),
        "deepgemm_diff": float(1 - 2 * np.sum(y * exact) / np.sum(y * y + exact * exact)),
    }


def error_point(p):
    """One GEMM: errors of the fast chain and of promotion against the exact sum."""
    dist, mu, K, M, N, seed = p["dist"], p["mu"], p["K"], p["M"], p["N"], p["seed"]
    rng = point_rng(seed, DISTS.index(dist), round(mu * 1000), K, p.get("tag", 0))
    a, b = inputs(dist, mu, rng, M, K, N)
    unit = tensor_core("H100", "e4m3").replace(align_bits=p.get("align_bits", 13))
    exact = fp8sim.matmul(a, b, unit="exact")
    out = {**p}
    if p.get("fast", True):
        out["fast"] = metrics(fp8sim.matmul(a, b, unit=unit), exact)
    for every in p.get("promote", [128]):
        out[f"promote{every}"] = metrics(fp8sim.matmul(a, b, unit=unit, promote_every=every), exact)
    return out


def compute(quick, seed, executor):
    M = N = 16 if quick else 128
    Ks = [128, 512, 1024] if quick else [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
    mus = [0.5, 0.75, 1.0] if quick else [round(0.4 + 0.05 * i, 2) for i in range(13)]  # 0.4 .. 1.0
    K0 = 1024 if quick else 4096
    base = dict(M=M, N=N, seed=seed)

    # 1. the DeepSeek setting: shifted-normal mean whose fast max relative error at K0 is nearest 2%
    search = executor.map(error_point, [dict(base, dist="shifted_normal", mu=mu, K=K0) for mu in mus],
                          desc="deepseek setting")
    best = min(search, key=lambda r: abs(r["fast"]["max_rel_err"] - 0.02))
    mu_star = best["mu"]

    # 2. error versus K for each distribution
    dist_mu = {"normal": 0.0, "shifted_normal": mu_star, "uniform": 0.0, "halfnormal": 0.0}
    vs_k = executor.map(error_point, [dict(base, dist=d, mu=dist_mu[d], K=K) for d in DISTS for K in Ks],
                        desc="error vs K")

    # 3. accumulator width x input mean at K0 (fast chain), and the promotion interval
    widths = [10, 13, 16] if quick else list(range(10, 24))
    means = [0.0, 0.5, 1.0] if quick else [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    width_pts = executor.map(error_point, [dict(base, dist="shifted_normal", mu=m, K=K0, align_bits=w, promote=[],
                                                tag=1) for w in widths for m in means], desc="width sweep")
    intervals = [32, 128, 512] if quick else [32, 64, 128, 256, 512, 1024, 2048, 4096]
    promo = executor.map(error_point, [dict(base, dist="shifted_normal", mu=mu_star, K=K0, promote=intervals,
                                            fast=False)], desc="promotion sweep")[0]

    setting = {
        "distribution": f"normal(mean={mu_star}, std=1), both operands, rounded to E4M3",
        "K": K0, "M": M, "N": N, "metric": "max_rel_err (max over outputs of |y - exact| / |exact|)",
        "fast_max_rel_err": best["fast"]["max_rel_err"],
        "promoted_max_rel_err": best["promote128"]["max_rel_err"],
        "fast_rel_frobenius": best["fast"]["rel_frobenius"],
        "promoted_rel_frobenius": best["promote128"]["rel_frobenius"],
        "mean_over_std": mu_star,
    }
    return {
        "deepseek_setting": setting,
        "mean_search": [{"mu": r["mu"], "fast_max_rel_err": r["fast"]["max_rel_err"],
                         "promoted_max_rel_err": r["promote128"]["max_rel_err"]} for r in search],
        "error_vs_k": [{"dist": r["dist"], "mu": r["mu"], "K": r["K"], "fast": r["fast"],
                        "promote128": r["promote128"]} for r in vs_k],
        "width_sweep": {"widths": widths, "means": means,
                        "fast_max_rel_err": [[next(p["fast"]["max_rel_err"] for p in width_pts
                                                   if p["align_bits"] == w and p["mu"] == m) for m in means]
                                             for w in widths]},
        "promotion_sweep": {"intervals": intervals,
                            "max_rel_err": [promo[f"promote{i}"]["max_rel_err"] for i in intervals],
                            "rel_frobenius": [promo[f"promote{i}"]["rel_frobenius"] for i in intervals]},
        "shape": {"M": M, "N": N, "K_for_setting": K0},
    }


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    colors = dict(zip(DISTS, ["C0", "C1", "C2", "C3"]))
    for dist in DISTS:
        rows = [r for r in result["error_vs_k"] if r["dist"] == dist]
        ks = [r["K"] for r in rows]
        label = dist if dist != "shifted_normal" else f"normal, mean {rows[0]['mu']}"
        ax.loglog(ks, [r["fast"]["rel_frobenius"] for r in rows], "-o", color=colors[dist], label=f"{label}: fast")
        ax.loglog(ks, [r["promote128"]["rel_frobenius"] for r in rows], "--s", color=colors[dist],
                  label=f"{label}: promote 128")
    ax.set_xlabel("K (dot-product length)")
    ax.set_ylabel("relative Frobenius error vs the exact product")
    ax.set_title("H100 unit, E4M3 inputs: error vs K")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1]
    ws = result["width_sweep"]
    z = np.array(ws["fast_max_rel_err"])
    im = ax.pcolormesh(ws["means"], ws["widths"], np.log10(z), shading="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax, label="log10 max relative error (fast chain)")
    if z.min() < 0.02 < z.max() and len(ws["means"]) > 1 and len(ws["widths"]) > 1:
        ax.contour(ws["means"], ws["widths"], z, levels=[0.02], colors="red")
    ax.axhline(13, color="white", ls=":", lw=1)
    ax.set_xlabel("input mean / std (E4M3 inputs)")
    ax.set_ylabel("accumulator align bits F")
    ax.set_title(f"Fast chain, K = {result['shape']['K_for_setting']}: 2% contour red, H100's F = 13 dotted",
                 fontsize=10)

    ax = axes[2]
    ps = result["promotion_sweep"]
    ax.loglog(ps["intervals"], ps["max_rel_err"], "-o", label="max relative error")
    ax.loglog(ps["intervals"], ps["rel_frobenius"], "-s", label="relative Frobenius")
    s = result["deepseek_setting"]
    ax.set_xlabel("promotion interval (elements of K)")
    ax.set_ylabel("error vs the exact product")
    ax.set_title(f"H100 unit, E4M3 inputs {s['distribution'].split(', both')[0]}, K = {s['K']}", fontsize=10)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    save_figure(fig, path, dpi=110)


def main(argv=None):
    result = run_sweep(argv, __doc__, compute, "accumulation_error", plot)
    s = result["deepseek_setting"]
    print(f"DeepSeek setting: {s['distribution']}, K = {s['K']}, M = N = {s['M']}")
    print(f"  fast chain:         max relative error {100 * s['fast_max_rel_err']:.2f}%   "
          f"relative Frobenius {100 * s['fast_rel_frobenius']:.3f}%")
    print(f"  promotion every 128: max relative error {100 * s['promoted_max_rel_err']:.4f}%   "
          f"relative Frobenius {100 * s['promoted_rel_frobenius']:.4f}%")
    print(f"  promotion lowers the max relative error {s['fast_max_rel_err'] / s['promoted_max_rel_err']:.0f}x")
    return result


if __name__ == "__main__":
    main()
