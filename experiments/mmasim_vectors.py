"""Reference vectors from MMA-Sim for every instruction fp8sim and MMA-Sim both model.

    pip install mmasim        # needs torch (the CPU build is enough)
    python experiments/mmasim_vectors.py --out tests/data

MMA-Sim (J. Chen et al., arXiv 2511.10909; PyPI ``mmasim``) is a bit-level
model of each matrix instruction.  For each instruction below, random rows
of several kinds (normal values, a wide exponent spread, cancellation,
subnormals and signed zeros, Inf and NaN; C zero, normal, FP32-subnormal or
large) go through MMA-Sim's ``dpa`` for one instruction's K and for a chain
of four, and the inputs (as codes) and MMA-Sim's outputs (as bit patterns)
are written to ``mmasim_vectors.npz`` with the MMA-Sim version, so the test
suite compares fp8sim against them without mmasim or torch installed
(``tests/test_mmasim.py``).

    python experiments/mmasim_vectors.py --zero-signs --out tests/data

writes ``mmasim_zero_signs.npz`` instead: every instruction above on a
grid of signed zeros (every pair of the first two inputs of A and of B
from +0, -0, +-1 and +- the format's smallest subnormal, the rest -0 times
1, C = +0 and -0), where the sign of a zero result shows: how a zero or
underflowing result is signed, and how CDNA2 reads -0 inputs and C
(``FTZUnit.negative_zero``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import fp8sim

try:
    from ._common import out_dir
except ImportError:  # run as a script
    from _common import out_dir

#: (key, MMA-Sim class, arch, shape_and_type, fp8sim gpu, instruction, a format, b format, output)
CONFIGS = [
    ("V100/mma.sync/f16", "MMA", "Volta", "m8n8k4.f32.f16.f16.f32", "V100", "mma.sync", "float16", "float16", "float32"),
    ("T4/mma.sync/f16", "MMA", "Turing", "m16n8k8.f32.f16.f16.f32", "T4", "mma.sync", "float16", "float16", "float32"),
    ("A100/mma.sync/f16", "MMA", "Ampere", "m16n8k16.f32.f16.f16.f32", "A100", "mma.sync", "float16", "float16",
     "float32"),
    ("A100/mma.sync/bf16", "MMA", "Ampere", "m16n8k16.f32.bf16.bf16.f32", "A100", "mma.sync", "bfloat16", "bfloat16",
     "float32"),
    ("A100/mma.sync/tf32", "MMA", "Ampere", "m16n8k8.f32.tf32.tf32.f32", "A100", "mma.sync", "tf32", "tf32", "float32"),
    ("A100/mma.sync/f16-f16out", "MMA", "Ampere", "m16n8k16.f16.f16.f16.f16", "A100", "mma.sync", "float16",
     "float16", "float16"),
    ("Ada/mma.sync/e4m3", "MMA", "Ada Lovelace", "m16n8k32.f32.e4m3.e4m3.f32", "Ada", "mma.sync", "float8_e4m3fn",
     "float8_e4m3fn", "float32"),
    ("Ada/mma.sync/e5m2-e4m3", "MMA", "Ada Lovelace", "m16n8k32.f32.e5m2.e4m3.f32", "Ada", "mma.sync", "float8_e5m2",
     "float8_e4m3fn", "float32"),
    ("H100/mma.sync/f16", "MMA", "Hopper", "m16n8k16.f32.f16.f16.f32", "H100", "mma.sync", "float16", "float16",
     "float32"),
    ("H100/mma.sync/bf16", "MMA", "Hopper", "m16n8k16.f32.bf16.bf16.f32", "H100", "mma.sync", "bfloat16", "bfloat16",
     "float32"),
    ("H100/wgmma/e4m3", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e4m3", "H100", "wgmma", "float8_e4m3fn",
     "float8_e4m3fn", "float32"),
    ("H100/wgmma/e5m2", "WGMMA", "Hopper", "m64n8k32.f32.e5m2.e5m2", "H100", "wgmma", "float8_e5m2", "float8_e5m2",
     "float32"),
    ("H100/wgmma/e4m3-e5m2", "WGMMA", "Hopper", "m64n8k32.f32.e4m3.e5m2", "H100", "wgmma", "float8_e4m3fn",
     "float8_e5m2", "float32"),
    ("H100/wgmma/f16", "WGMMA", "Hopper", "m64n8k16.f32.f16.f16", "H100", "wgmma", "float16", "float16", "float32"),
    ("H100/wgmma/bf16", "WGMMA", "Hopper", "m64n8k16.f32.bf16.bf16", "H100", "wgmma", "bfloat16", "bfloat16",
     "float32"),
    ("H100/wgmma/tf32", "WGMMA", "Hopper", "m64n8k8.f32.tf32.tf32", "H100", "wgmma", "tf32", "tf32", "float32"),
    ("B200/mma.sync/f16", "MMA", "Blackwell", "m16n8k16.f32.f16.f16.f32", "B200", "mma.sync", "float16", "float16",
     "float32"),
    ("B200/tcgen05/e4m3", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e4m3.e4m3", "B200", "tcgen05",
     "float8_e4m3fn", "float8_e4m3fn", "float32"),
    ("B200/tcgen05/e5m2", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e5m2.e5m2", "B200", "tcgen05",
     "float8_e5m2", "float8_e5m2", "float32"),
    ("B200/tcgen05/e2m1-e4m3", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e2m1.e4m3", "B200", "tcgen05",
     "float4_e2m1fn", "float8_e4m3fn", "float32"),
    ("B200/tcgen05/e3m2-e2m3", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e3m2.e2m3", "B200", "tcgen05",
     "float6_e3m2fn", "float6_e2m3fn", "float32"),
    ("B200/tcgen05/f16", "TCGen05MMA", "Blackwell", "m64n8k16.kind::f16.f32.f16.f16", "B200", "tcgen05", "float16",
     "float16", "float32"),
    ("B200/tcgen05/bf16", "TCGen05MMA", "Blackwell", "m64n8k16.kind::f16.f32.bf16.bf16", "B200", "tcgen05",
     "bfloat16", "bfloat16", "float32"),
    ("B200/tcgen05/tf32", "TCGen05MMA", "Blackwell", "m64n8k8.kind::tf32.f32.tf32.tf32", "B200", "tcgen05", "tf32",
     "tf32", "float32"),
    ("Ada/mma.sync/e5m2", "MMA", "Ada Lovelace", "m16n8k32.f32.e5m2.e5m2.f32", "Ada", "mma.sync", "float8_e5m2",
     "float8_e5m2", "float32"),
    ("Ada/mma.sync/f16", "MMA", "Ada Lovelace", "m16n8k16.f32.f16.f16.f32", "Ada", "mma.sync", "float16", "float16",
     "float32"),
    ("Ada/mma.sync/bf16", "MMA", "Ada Lovelace", "m16n8k16.f32.bf16.bf16.f32", "Ada", "mma.sync", "bfloat16",
     "bfloat16", "float32"),
    ("Ada/mma.sync/tf32", "MMA", "Ada Lovelace", "m16n8k8.f32.tf32.tf32.f32", "Ada", "mma.sync", "tf32", "tf32",
     "float32"),
    ("H100/mma.sync/tf32", "MMA", "Hopper", "m16n8k8.f32.tf32.tf32.f32", "H100", "mma.sync", "tf32", "tf32", "float32"),
    ("B200/mma.sync/bf16", "MMA", "Blackwell", "m16n8k16.f32.bf16.bf16.f32", "B200", "mma.sync", "bfloat16",
     "bfloat16", "float32"),
    ("B200/mma.sync/tf32", "MMA", "Blackwell", "m16n8k8.f32.tf32.tf32.f32", "B200", "mma.sync", "tf32", "tf32",
     "float32"),
    ("B200/tcgen05/e2m1", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e2m1.e2m1", "B200", "tcgen05",
     "float4_e2m1fn", "float4_e2m1fn", "float32"),
    ("B200/tcgen05/e2m3", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e2m3.e2m3", "B200", "tcgen05",
     "float6_e2m3fn", "float6_e2m3fn", "float32"),
    ("B200/tcgen05/e3m2", "TCGen05MMA", "Blackwell", "m64n8k32.kind::f8f6f4.f32.e3m2.e3m2", "B200", "tcgen05",
     "float6_e3m2fn", "float6_e3m2fn", "float32"),
    ("RTX50/mma.sync/e5m2", "MMA", "RTX Blackwell", "m16n8k32.kind::f8f6f4.f32.e5m2.e5m2.f32", "RTX50", "mma.sync",
     "float8_e5m2", "float8_e5m2", "float32"),
    ("RTX50/mma.sync/e2m1", "MMA", "RTX Blackwell", "m16n8k32.kind::f8f6f4.f32.e2m1.e2m1.f32", "RTX50", "mma.sync",
     "float4_e2m1fn", "float4_e2m1fn", "float32"),
    ("RTX50/mma.sync/e2m3", "MMA", "RTX Blackwell", "m16n8k32.kind::f8f6f4.f32.e2m3.e2m3.f32", "RTX50", "mma.sync",
     "float6_e2m3fn", "float6_e2m3fn", "float32"),
    ("RTX50/mma.sync/e3m2", "MMA", "RTX Blackwell", "m16n8k32.kind::f8f6f4.f32.e3m2.e3m2.f32", "RTX50", "mma.sync",
     "float6_e3m2fn", "float6_e3m2fn", "float32"),
    ("RTX50/mma.sync/e4m3", "MMA", "RTX Blackwell", "m16n8k32.kind::f8f6f4.f32.e4m3.e4m3.f32", "RTX50", "mma.sync",
     "float8_e4m3fn", "float8_e4m3fn", "float32"),
    ("RTX50/mma.sync/e5m2-e2m1", "MMA", "RTX Blackwell", "m16n8k32.kind::f8f6f4.f32.e5m2.e2m1.f32", "RTX50",
     "mma.sync", "float8_e5m2", "float4_e2m1fn", "float32"),
]

#: AMD CDNA (MMA-Sim's amd.sim.MFMA): (key, arch, suffix, fp8sim gpu, a format, b format)
AMD_CONFIGS = [
    ("MI300X/mfma/f16", "CDNA3", "f32_16x16x16_f16", "MI300X", "float16", "float16"),
    ("MI300X/mfma/bf16", "CDNA3", "f32_16x16x16_bf16", "MI300X", "bfloat16", "bfloat16"),
    ("MI300X/mfma/fp8", "CDNA3", "f32_16x16x32_fp8_fp8", "MI300X", "float8_e4m3fnuz", "float8_e4m3fnuz"),
    ("MI300X/mfma/bf8-fp8", "CDNA3", "f32_16x16x32_bf8_fp8", "MI300X", "float8_e5m2fnuz", "float8_e4m3fnuz"),
    ("MI300X/mfma/bf8", "CDNA3", "f32_16x16x32_bf8_bf8", "MI300X", "float8_e5m2fnuz", "float8_e5m2fnuz"),
    ("MI300X/mfma/fp8-bf8", "CDNA3", "f32_16x16x32_fp8_bf8", "MI300X", "float8_e4m3fnuz", "float8_e5m2fnuz"),
    ("MI300X/mfma/xf32", "CDNA3", "f32_16x16x8_xf32", "MI300X", "tf32", "tf32"),
    ("MI250X/mfma/f16", "CDNA2", "f32_16x16x16f16", "MI250X", "float16", "float16"),
    ("MI250X/mfma/bf16", "CDNA2", "f32_16x16x8bf16", "MI250X", "bfloat16", "bfloat16"),
    ("MI250X/mfma/bf16_1k", "CDNA2", "f32_16x16x16bf16_1k", "MI250X", "bfloat16", "bfloat16"),
    ("MI100/mfma/f16", "CDNA1", "f32_16x16x16f16", "MI100", "float16", "float16"),
    ("MI100/mfma/bf16", "CDNA1", "f32_16x16x8bf16", "MI100", "bfloat16", "bfloat16"),
]

#: block-scaled kind::mxf8f6f4 (ST-FDPA): (key, MMA-Sim class, arch, shape_and_type, gpu, a format, b format)
_PTX = {"float8_e4m3fn": "e4m3", "float8_e5m2": "e5m2", "float6_e3m2fn": "e3m2", "float6_e2m3fn": "e2m3",
        "float4_e2m1fn": "e2m1"}
BLOCK_SCALED_CONFIGS = [
    (f"B200/tcgen05.block_scale/{_PTX[fa]}-{_PTX[fb]}", "TCGen05MMABlockScale", "Blackwell",
     f"m128n8k32.kind::mxf8f6f4.block32.f32.{_PTX[fa]}.{_PTX[fb]}.ue8m0", "B200", fa, fb)
    for fa in _PTX for fb in _PTX
] + [
    ("RTX50/mma.sync.block_scale/e4m3-e2m3", "MMABlockScale", "RTX Blackwell",
     "m16n8k32.kind::mxf8f6f4.block32.f32.e4m3.e2m3.f32.ue8m0", "RTX50", "float8_e4m3fn", "float6_e2m3fn"),
]

#: kind::mxf4 / mxf4nvf4 (GST-FDPA), E2M1 elements, K = 64 per instruction: (key, class, arch, shape, gpu, block,
#: scale format)
GROUP_SCALED_CONFIGS = [
    ("B200/tcgen05.block_scale/mxf4", "TCGen05MMABlockScale", "Blackwell",
     "m128n8k64.kind::mxf4.block32.f32.e2m1.e2m1.ue8m0", "B200", 32, "float8_e8m0fnu"),
    ("B200/tcgen05.block_scale/mxf4nvf4-ue8m0", "TCGen05MMABlockScale", "Blackwell",
     "m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue8m0", "B200", 16, "float8_e8m0fnu"),
    ("B200/tcgen05.block_scale/mxf4nvf4-ue4m3", "TCGen05MMABlockScale", "Blackwell",
     "m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3", "B200", 16, "float8_e4m3fn"),
    ("RTX50/mma.sync.block_scale/mxf4", "MMABlockScale", "RTX Blackwell",
     "m16n8k64.kind::mxf4.block32.f32.e2m1.e2m1.f32.ue8m0", "RTX50", 32, "float8_e8m0fnu"),
    ("RTX50/mma.sync.block_scale/mxf4nvf4-ue8m0", "MMABlockScale", "RTX Blackwell",
     "m16n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.f32.ue8m0", "RTX50", 16, "float8_e8m0fnu"),
    ("RTX50/mma.sync.block_scale/mxf4nvf4-ue4m3", "MMABlockScale", "RTX Blackwell",
     "m16n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.f32.ue4m3", "RTX50", 16, "float8_e4m3fn"),
]

KINDS = ("normal", "wide", "cancel", "subnormal", "special")
#: sets that also get rows of kind "choices" (where fp8sim's and MMA-Sim's undecided choices differ)
CHOICE_SETS = ("H100/wgmma/bf16", "H100/wgmma/e4m3", "B200/tcgen05/tf32")


def operands(rng, kind, rows, K, fa, fb):
    """Values of fa and fb (rows, K) of one kind."""
    def draw(fmt, scale_spread):
        x = rng.standard_normal((rows, K)) * np.exp2(rng.integers(-scale_spread, scale_spread + 1, (rows, K)))
        return fp8sim.quantize(x, fmt, overflow="saturate")

    spread = {"normal": 0, "wide": 12, "cancel": 2, "subnormal": 2, "special": 2}[kind]
    a, b = draw(fa, spread), draw(fb, spread)
    if kind == "cancel":  # the second half of the products undoes the first
        h = K // 2
        a[:, h:2 * h] = -a[:, :h]
        b[:, h:2 * h] = b[:, :h]
    if kind in ("subnormal", "special"):
        for x, f in ((a, fa), (b, fb)):
            m = rng.random(x.shape) < 0.3
            x[m] = rng.integers(-2**f.mantissa_bits + 1, 2**f.mantissa_bits, m.sum()) * f.smallest_subnormal
            z = rng.random(x.shape) < 0.1
            x[z] = np.where(rng.random(z.sum()) < 0.5, 0.0, -0.0)
    if kind == "special":
        for x, f in ((a, fa), (b, fb)):
            if f.has_inf:
                m = rng.random(x.shape) < 0.02
                x[m] = rng.choice([np.inf, -np.inf], m.sum())
            if f.has_nan:
                m = rng.random(x.shape) < 0.01
                x[m] = np.nan
    return a, b


def addends(rng, rows, out_fmt):
    c = fp8sim.quantize(rng.standard_normal(rows) * 4.0 ** rng.integers(-3, 4, rows), "float32")
    kind = rng.integers(0, 5, rows)
    c[kind == 0] = 0.0
    c[kind == 1] = rng.integers(-2**20, 2**20, (kind == 1).sum()) * 2.0**-149   # FP32 subnormal
    c[kind == 2] = -0.0
    return fp8sim.quantize(c, out_fmt, overflow="saturate")


def to_torch(torch, x, fmt):
    """MMA-Sim's operand tensors: FP6/FP4 codes in PTX's 8-bit containers (FP6 in bits 5:0, FP4 in bits
    5:2), tf32 as float32, the rest in their dtype."""
    fmt = fp8sim.get_format(fmt)
    if fmt.name.startswith(("float6", "float4")):
        codes = fp8sim.encode(x, fmt).astype(np.uint8)
        return torch.from_numpy(codes << 2 if fmt.bits == 4 else codes)
    if fmt.name == "tf32":
        return torch.from_numpy(x.astype(np.float32))
    return torch.from_numpy(x.astype(np.float32)).to(getattr(torch, fmt.name))


def _store(arrays, configs, name, a, b, c, d, config, sa=None, sb=None):
    """One set into the file: inputs (and scales) as codes, MMA-Sim's output ``d`` (a torch tensor) as
    bit patterns of the output format, and the set's config."""
    fa, fb, out = config["a_format"], config["b_format"], config["out_format"]
    arrays[f"{name}/a"] = fp8sim.encode(a, fa)
    arrays[f"{name}/b"] = fp8sim.encode(b, fb)
    arrays[f"{name}/c"] = fp8sim.encode(c, out)
    if sa is not None:
        sfmt = config.get("scale_format", "float8_e8m0fnu")
        arrays[f"{name}/sa"] = fp8sim.encode(sa, sfmt)
        arrays[f"{name}/sb"] = fp8sim.encode(sb, sfmt)
    d = d.numpy().astype(np.float32 if out == "float32" else np.float16)
    arrays[f"{name}/d"] = d.view(np.uint32 if out == "float32" else np.uint16)
    configs[name] = config


