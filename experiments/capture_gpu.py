"""Capture ``torch._scaled_mm`` outputs on a real GPU, as ground truth for fp8sim's tests.

    python experiments/capture_gpu.py [--out tests/data/h100_scaled_mm.npz] [--device cuda] [--seeds 8]

Needs torch and NumPy only (not fp8sim, so it runs on any machine with a
GPU and a PyTorch build).  What it runs, for every input set below:

* ``torch._scaled_mm`` with E4M3 x E4M3 and E5M2 x E4M3 operands, scales
  1.0, ``use_fast_accum`` True and False, FP32, BF16 and FP16 output;
* ``torch.matmul`` in BF16 and FP16 (output in the input format, reduced-
  precision reductions off) and TF32 (FP32 in and out, ``allow_tf32``);
* the stored (M, K) @ (K, N) product inside a large GEMM: A's rows and B's
  columns are tiled ``reps`` times, so the GEMM is at least 2048 x 2048
  and cuBLAS has no reason to split K.  Every tile of the output must be
  bit-identical (``tiles_equal`` in the metadata); the stored output is the
  first tile.  The same product at its own small shape is run too, and
  the number of its outputs that differ from the tiled run is recorded
  (``small_shape_differs``; its outputs are stored when they differ);
* the CUDA kernels each call launched (from the profiler) and the GPU,
  driver, CUDA, cuBLAS(Lt), torch and NumPy versions.

Input sets (seeded, NumPy ``default_rng``; values rounded to the format by
torch's nearest-even cast, stored as codes):

* ``k32``, ``k128``, ``k4096``: rows of A and columns of B cycle through
  four distributions, so every pairing occurs: ``deepseek`` (normal, mean
  0.65, std 1), ``wide`` (normal times 2^U{-10..10} per element),
  ``codes`` (every finite code equally likely: subnormals, signed zeros,
  the largest values), ``cancel`` (the second half of K repeats the first
  with A's sign flipped, so paired rows and columns cancel up to a few
  perturbed elements);
* ``specials``: K = 32 with NaN (and Inf in E5M2) planted in a few rows
  and columns;
* ``zeros``: K = 32, rows and columns of -0 only, of +0 only, of exactly
  cancelling halves, and of -0 with one negative subnormal;
* ``dense_k128``, ``dense_k1024``: for ``torch.matmul``, rows and columns
  cycling through ``deepseek``, ``wide`` (2^U{-12..12}; FP16 inputs reach
  Inf, FP16 outputs overflow) and ``cancel``, rounded to BF16 / FP16 by
  torch's cast and to TF32 by nearest-even on the FP32 bits;
* ``stats``: the accumulation-error setting of
  ``experiments/accumulation_error.py`` (normal, mean 0.65, std 1, K =
  4096, M = N = 128) for ``--seeds`` seeds, E4M3 x E4M3, FP32 output.  Its
  inputs are not stored: ``stats_inputs(seed)`` regenerates them (SHA-256
  of the codes recorded) and the outputs are.

The output ``.npz`` holds ``meta`` (a JSON string), ``{set}/a_e4m3``,
``{set}/a_e5m2`` (M, K) and ``{set}/bt_e4m3`` (N, K) codes (B transposed,
as ``_scaled_mm`` takes it column-major), and
``{set}/{pair}/{fast|split}/{f32|bf16|f16}`` output bit patterns (uint32 /
uint16), ``pair`` one of ``e4m3_e4m3``, ``e5m2_e4m3``; for the dense sets
``{set}/a_{kind}``, ``{set}/bt_{kind}`` and ``{set}/{kind}``, ``kind`` one
of ``bf16``, ``fp16`` (codes) and ``tf32`` (FP32 bits).  Check it with
``python experiments/gpu_capture.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import platform
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np

SETS = {"k32": (128, 32, 128), "k128": (128, 128, 128), "k4096": (64, 4096, 64), "specials": (32, 32, 32),
        "zeros": (32, 32, 32)}
DENSE_SETS = {"dense_k128": (128, 128, 128), "dense_k1024": (64, 1024, 64), "overflow": (32, 32, 32)}
DENSE = ("bf16", "fp16", "tf32", "bf16f32")
#: the kinds each dense set runs (FP16 cannot hold the overflow set's values)
DENSE_KINDS = {"dense_k128": DENSE, "dense_k1024": DENSE, "overflow": ("tf32", "bf16f32")}
#: the overflow set's values: products and sums beyond FP32's range, exactly cancelling huge products
OVERFLOW_VALUES = (1.5 * 2.0**63, 2.0**64, 2.0**63, 1.0, 0.75, 0.0)
DENSE_DISTS = ("deepseek", "wide", "cancel")
OUTS = ("f32", "bf16", "f16")
STATS_SHAPE = (128, 4096, 128)
DISTS = ("deepseek", "wide", "codes", "cancel")
PAIRS = ("e4m3_e4m3", "e5m2_e4m3")
MIN_GEMM = 2048
MAX = {"e4m3": 448.0, "e5m2": 57344.0}


def _finite_codes(fmt):
    c = np.arange(256, dtype=np.uint8)
    if fmt == "e4m3":
        return c[(c & 0x7F) != 0x7F]
    return c[(c & 0x7C) != 0x7C]


def _draw(torch, dist, fmt, shape, rng, axis):
    """Codes of one distribution, ``shape`` with K along ``axis``."""
    dtype = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
    if dist == "codes":
        return rng.choice(_finite_codes(fmt), size=shape)
    if dist == "deepseek":
        x = rng.standard_normal(shape) + 0.65
    elif dist == "wide":
        x = rng.standard_normal(shape) * np.exp2(rng.integers(-10, 11, size=shape))
    elif dist == "cancel":
        x = rng.standard_normal(shape)
        half = shape[axis] // 2
        first = np.take(x, range(half), axis=axis)
        x = np.concatenate([first, first], axis=axis)
        # a few perturbed elements per row so that not every pair cancels exactly
        flip = rng.random(shape) < 2.0 / shape[axis]
        x = np.where(flip, rng.standard_normal(shape), x)
    else:
        raise ValueError(dist)
    x = np.clip(x, -MAX[fmt], MAX[fmt]).astype(np.float32)
    return torch.from_numpy(x).to(dtype).view(torch.uint8).numpy()


def set_inputs(torch, name, M, K, N, seed):
    """A (E4M3 and E5M2 codes of the same values' distributions) and B transposed, (N, K)."""
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    out = {}
    for key, fmt, rows in (("a_e4m3", "e4m3", M), ("a_e5m2", "e5m2", M), ("bt_e4m3", "e4m3", N)):
        codes = np.empty((rows, K), np.uint8)
        for i in range(rows):
            codes[i] = _draw(torch, DISTS[i % len(DISTS)], fmt, (1, K), rng, axis=1)[0]
        if key.startswith("a"):
            # A's cancelling rows flip the sign of their second half
            for i in range(DISTS.index("cancel"), rows, len(DISTS)):
                codes[i, K // 2:] ^= 0x80
        out[key] = codes
    if name == "specials":
        nan = {"e4m3": 0x7F, "e5m2": 0x7E}
        for key, fmt in (("a_e4m3", "e4m3"), ("a_e5m2", "e5m2"), ("bt_e4m3", "e4m3")):
            codes = out[key]
            for i in range(0, codes.shape[0], 8):        # a NaN in every 8th row
                codes[i, rng.integers(K)] = nan[fmt] | (0x80 * rng.integers(2))
            if fmt == "e5m2":                            # +Inf and -Inf in others
                for i in range(1, codes.shape[0], 8):
                    codes[i, rng.integers(K)] = 0x7C
                for i in range(2, codes.shape[0], 8):
                    codes[i, rng.integers(K)] = 0xFC
                for i in range(3, codes.shape[0], 8):   # +Inf and -Inf in one row: NaN
                    j, k = rng.choice(K, 2, replace=False)
                    codes[i, j], codes[i, k] = 0x7C, 0xFC
    if name == "zeros":
        # rows / columns of -0 only, +0 only, exactly cancelling halves, and one negative subnormal
        for key in ("a_e4m3", "a_e5m2", "bt_e4m3"):
            codes = out[key]
            codes[0::4] = 0x80
            codes[1::4] = 0x00
            half = codes[2::4, :K // 2]
            codes[2::4] = np.concatenate([half, half ^ (0x80 if key.startswith("a") else 0)], axis=1)
            codes[3::4] = 0x80
            codes[3::4, 0] = 0x81
    return out


def dense_inputs(torch, name, M, K, N, seed):
    """BF16 / FP16 codes (uint16) and TF32 values as FP32 bits (uint32): A (M, K) and B^T (N, K),
    rows and columns cycling through ``DENSE_DISTS`` (the ``overflow`` set: ``OVERFLOW_VALUES``)."""
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    out = {}
    for key, rows in (("a", M), ("bt", N)):
        x = np.empty((rows, K), np.float32)
        for i in range(rows):
            d = DENSE_DISTS[i % len(DENSE_DISTS)]
            if name == "overflow":
                # a few huge elements per row (both signs), the rest ordinary
                v = rng.choice(OVERFLOW_VALUES[3:], size=K) * rng.choice([-1.0, 1.0], size=K)
                huge = rng.random(K) < (i % 4 + 1) / 16
                x[i] = np.where(huge, rng.choice(OVERFLOW_VALUES[:3], size=K) * rng.choice([-1.0, 1.0], size=K), v)
            elif d == "deepseek":
                x[i] = rng.standard_normal(K) + 0.65
            elif d == "wide":
                x[i] = rng.standard_normal(K) * np.exp2(rng.integers(-12, 13, size=K))
            else:
                v = rng.standard_normal(K // 2)
                x[i] = np.concatenate([v, -v if key == "a" else v])
                x[i, rng.integers(K)] = rng.standard_normal()
        t = torch.from_numpy(x)
        out[f"{key}_bf16"] = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        out[f"{key}_fp16"] = t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
        bits = x.view(np.uint32)
        out[f"{key}_tf32"] = (bits + np.uint32(0xFFF) + ((bits >> 13) & 1)) & np.uint32(0xFFFFE000)
    return out


def stats_inputs(seed, quantize):
    """The accumulation-error setting (normal, mean 0.65, std 1) for one seed: A (M, K), B^T (N, K)
    as E4M3 codes; ``quantize(x)`` rounds float32 values to E4M3 codes (nearest-even)."""
    M, K, N = STATS_SHAPE
    rng = np.random.default_rng([seed, 4096])
    a = (rng.standard_normal((M, K)) + 0.65).astype(np.float32)
    bt = (rng.standard_normal((N, K)) + 0.65).astype(np.float32)
    return quantize(a), quantize(bt)


def sha256(*arrays):
    h = hashlib.sha256()
    for x in arrays:
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _bits(t):
    import torch

    if t.dtype == torch.float32:
        return t.contiguous().view(torch.int32).cpu().numpy().view(np.uint32)
    if t.dtype == torch.float16:
        return t.contiguous().view(torch.int16).cpu().numpy().view(np.uint16)
    return t.contiguous().view(torch.int16).cpu().numpy().view(np.uint16)


def _versions(torch):
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "capability": list(torch.cuda.get_device_capability()) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = q.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["nvidia_smi"] = None
    # cuBLASLt as loaded by this process (after a GEMM has run)
    for lib, fn in (("libcublasLt", "cublasLtGetVersion"), ("libcublas.", "cublasGetCudartVersion")):
        paths = sorted({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                        if lib in line and line.split()[-1].startswith("/")}) if Path("/proc/self/maps").exists() else []
        key = "cublasLt" if lib == "libcublasLt" else "cublas_cudart"
        info[key + "_path"] = paths[0] if paths else None
        if paths:
            try:
                f = getattr(ctypes.CDLL(paths[0]), fn)
                f.restype = ctypes.c_size_t
                info[key + "_version"] = int(f())
            except (OSError, AttributeError):
                info[key + "_version"] = None
    return info


class Runner:
    def __init__(self, torch, device):
        self.torch, self.device = torch, device
        self.one = torch.tensor(1.0, device=device)
        self.kernels = {}

    def gemm(self, a_codes, bt_codes, a_fmt, fast, out, reps=1, label=None):
        torch = self.torch
        dt = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
        a = torch.from_numpy(a_codes).view(dt[a_fmt]).to(self.device)
        bt = torch.from_numpy(bt_codes).view(dt["e4m3"]).to(self.device)
        if reps > 1:
            a, bt = a.repeat(reps, 1), bt.repeat(reps, 1)
        out_dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[out]
        with self._profile() as prof:
            y = torch._scaled_mm(a, bt.t(), scale_a=self.one, scale_b=self.one, out_dtype=out_dtype,
                                 use_fast_accum=fast)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
        self._record(label, prof)
        return y

    def dense(self, a_bits, bt_bits, kind, reps=1, label=None):
        """``torch.matmul`` in BF16 / FP16 (output in the same format) or TF32 (FP32 in and out), or
        ``torch.mm(..., out_dtype=torch.float32)`` with BF16 inputs (``bf16f32``)."""
        torch = self.torch
        if kind == "tf32":
            a, bt = (torch.from_numpy(x.view(np.int32)).view(torch.float32) for x in (a_bits, bt_bits))
        else:
            dt = {"bf16": torch.bfloat16, "bf16f32": torch.bfloat16, "fp16": torch.float16}[kind]
            a, bt = (torch.from_numpy(x.view(np.int16)).view(dt) for x in (a_bits, bt_bits))
        a, bt = a.to(self.device), bt.to(self.device)
        if reps > 1:
            a, bt = a.repeat(reps, 1), bt.repeat(reps, 1)
        torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
        try:
            with self._profile() as prof:
                if kind == "bf16f32":
                    y = torch.mm(a, bt.t(), out_dtype=torch.float32)
                else:
                    y = torch.matmul(a, bt.t())
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = False
        self._record(label, prof)
        return y

    def _profile(self):
        """The CUDA profiler (kernel names); nothing on the CPU, where no kernel names are recorded."""
        import contextlib

        if not self.device.startswith("cuda"):
            return contextlib.nullcontext()
        from torch.profiler import ProfilerActivity, profile

        return profile(activities=[ProfilerActivity.CUDA])

    def _record(self, label, prof):
        if label is not None and prof is not None:
            names = sorted({e.name for e in prof.events() if str(e.device_type).endswith("CUDA")})
            self.kernels[label] = names


def capture(out, device, seeds, seed=0, min_gemm=MIN_GEMM):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    run = Runner(torch, device)
    arrays, meta = {}, {"sets": {}, "seed": seed, "min_gemm": min_gemm, "dists": list(DISTS)}
    def tiled(name, M, N, key, gemm, info):
        """One product in a GEMM tiled to at least min_gemm, and at its own shape: first tile stored."""
        reps = info["reps"]
        try:
            big, small = gemm(reps, label=key), gemm(1, label=key + "@small")
        except (RuntimeError, TypeError) as e:  # a pair or call (mm(out_dtype=)) this GPU or build lacks
            info["error"][key] = str(e).splitlines()[0]
            return
        tiles = _bits(big).reshape(reps, M, reps, N).transpose(0, 2, 1, 3)
        first = tiles[0, 0]
        info["tiles_equal"][key] = bool((tiles == first).all())
        sb = _bits(small)
        info["small_shape_differs"][key] = int((sb != first).sum())
        arrays[key] = first
        if (sb != first).any():
            arrays[key + "@small"] = sb

    def one_set(name, M, K, N, x, cases):
        for key, v in x.items():
            arrays[f"{name}/{key}"] = v
        info = {"M": M, "K": K, "N": N, "reps": -(-min_gemm // min(M, N)), "tiles_equal": {},
                "small_shape_differs": {}, "error": {}}
        for key, gemm in cases:
            tiled(name, M, N, key, gemm, info)
        meta["sets"][name] = info
        print(name, json.dumps({k: v for k, v in info.items() if k != "error"}), info["error"] or "", flush=True)

    for name, (M, K, N) in SETS.items():
        x = set_inputs(torch, name, M, K, N, seed)
        cases = [(f"{name}/{pair}/{'fast' if fast else 'split'}/{o}",
                  partial(run.gemm, x[f"a_{pair.split('_')[0]}"], x["bt_e4m3"], pair.split("_")[0], fast, o))
                 for pair in PAIRS for fast in (True, False) for o in OUTS]
        one_set(name, M, K, N, x, cases)
    for name, (M, K, N) in DENSE_SETS.items():
        x = dense_inputs(torch, name, M, K, N, seed)
        src = {"bf16f32": "bf16"}
        cases = [(f"{name}/{kind}", partial(run.dense, x[f"a_{src.get(kind, kind)}"], x[f"bt_{src.get(kind, kind)}"],
                                            kind)) for kind in DENSE_KINDS[name]]
        one_set(name, M, K, N, x, cases)
    # the accumulation-error statistic: outputs only, inputs regenerated from the seed
    M, K, N = STATS_SHAPE

    def q(x):
        return torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()

    meta["stats"] = {"M": M, "K": K, "N": N, "seeds": list(range(seeds)), "sha256": {}, "tiles_equal": {}}
    reps = -(-min_gemm // min(M, N))
    for s in range(seeds):
        a, bt = stats_inputs(s, q)
        meta["stats"]["sha256"][s] = sha256(a, bt)
        for fast in (True, False):
            key = f"stats/{s}/{'fast' if fast else 'split'}/f32"
            big = _bits(run.gemm(a, bt, "e4m3", fast, "f32", reps, label=key if s == 0 else None))
            tiles = big.reshape(reps, M, reps, N).transpose(0, 2, 1, 3)
            meta["stats"]["tiles_equal"][key] = bool((tiles == tiles[0, 0]).all())
            arrays[key] = tiles[0, 0]
    meta["kernels"] = run.kernels
    meta["versions"] = _versions(torch)
    meta["device"] = device
    arrays["meta"] = np.array(json.dumps(meta))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(json.dumps(meta["versions"], indent=1))
    print("wrote", out, Path(out).stat().st_size, "bytes")


def load(path):
    """The captured arrays and the metadata dict."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/h100_scaled_mm.npz")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-gemm", type=int, default=MIN_GEMM,
                    help="tile the stored products up to at least this M and N (default %(default)s)")
    args = ap.parse_args(argv)
    capture(args.out, args.device, args.seeds, args.seed, args.min_gemm)


if __name__ == "__main__":
    main()
