"""FP8 training, simulated end to end: a byte-level transformer trained with each recipe against BF16.

    python experiments/fp8_training.py [--quick] [--seed 0] [--seeds 3] [--steps 300] [--runs NAME ...]
                                       [--out figures] [--scheduler ADDRESS]

A small decoder-only transformer language model (bytes in, next byte out;
:data:`MODEL`) trains on the King James Bible (public domain; the text ships
in ``experiments/data/kjv.txt.gz``, pinned by SHA-256, see
``experiments/data/README.md``).  Every ``torch.nn.Linear`` inside the
transformer blocks (attention's QKV and output projections, the MLP's two
layers) is an :class:`fp8sim.torch.Linear`, so its Fprop, Dgrad and Wgrad
GEMMs run through fp8sim's simulated units under the run's recipe.  As in
DeepSeek-V3 (arXiv 2412.19437, section 3.3), the embedding, the output head,
normalisation and attention stay in high precision (FP32 here, in every run),
and master weights, optimizer state and gradient accumulation are FP32.

Runs (:data:`RUNS`): the BF16 baseline, the DeepSeek-V3 recipe, per-tensor
E4M3 scaling with fast accumulation on the H100 unit, the same with promotion
every 128, Transformer Engine's current scaling with E5M2 gradients, and an
outlier stress: a few input channels of every FP8 GEMM multiplied by
``2**OUTLIER_LOG2`` and the matching weight columns divided by it (exact,
:func:`fp8sim.torch.linear`'s ``channel_scale``), so the model's function and
its BF16 training are unchanged and what changes is the recipe's arithmetic.
``--runs mxfp8-b200`` adds MXFP8 on B200's block-scaled unit (not run by
default: that unit is about 15 times slower to simulate).
Each run trains with several seeds; a seed fixes the initial weights and the
batch order, the same for every recipe, so a recipe's gap to BF16 is measured
seed by seed.

Reported: the validation loss (the same fixed batches for every run) during
training and at its end, and the relative loss error
``(L_recipe - L_bf16) / L_bf16`` per seed, as DeepSeek-V3 reports it, with a
95% t interval over the seeds (``scipy.stats``) next to the BF16 seed-to-seed
spread.  The runs are independent points for the experiments' executor
(a local process pool, or a Dask cluster with ``--scheduler``).  ``--quick``
trains a few steps on small batches (for the test suite).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import time
from pathlib import Path

import numpy as np

try:
    from ._common import Executor, out_dir, script_parser, write_json
except ImportError:  # run as a script
    from _common import Executor, out_dir, script_parser, write_json

CORPUS = Path(__file__).resolve().parent / "data" / "kjv.txt.gz"
#: SHA-256 of the decompressed corpus
CORPUS_SHA256 = "b5c4940bcfeee072c0935b5200d0f9d88a00a0199cb0961d16133458fcdfae5d"
VALIDATION_FRACTION = 0.05

#: the model: 2 blocks, width 128 (a multiple of DeepSeek-V3's 128-element blocks), MLP 4x
MODEL = {"vocab": 256, "d_model": 128, "n_layers": 2, "n_heads": 4, "d_ff": 512, "context": 64}
#: training: AdamW, linear warm-up then cosine decay to 10%, gradient clipping
TRAIN = {"batch": 8, "lr": 3e-3, "warmup": 20, "betas": (0.9, 0.95), "weight_decay": 0.01, "clip": 1.0,
         "eval_every": 25, "eval_batches": 8, "eval_seed": 12345}
QUICK = {"steps": 3, "batch": 2, "eval_every": 2, "eval_batches": 2, "seeds": 2}

#: outlier stress: these many input channels of each FP8 GEMM scaled by 2**OUTLIER_LOG2
OUTLIER_CHANNELS = 4
OUTLIER_LOG2 = 16

#: run name -> (recipe, outlier stress)
RUNS = {
    "bf16": ("bf16", False),
    "deepseek-v3": ("deepseek-v3", False),
    "tensor-fast": ("tensor-fast", False),
    "tensor-promote": ("tensor-promote", False),
    "te-current-e5m2": ("te-current", False),
    "tensor-promote+outliers": ("tensor-promote", True),
    "deepseek-v3+outliers": ("deepseek-v3", True),
    "mxfp8-b200": ("mxfp8", False),
}
#: the runs of a plain invocation: all but MXFP8, whose block-scaled unit is about 15 times slower to simulate
DEFAULT_RUNS = [r for r in RUNS if r != "mxfp8-b200"]


def load_corpus(path=CORPUS) -> bytes:
    """The corpus' bytes, checked against :data:`CORPUS_SHA256`."""
    data = gzip.decompress(Path(path).read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(f"{path}: SHA-256 {digest}, expected {CORPUS_SHA256} (the corpus was changed)")
    return data


def build_model(seed, recipe, outliers):
    import torch
    import torch.nn.functional as F

    import fp8sim.torch as ft

    class Block(torch.nn.Module):
        def __init__(self, d, heads, d_ff):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
            self.fc1, self.fc2 = torch.nn.Linear(d, d_ff), torch.nn.Linear(d_ff, d)

        def forward(self, x):
            B, T, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
            q, k, v = (t.reshape(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(B, T, d))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class LM(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.embed = torch.nn.Embedding(m["vocab"], m["d_model"])
            self.pos = torch.nn.Parameter(torch.zeros(m["context"], m["d_model"]))
            self.blocks = torch.nn.ModuleList(Block(m["d_model"], m["n_heads"], m["d_ff"])
                                              for _ in range(m["n_layers"]))
            self.ln = torch.nn.LayerNorm(m["d_model"])
            self.head = torch.nn.Linear(m["d_model"], m["vocab"], bias=False)

        def forward(self, idx):
            x = self.embed(idx) + self.pos[: idx.shape[1]]
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln(x))

    torch.manual_seed(seed)
    model = LM(MODEL)
    channel_scale = None
    if outliers:
        def channel_scale(name, layer):
            # the same few channels in every layer, drawn once (not per seed): the stress is fixed
            cols = np.random.default_rng(2024 + layer.in_features).choice(layer.in_features, OUTLIER_CHANNELS,
                                                                           replace=False)
            d = np.ones(layer.in_features)
            d[cols] = 2.0 ** OUTLIER_LOG2
            return d
    # the output head stays in high precision (DeepSeek-V3 section 3.3.1); the baseline swaps too, so that
    # every run's blocks go through the same layer code
    return ft.swap_linears(model, recipe, skip={"head"}, channel_scale=channel_scale)


def _batch(data, rng, batch, context):
    import torch

    starts = rng.integers(0, len(data) - context - 1, batch)
    idx = np.stack([data[s:s + context + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(idx[:, :-1]), torch.from_numpy(idx[:, 1:])


def train(point):
    """One run with one seed: returns the validation-loss curve and the training losses."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    recipe, outliers = RUNS[point["run"]]
    cfg = point["train"]
    data = np.frombuffer(load_corpus(), dtype=np.uint8)
    split = int(len(data) * (1 - VALIDATION_FRACTION))
    train_data, val_data = data[:split], data[split:]
    model = build_model(point["seed"], recipe, outliers)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]),
                            weight_decay=cfg["weight_decay"])
    steps, warmup = cfg["steps"], min(cfg["warmup"], max(1, cfg["steps"] // 4))

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    rng = np.random.default_rng([point["seed"], 1])
    eval_rng = np.random.default_rng(cfg["eval_seed"])
    evals = [_batch(val_data, eval_rng, cfg["batch"], MODEL["context"]) for _ in range(cfg["eval_batches"])]

    def evaluate():
        model.eval()
        with torch.no_grad():
            loss = np.mean([F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in evals])
        model.train()
        return float(loss)

    curve, train_losses, diverged = [], [], None
    t0 = time.perf_counter()
    for step in range(steps):
        if step % cfg["eval_every"] == 0:
            curve.append((step, evaluate()))
        x, y = _batch(train_data, rng, cfg["batch"], MODEL["context"])
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if not torch.isfinite(loss):  # a recipe that diverges is a result: recorded, not raised
            diverged = step
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        sched.step()
        train_losses.append(float(loss.item()))
    curve.append((steps, evaluate() if diverged is None else float("nan")))
    return {"run": point["run"], "recipe": recipe, "outliers": outliers, "seed": point["seed"],
            "curve": curve, "final_loss": curve[-1][1], "train_losses": train_losses, "diverged_at": diverged,
            "seconds": time.perf_counter() - t0}


def summarize(points, runs, seeds):
    """Relative loss error against BF16, seed by seed, with a 95% t interval over the seeds."""
    from scipy import stats

    final = {(p["run"], p["seed"]): p["final_loss"] for p in points}
    base = np.array([final[("bf16", s)] for s in seeds])
    table = {"bf16": {"final_loss_mean": float(base.mean()), "final_loss_min": float(base.min()),
                      "final_loss_max": float(base.max()),
                      "seed_spread": float((base.max() - base.min()) / base.mean())}}
    for run in runs:
        if run == "bf16":
            continue
        loss = np.array([final[(run, s)] for s in seeds])
        rel = (loss - base) / base
        row = {"final_loss_mean": float(loss.mean()), "rel_error_per_seed": rel.tolist(),
               "rel_error_mean": float(rel.mean())}
        if len(seeds) > 1:
            lo, hi = stats.t.interval(0.95, len(seeds) - 1, loc=rel.mean(), scale=stats.sem(rel)) \
                if np.ptp(rel) > 0 else (rel.mean(), rel.mean())
            row["rel_error_ci95"] = [float(lo), float(hi)]
        table[run] = row
    return table


def compute(args, executor):
    quick = args.quick
    cfg = {**TRAIN, "steps": args.steps}
    n_seeds = args.seeds
    if quick:
        cfg.update({k: QUICK[k] for k in ("steps", "batch", "eval_every", "eval_batches")})
        n_seeds = QUICK["seeds"]
    runs = list(args.runs or DEFAULT_RUNS)
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise SystemExit(f"unknown runs {unknown}; known: {list(RUNS)}")
    if "bf16" not in runs:
        runs.insert(0, "bf16")
    seeds = [args.seed + i for i in range(n_seeds)]
    pts = [{"run": r, "seed": s, "train": cfg} for s in seeds for r in runs]
    points = executor.map(train, pts, desc="training runs")
    import torch

    return {"torch_version": torch.__version__, "model": MODEL, "train": cfg, "runs": runs, "recipes": {r: RUNS[r][0] for r in runs},
            "seeds": seeds, "corpus": {"file": CORPUS.name, "sha256": CORPUS_SHA256},
            "outlier_stress": {"channels": OUTLIER_CHANNELS, "factor": 2 ** OUTLIER_LOG2},
            "points": points, "summary": summarize(points, runs, seeds)}


def curves(result):
    """(evaluation steps, {(run, seed): validation losses}) of a result."""
    curve = {(p["run"], p["seed"]): np.array([v for _, v in p["curve"]]) for p in result["points"]}
    return [st for st, _ in result["points"][0]["curve"]], curve


def gap_to_bf16(result, curve, run):
    """A run's validation loss against BF16 with the same seed, in percent: (seeds, steps)."""
    return np.array([100 * (curve[(run, sd)] / curve[("bf16", sd)] - 1) for sd in result["seeds"]])


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        from ._common import plot_band, save_figure
    except ImportError:
        from _common import plot_band, save_figure

    seeds, runs = result["seeds"], result["runs"]
    fig, axes = plt.subplots(1, 3, figsize=(21, 5.6))
    steps, curve = curves(result)
    ax = axes[0]
    for run in runs:
        losses = np.array([curve[(run, s)] for s in seeds])
        plot_band(ax, steps, losses.mean(0), losses.min(0), losses.max(0), run)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (nats per byte)")
    ax.set_title(f"byte-level transformer, {MODEL['n_layers']} blocks x {MODEL['d_model']}, "
                 f"{result['train']['batch']} x {MODEL['context']} tokens per step")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    for run in runs:
        gap = gap_to_bf16(result, curve, run)
        if run == "bf16":
            ax.plot([], [])  # keep each run's colour
            continue
        plot_band(ax, steps, gap.mean(0), gap.min(0), gap.max(0), run)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss vs BF16, same seed (%)")
    ax.set_title("gap to BF16 during training (mean over seeds, band: min to max)")
    ax.grid(True, alpha=0.3)
    ax = axes[2]
    base = np.array([p["final_loss"] for s in seeds for p in result["points"] if p["run"] == "bf16"
                     and p["seed"] == s])
    spread = 100 * (base - base.mean()) / base.mean()
    ax.axhspan(spread.min(), spread.max(), color="grey", alpha=0.25, label="BF16 seed-to-seed spread")
    names = [r for r in runs if r != "bf16"]
    for i, run in enumerate(names):
        rel = 100 * np.array(result["summary"][run]["rel_error_per_seed"])
        ax.plot(np.full(len(rel), i), rel, "o", color=f"C{runs.index(run)}")
        ax.plot([i - 0.25, i + 0.25], [rel.mean()] * 2, "-", color=f"C{runs.index(run)}")
    ax.axhline(0.25, color="k", ls=":", lw=1, label="DeepSeek-V3's 0.25%")
    ax.axhline(-0.25, color="k", ls=":", lw=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylabel("relative loss error vs BF16, same seed (%)")
    ax.set_title(f"final validation loss, {len(seeds)} seeds (points), mean (bar)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path, legend_from=axes[0], legend_title="run; lines: mean over seeds, bands: min to max")


def main(argv=None):
    ap = script_parser(__doc__, quick=f"{QUICK['steps']} steps, {QUICK['seeds']} seeds, small batches (tests)",
                       sweeps=True)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per run (default 3)")
    ap.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    ap.add_argument("--runs", nargs="+", default=None,
                    help=f"runs to train (bf16 always; default all but mxfp8-b200): {list(RUNS)}")
    ap.add_argument("--workers", type=int, default=None, help="local processes (default: the cores)")
    ap.add_argument("--replot", action="store_true", help="redraw fp8_training.png from the JSON in --out, no training")
    args = ap.parse_args(argv)
    if args.replot:
        import json

        result = json.loads((Path(args.out) / "fp8_training.json").read_text())
        plot(result, Path(args.out) / "fp8_training.png")
        report(result)
        return result
    if args.seeds < 1 or args.steps < 1:
        raise SystemExit("--seeds and --steps must be positive")
    with Executor(args.scheduler, args.workers) as ex:
        result = compute(args, ex)
    out = out_dir(args.out)
    write_json(out / "fp8_training.json", result, seed=args.seed)
    plot(result, out / "fp8_training.png")
    report(result)
    return result


def report(result):
    """Print the final table and the largest gap to BF16 during training."""
    seeds = result["seeds"]
    print(f"final validation loss and relative loss error against BF16 (same seed), {len(seeds)} seeds, "
          f"{result['train']['steps']} steps")
    s = result["summary"]
    print(f"  {'bf16':26s} loss {s['bf16']['final_loss_mean']:.4f}   seed-to-seed spread "
          f"{100 * s['bf16']['seed_spread']:.3f}%")
    for run in result["runs"]:
        if run == "bf16":
            continue
        row = s[run]
        ci = row.get("rel_error_ci95")
        ci_text = f"  95% CI [{100 * ci[0]:+.3f}%, {100 * ci[1]:+.3f}%]" if ci else ""
        print(f"  {run:26s} loss {row['final_loss_mean']:.4f}   rel. error {100 * row['rel_error_mean']:+.3f}%"
              + ci_text)
    steps, curve = curves(result)
    print("largest gap to BF16 during training (same seed), and the final gap per seed")
    for run in result["runs"]:
        if run == "bf16":
            continue
        gap = gap_to_bf16(result, curve, run)
        i, j = np.unravel_index(np.nanargmax(np.abs(gap)), gap.shape)
        print(f"  {run:26s} {gap[i, j]:+.3f}% at step {steps[j]} (seed {seeds[i]}); final "
              + ", ".join(f"{v:+.3f}%" for v in gap[:, -1]))


if __name__ == "__main__":
    main()