def unit_for(cfg):
    """The fp8sim unit a set of these vectors checks, from its config."""
    from fp8sim.hardware import block_scaled_unit, group_scaled_unit, tensor_core

    fa, fb = cfg["a_format"], cfg["b_format"]
    if cfg["instruction"] == "block_scale":
        return block_scaled_unit(cfg["gpu"], fa, fb)
    if cfg["instruction"] == "group_scale":
        kind = "mxf4" if "kind::mxf4." in cfg["mmasim"] else "mxf4nvf4"
        return group_scaled_unit(cfg["gpu"], kind, cfg["block"], cfg["scale_format"])
    instr = cfg["instruction"]
    if "'f32_16x16x8bf16'" in cfg["mmasim"] and cfg["gpu"] == "MI250X":
        instr = "mfma.legacy"  # CDNA2's bf16 instruction without _1k: groups of 2
    return tensor_core(cfg["gpu"], fa, b_format=None if fb == fa else fb, out_format=cfg["out_format"],
                       instruction=instr)


def run_set(data, name, cfg, unit=None):
    """(fp8sim's outputs, MMA-Sim's outputs as values, MMA-Sim's bit patterns) for one set, through
    ``unit`` (default :func:`unit_for`)."""
    from fp8sim.blockscale import block_scaled_chain, group_scaled_chain
    from fp8sim.gemm import dot_rows

    unit = unit_for(cfg) if unit is None else unit
    fa, fb, out = cfg["a_format"], cfg["b_format"], cfg["out_format"]
    a, b = fp8sim.decode(data[f"{name}/a"], fa), fp8sim.decode(data[f"{name}/b"], fb)
    c = fp8sim.decode(data[f"{name}/c"], out)
    with np.errstate(invalid="ignore", over="ignore"):
        if cfg["instruction"] in ("block_scale", "group_scale"):
            sfmt = cfg.get("scale_format", "float8_e8m0fnu")
            sa, sb = fp8sim.decode(data[f"{name}/sa"], sfmt), fp8sim.decode(data[f"{name}/sb"], sfmt)
            chain = block_scaled_chain if cfg["instruction"] == "block_scale" else group_scaled_chain
            got = chain(a, b, c[:, None], sa, sb, unit, paired=True)[:, 0]
        else:
            got = dot_rows(a, b, c, unit=unit, out_format=None if out == "float32" else out)
    bits = data[f"{name}/d"]
    return got, fp8sim.decode(bits, out), bits


