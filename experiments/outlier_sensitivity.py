"""Sensitivity of FP8 scaling granularities to activation outliers.

    python experiments/outlier_sensitivity.py [--quick] [--seed 0] [--out figures] [--scheduler ADDRESS]

Activations shaped like an LLM's: (tokens, channels) standard-normal
values, with a few outlier channels whose values are ``magnitude`` times
larger (LLM.int8(), Dettmers et al. 2022, section 3: a few feature
dimensions carry most of the magnitude).  Each is quantized to E4M3 with
per-tensor, per-row (per token), 1 x 128 tile, 128 x 128 block and MX-32
(E8M0) scaling.  Reported per setting:

* relative quantization error of the ordinary channels (Frobenius norm
  of the error over the non-outlier channels, relative to their norm);
* SNR in dB over the whole tensor, ``10 log10(|x|^2 / |q - x|^2)``;
* the GEMM error against a weight matrix W (channels x 256, N(0, 1/K)):
  ``|deq(X) W - X W| / |X W|`` in float64, which isolates the activation
  quantization.
"""

from __future__ import annotations

import numpy as np

import fp8sim

try:
    from ._common import plot_band, point_rng, run_sweep, save_figure
except ImportError:  # run as a script
    from _common import plot_band, point_rng, run_sweep, save_figure

RECIPES = {"per-tensor": "tensor", "per-row": "row", "1x128 tile": (1, 128), "128x128 block": (128, 128),
           "MX-32": "mx32"}


def activations(rng, tokens, channels, magnitude, fraction):
    x = rng.standard_normal((tokens, channels))
    n_out = max(1, round(fraction * channels)) if magnitude > 1 else 0
    cols = rng.choice(channels, n_out, replace=False)
    x[:, cols] *= magnitude
    return x, cols


def point(p):
    rng = point_rng(p["seed"], round(p["magnitude"]), round(p["fraction"] * 1e5))
    x, cols = activations(rng, p["tokens"], p["channels"], p["magnitude"], p["fraction"])
    w = point_rng(p["seed"], 7).standard_normal((p["channels"], 256)) / np.sqrt(p["channels"])
    normal = np.ones(p["channels"], bool)
    normal[cols] = False
    y = x @ w
    out = {**p, "outlier_channels": int(len(cols))}
    for name, gran in RECIPES.items():
        q = fp8sim.quantize_scaled(x, "e4m3", gran).dequantize()
        err = q - x
        out[name] = {
            "rel_err_normal_channels": float(np.linalg.norm(err[:, normal]) / np.linalg.norm(x[:, normal])),
            "snr_db": float(10 * np.log10(np.sum(x * x) / np.sum(err * err))),
            "gemm_rel_err": float(np.linalg.norm(q @ w - y) / np.linalg.norm(y)),
        }
    return out


def compute(quick, seed, executor):
    tokens, channels = (128, 256) if quick else (256, 2048)
    magnitudes = [1, 100, 10000, 100000] if quick else [1, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000]
    fractions = [0.004] if quick else [0.001, 0.004, 0.01, 0.03]
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    pts = [dict(seed=s, tokens=tokens, channels=channels, magnitude=m, fraction=f)
           for s in seeds for f in fractions for m in magnitudes]
    rows = executor.map(point, pts, desc="outliers")
    return {"recipes": list(RECIPES), "magnitudes": magnitudes, "fractions": fractions, "seeds": seeds,
            "shape": [tokens, channels], "points": rows}


def series(result, recipe, metric, fraction, seed=None):
    """One value per magnitude, for ``seed`` (default: the first seed)."""
    seed = result.get("seeds", [None])[0] if seed is None else seed
    return [next(r[recipe][metric] for r in result["points"] if r["magnitude"] == m and r["fraction"] == fraction
                 and r.get("seed", seed) == seed)
            for m in result["magnitudes"]]


def spread(result, recipe, metric, fraction):
    """(mean, min, max) over the seeds, per magnitude."""
    per_seed = np.array([series(result, recipe, metric, fraction, s) for s in result.get("seeds", [None])])
    return per_seed.mean(axis=0), per_seed.min(axis=0), per_seed.max(axis=0)


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f0 = result["fractions"][min(1, len(result["fractions"]) - 1)]
    n_seeds = len(result.get("seeds", [None]))
    tokens, channels = result["shape"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 5.2))
    for ax, metric, label in zip(axes[:3], ["rel_err_normal_channels", "snr_db", "gemm_rel_err"],
                                 ["relative error, ordinary channels", "SNR (dB), whole tensor",
                                  "GEMM relative error |deq(X)W - XW| / |XW|"]):
        for recipe in result["recipes"]:
            plot_band(ax, result["magnitudes"], *spread(result, recipe, metric, f0), recipe)
        ax.set_xscale("log")
        if metric != "snr_db":
            ax.set_yscale("log")
        ax.set_xlabel("outlier magnitude (x typical value)")
        ax.set_ylabel(label)
        ax.set_title(f"E4M3, {tokens} x {channels}, {100 * f0:g}% outlier channels")
        ax.grid(True, which="both", alpha=0.3)
    ax = axes[3]
    mtop = result["magnitudes"][-1]
    for recipe in result["recipes"]:
        vals = np.array([[next(r[recipe]["rel_err_normal_channels"] for r in result["points"]
                               if r["magnitude"] == mtop and r["fraction"] == f and r.get("seed", s) == s)
                          for f in result["fractions"]] for s in result.get("seeds", [None])])
        plot_band(ax, [100 * f for f in result["fractions"]], vals.mean(axis=0), vals.min(axis=0), vals.max(axis=0),
                  recipe)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("outlier channels (% of channels)")
    ax.set_ylabel("relative error, ordinary channels")
    ax.set_title(f"E4M3, outliers {mtop:g}x typical")
    ax.grid(True, which="both", alpha=0.3)
    shade = f"; lines: mean of {n_seeds} seeds, bands: min to max" if n_seeds > 1 else ""
    save_figure(fig, path, legend_from=axes[0], legend_title=f"scaling granularity{shade}")


def main(argv=None):
    result = run_sweep(argv, __doc__, compute, "outlier_sensitivity", plot)
    f0 = result["fractions"][min(1, len(result["fractions"]) - 1)]
    print(f"relative error of the ordinary channels, E4M3, {result['shape'][0]} x {result['shape'][1]}, "
          f"{100 * f0:g}% outlier channels")
    print("  magnitude: " + " ".join(f"{m:>8g}" for m in result["magnitudes"]))
    for recipe in result["recipes"]:
        vals = series(result, recipe, "rel_err_normal_channels", f0)
        print(f"  {recipe:14s}" + " ".join(f"{v:8.4f}" for v in vals))
    return result


if __name__ == "__main__":
    main()