def matches(got, want, bits, out):
    """Row by row: the same bit pattern, or NaN on both sides (the NaN encodings differ by design)."""
    return (fp8sim.encode(got, out) == bits) | (np.isnan(got) & np.isnan(want))


def generate(rows_per_kind, seed):
    import mmasim
    import torch
    from mmasim.nv_ptx import sim

    rng = np.random.default_rng(seed)
    arrays, configs = {}, {}
    for key, cls, arch, shape, gpu, instr, fa, fb, out in CONFIGS:
        op = getattr(sim, cls)(arch, shape)
        k = op.k
        fa_, fb_ = fp8sim.get_format(fa), fp8sim.get_format(fb)
        for chain in (1, 4):
            K = k * chain
            for kind in KINDS:
                a, b = operands(rng, kind, rows_per_kind, K, fa_, fb_)
                c = addends(rng, rows_per_kind, out)
                tc = torch.from_numpy(c.astype(np.float32)).to(torch.float16 if out == "float16" else torch.float32)
                d = op.dpa(to_torch(torch, a, fa), to_torch(torch, b, fb), tc)
                _store(arrays, configs, f"{key}/K{K}/{kind}", a, b, c, d,
                       {"mmasim": f"{cls}('{arch}', '{shape}')", "gpu": gpu, "instruction": instr,
                        "a_format": fa, "b_format": fb, "out_format": out, "K": K, "kind": kind})
    # rows where the choices no measurement decides matter: truncated overflow (large bf16 products)
    # and a subnormal C with all-zero products (FP8 unit, F = 13)
    for key, cls, arch, shape, gpu, instr, fa, fb, out in [c for c in CONFIGS if c[0] in CHOICE_SETS]:
        op = getattr(sim, cls)(arch, shape)
        fa_ = fp8sim.get_format(fa)
        K = op.k
        a = fp8sim.quantize(rng.uniform(1, 2, (rows_per_kind, K)) * fa_.max / 2, fa, overflow="saturate")
        b = fp8sim.quantize(rng.uniform(1, 2, (rows_per_kind, K)) * (2.0 if fa_.emax > 100 else 1.0), fb)
        c = fp8sim.quantize(rng.standard_normal(rows_per_kind), "float32")
        if fa_.emax < 100:  # FP8: zero products, C subnormal
            a[:] = 0.0
            c = rng.integers(-2**23 + 1, 2**23, rows_per_kind) * 2.0**-149
        d = op.dpa(to_torch(torch, a, fa), to_torch(torch, b, fb), torch.from_numpy(c.astype(np.float32)))
        _store(arrays, configs, f"{key}/K{K}/choices", a, b, c, d,
               {"mmasim": f"{cls}('{arch}', '{shape}')", "gpu": gpu, "instruction": instr,
                "a_format": fa, "b_format": fb, "out_format": out, "K": K, "kind": "choices"})

    # block-scaled steps, chained over two blocks (one scale pair per block and row)
    for key, cls, arch, shape, gpu, fa, fb in BLOCK_SCALED_CONFIGS:
        op = getattr(sim, cls)(arch, shape)
        fa_, fb_ = fp8sim.get_format(fa), fp8sim.get_format(fb)
        kinds = ("normal", "wide", "subnormal", "tiny_scales", "nan_scale", "single") if fa == fb or gpu == "RTX50" \
            else ("normal", "subnormal")
        for kind in kinds:
            R, nb = rows_per_kind, (1 if kind == "single" else 2)
            a, b = operands(rng, {"tiny_scales": "normal", "nan_scale": "normal", "single": "wide"}.get(kind, kind), R,
                            32 * nb, fa_, fb_)
            c = addends(rng, R, "float32")
            lo, hi = (-127, -100) if kind == "tiny_scales" else (-12, 12)
            xa = rng.integers(lo, hi + 1, (R, nb)).astype(np.float64)
            xb = rng.integers(lo, hi + 1, (R, nb)).astype(np.float64)
            sa, sb = np.exp2(xa), np.exp2(xb)
            if kind == "nan_scale":
                sa[rng.random((R, nb)) < 0.2] = np.nan
            d = torch.from_numpy(c.astype(np.float32))
            for j in range(nb):
                kk = slice(32 * j, 32 * (j + 1))
                al = torch.from_numpy(sa[:, j:j + 1].astype(np.float32)).to(torch.float8_e8m0fnu)
                be = torch.from_numpy(sb[:, j:j + 1].astype(np.float32)).to(torch.float8_e8m0fnu)
                d = op.dpa(to_torch(torch, a[:, kk], fa), to_torch(torch, b[:, kk], fb), d, al, be)
            _store(arrays, configs, f"{key}/K{32 * nb}/{kind}", a, b, c, d,
                   {"mmasim": f"{cls}('{arch}', '{shape}')", "gpu": gpu, "instruction": "block_scale",
                    "a_format": fa, "b_format": fb, "out_format": "float32", "K": 32 * nb, "kind": kind}, sa, sb)

    for key, cls, arch, shape, gpu, block, sfmt in GROUP_SCALED_CONFIGS:
        op = getattr(sim, cls)(arch, shape)
        f4 = fp8sim.get_format("e2m1")
        for kind in ("normal", "cancel", "zero_groups", "tiny_scales", "nan_scale", "single"):
            R, K = rows_per_kind, (64 if kind == "single" else 128)
            a, b = operands(rng, {"zero_groups": "normal", "tiny_scales": "normal", "nan_scale": "normal",
                                  "single": "wide"}.get(kind, kind), R, K, f4, f4)
            if kind == "zero_groups":
                a[:, 16:32] = 0.0
                a[:, 64:80] = 0.0
            c = addends(rng, R, "float32")
            nb = K // block
            if sfmt == "float8_e8m0fnu":
                lo, hi = (-127, -100) if kind == "tiny_scales" else (-12, 12)
                sa = np.exp2(rng.integers(lo, hi + 1, (R, nb)).astype(np.float64))
                sb = np.exp2(rng.integers(lo, hi + 1, (R, nb)).astype(np.float64))
            else:
                spread = 9 if kind == "tiny_scales" else 4
                sa = fp8sim.quantize(np.abs(rng.standard_normal((R, nb))) * np.exp2(rng.integers(-spread, spread + 1,
                                     (R, nb))), sfmt, overflow="saturate")
                sb = fp8sim.quantize(np.abs(rng.standard_normal((R, nb))) * np.exp2(rng.integers(-spread, spread + 1,
                                     (R, nb))), sfmt, overflow="saturate")
                sa[rng.random((R, nb)) < 0.05] = 0.0
            if kind == "nan_scale":
                sa[rng.random((R, nb)) < 0.1] = np.nan
            tdt = torch.float8_e8m0fnu if sfmt == "float8_e8m0fnu" else torch.float8_e4m3fn
            al = torch.from_numpy(sa.astype(np.float32)).to(tdt)
            be = torch.from_numpy(sb.astype(np.float32)).to(tdt)
            d = op.dpa(torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32)),
                       torch.from_numpy(c.astype(np.float32)), al, be)
            _store(arrays, configs, f"{key}/K{K}/{kind}", a, b, c, d,
                   {"mmasim": f"{cls}('{arch}', '{shape}')", "gpu": gpu, "instruction": "group_scale",
                    "a_format": "float4_e2m1fn", "b_format": "float4_e2m1fn", "out_format": "float32",
                    "K": K, "kind": kind, "block": block, "scale_format": sfmt}, sa, sb)

    from mmasim.amd import sim as amd_sim

    for key, arch, suffix, gpu, fa, fb in AMD_CONFIGS:
        op = amd_sim.MFMA(arch, suffix)
        k = op.k
        fa_, fb_ = fp8sim.get_format(fa), fp8sim.get_format(fb)
        for chain in (1, 4):
            K = k * chain
            for kind in KINDS:
                a, b = operands(rng, kind, rows_per_kind, K, fa_, fb_)
                c = addends(rng, rows_per_kind, "float32")
                d = op.dpa(to_torch(torch, a, fa), to_torch(torch, b, fb), torch.from_numpy(c.astype(np.float32)))
                _store(arrays, configs, f"{key}/K{K}/{kind}", a, b, c, d,
                       {"mmasim": f"MFMA('{arch}', '{suffix}')", "gpu": gpu, "instruction": "mfma",
                        "a_format": fa, "b_format": fb, "out_format": "float32", "K": K, "kind": kind})
    meta = {"mmasim_version": getattr(mmasim, "__version__", None) or _dist_version("mmasim"),
            "torch_version": torch.__version__, "seed": seed, "rows_per_kind": rows_per_kind, "sets": configs}
    return arrays, meta


def zero_sign_grid(k, fa, fb, flush_rows=False, group=2):
    """The signed-zero rows for an instruction of K = k: (a, b, c), rows of K values.  Every pair of
    the first two inputs of A and of B from +0, -0, +-1 and +- the format's smallest subnormal (the
    rest -0 times 1), C = +-0: where the sign of a zero result, and of a product of two subnormals that
    underflows, shows.  ``flush_rows`` (CDNA2 BF16, ``group`` products per addition): also rows where
    C plus the first group's sum is an FP32 subnormal that flushes to a signed zero and the later
    products are zeros of either sign (-1.25 * 2**-125 + 2**-125 = -2**-127)."""
    import itertools

    sa, sb = fp8sim.get_format(fa).smallest_subnormal, fp8sim.get_format(fb).smallest_subnormal
    va, vb = [0.0, -0.0, 1.0, -1.0, sa, -sa], [0.0, -0.0, 1.0, -1.0, sb, -sb]
    rows = [([x0, x1] + [-0.0] * (k - 2), [y0, y1] + [1.0] * (k - 2), c0)
            for x0, x1 in itertools.product(va, repeat=2) for y0, y1 in itertools.product(vb, repeat=2)
            for c0 in (0.0, -0.0)]
    if flush_rows:
        for a0, c0, tail in itertools.product((-1.25, 1.25), (2.0**-125, -(2.0**-125)), (1.0, -1.0)):
            rows.append(([a0] + [0.0] * (k - 1), [2.0**-125] + [1.0] * (group - 1) + [tail] * (k - group), c0))
    a, b, c = (np.array(v) for v in zip(*rows))
    return a, b, c


def generate_zero_signs():
    """MMA-Sim's outputs on :func:`zero_sign_grid` for every instruction of :data:`CONFIGS` and
    :data:`AMD_CONFIGS` (one instruction's K each)."""
    import mmasim
    import torch
    from mmasim.amd import sim as amd_sim
    from mmasim.nv_ptx import sim

    arrays, sets = {}, {}

    def store(key, a, b, c, d, cfg):
        arrays[f"{key}/a"], arrays[f"{key}/b"] = a.astype(np.float32), b.astype(np.float32)
        arrays[f"{key}/c"] = c.astype(np.float32)
        arrays[f"{key}/d_bits"] = d.to(torch.float32).numpy().view(np.uint32)
        sets[key] = {**cfg, "rows": len(c)}

    for key, cls, arch, shape, gpu, instr, fa, fb, out in CONFIGS:
        op = getattr(sim, cls)(arch, shape)
        a, b, c = zero_sign_grid(op.k, fa, fb)
        tc = torch.from_numpy(c.astype(np.float32)).to(torch.float16 if out == "float16" else torch.float32)
        store(key, a, b, c, op.dpa(to_torch(torch, a, fa), to_torch(torch, b, fb), tc),
              {"mmasim": f"{cls}('{arch}', '{shape}')", "gpu": gpu, "instruction": instr, "a_format": fa,
               "b_format": fb, "out_format": out, "K": op.k})
    for key, arch, suffix, gpu, fa, fb in AMD_CONFIGS:
        op = amd_sim.MFMA(arch, suffix)
        flush = arch == "CDNA2" and fp8sim.get_format(fa).emin <= -125
        a, b, c = zero_sign_grid(op.k, fa, fb, flush, 2 if suffix == "f32_16x16x8bf16" else 4)
        store(key, a, b, c, op.dpa(to_torch(torch, a, fa), to_torch(torch, b, fb), torch.from_numpy(c.astype(np.float32))),
              {"mmasim": f"MFMA('{arch}', '{suffix}')", "gpu": gpu, "instruction": "mfma", "a_format": fa,
               "b_format": fb, "out_format": "float32", "K": op.k})
    meta = {"mmasim_version": getattr(mmasim, "__version__", None) or _dist_version("mmasim"),
            "torch_version": torch.__version__, "sets": sets}
    return arrays, meta


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data")
    ap.add_argument("--rows", type=int, default=64, help="rows per kind of input")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--zero-signs", action="store_true", help="the signed-zero grid only (mmasim_zero_signs.npz)")
    args = ap.parse_args(argv)
    arrays, meta = generate_zero_signs() if args.zero_signs else generate(args.rows, args.seed)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    name = "mmasim_zero_signs.npz" if args.zero_signs else "mmasim_vectors.npz"
    path = Path(out_dir(args.out)) / name
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {len(meta['sets'])} sets from mmasim {meta['mmasim_version']} "
          f"({path.stat().st_size / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
