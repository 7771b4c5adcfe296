"""Matrix units keyed by GPU, instruction and formats: the instruction table as data.

Parameters follow Fasi, Higham, Mikaitis & Pranesh (PeerJ Comput. Sci.
7:e330, 2021) for V100, and Khattak & Mikaitis ("Accurate Models of NVIDIA
Tensor Cores", arXiv 2512.07004) for the later GPUs; every preset is
checked bit for bit against the measured outputs in the conformance data
(``tests/test_conformance.py``; the table in the README comes from
``experiments/conformance_table.py``).

Each preset records what validated it (:func:`validation`): the measured
``mma.sync`` rows, or MMA-Sim's published table (Chen et al., arXiv
2511.10909) for instructions without measured rows (``wgmma``,
``tcgen05``, sm_120).  B200's FP8 ``mma.sync`` does not fit the truncating
model: ``C`` is added after the products' truncated FP32 sum, with a
rounding to nearest-even (``B200_FP8_NOTES``); ``tcgen05``, which library
GEMMs run on B200, is the published truncating unit with C in the
alignment and F = 25.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .accumulate import BlockFMA
from .formats import FormatLike, get_format

__all__ = ["tensor_core", "block_scaled_unit", "group_scaled_unit", "validation", "presets", "DEFAULT_INSTRUCTION", "INSTRUCTIONS",
           "GPUS", "load_vectors", "has_vectors", "VECTOR_SETS", "PACKED_VECTORS", "B200_FP8_NOTES"]

#: canonical GPU names and their aliases (upper case; lookups ignore case, spaces, '-' and '_').  An alias
#: names a part of the same architecture as the part that was measured (or modelled) and gets that part's
#: units: H200, H800, H20 and GH200 are Hopper (sm_90, measured: H100); GB200 is Blackwell (sm_100,
#: measured: B200); A30, A2 and the RTX 30 series are Ampere (modelled as A100 by both published models;
#: measured: A100); the RTX 40 series and L4 are Ada (sm_89, measured: an RTX 4000-class Ada card, "Ada");
#: T4 is Turing (MMA-Sim's table, not measured); the RTX 50 series and RTX PRO 6000 are RTX Blackwell
#: (sm_120, MMA-Sim's table, not measured: "RTX50").
GPUS = {"V100": "V100", "A100": "A100", "ADA": "Ada", "L40S": "L40S", "H100": "H100", "H200": "H100", "B200": "B200",
        "VOLTA": "V100", "SM70": "V100", "A30": "A100", "A2": "A100", "AMPERE": "A100", "SM80": "A100",
        "SM86": "A100", "RTX3090": "A100", "RTX3080": "A100", "RTX3070": "A100", "RTX3060": "A100",
        "ADALOVELACE": "Ada", "SM89": "Ada", "L4": "Ada", "RTX4090": "Ada", "RTX4080": "Ada", "RTX4070": "Ada",
        "RTX4060": "Ada", "H800": "H100", "H20": "H100", "GH200": "H100", "HOPPER": "H100", "SM90": "H100",
        "SM90A": "H100", "GB200": "B200", "BLACKWELL": "B200", "SM100": "B200", "SM100A": "B200",
        "T4": "T4", "TURING": "T4", "SM75": "T4",
        "RTX50": "RTX50", "RTX5090": "RTX50", "RTX5080": "RTX50", "RTX5070": "RTX50", "RTXPRO6000": "RTX50",
        "RTXBLACKWELL": "RTX50", "SM120": "RTX50", "SM120A": "RTX50",
        # AMD Instinct (MMA-Sim's models, not measured): CDNA1, CDNA2, CDNA3
        "MI100": "MI100", "CDNA1": "MI100", "GFX908": "MI100",
        "MI250X": "MI250X", "MI250": "MI250X", "MI210": "MI250X", "CDNA2": "MI250X", "GFX90A": "MI250X",
        "MI300X": "MI300X", "MI300A": "MI300X", "MI325X": "MI300X", "CDNA3": "MI300X", "GFX942": "MI300X"}

#: the instruction a library GEMM runs on each GPU (cuBLAS, CUTLASS, DeepGEMM, Transformer Engine)
DEFAULT_INSTRUCTION = {"V100": "mma.sync", "T4": "mma.sync", "A100": "mma.sync", "Ada": "mma.sync",
                       "L40S": "mma.sync", "H100": "wgmma", "B200": "tcgen05", "RTX50": "mma.sync",
                       "MI100": "mfma", "MI250X": "mfma", "MI300X": "mfma"}

INSTRUCTIONS = ("mma.sync", "wgmma", "tcgen05", "mfma", "mfma.legacy")

_FP = ("float16", "bfloat16", "tf32")
_FP8 = ("float8_e4m3fn", "float8_e5m2")
#: tcgen05.mma kind::f8f6f4 (and sm_120 mma.sync kind::f8f6f4): every pair of these
_F8F6F4 = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn")

MEASURED = "measured rows (hw-vectors, mma.sync): every row bit-exact"
MMASIM = ("MMA-Sim's model (arXiv 2511.10909): agrees bit for bit with MMA-Sim 2.1.1 on the random rows of "
          "tests/data/mmasim_vectors.npz for the format pairs sampled there (NaN encodings aside); not measured")

#: (gpu, instruction, format name) -> (block, align_bits, out_frac_bits, out_rounding, c_in_alignment,
#: c_rounding, what validated it)
_PRESETS = {}


def _add(gpus, instr, fmts, params, validated):
    for g in gpus:
        for f in fmts:
            c_round = params[5] if len(params) > 5 else None
            _PRESETS[(g, instr, f)] = (*params[:5], c_round, validated)


_add(["V100"], "mma.sync", ["float16"], (4, 23, 23, "toward_zero", True), MEASURED)
_add(["T4"], "mma.sync", ["float16"], (8, 24, 23, "toward_zero", True), MMASIM + " (Turing: as Ampere's f16)")
_add(["A100", "Ada", "L40S"], "mma.sync", ["float16", "bfloat16"], (8, 24, 23, "toward_zero", True), MEASURED)
_add(["A100", "Ada", "L40S"], "mma.sync", ["tf32"], (4, 24, 23, "toward_zero", True), MEASURED)
_add(["Ada", "L40S"], "mma.sync", _FP8, (16, 13, 13, "toward_zero", True), MEASURED)
#: whole GEMMs captured on an H100 through cuBLAS (experiments/capture_gpu.py, experiments/gpu_capture.py)
CAPTURED = ("whole cuBLAS GEMMs captured on an H100 (tests/data/h100_scaled_mm.npz, {what}): every output "
            "bit-exact, NaN encodings aside")
for _instr, _how in (("mma.sync", MEASURED), ("wgmma", MMASIM + "; the same parameters fit the measured mma.sync rows")):
    _cap = "; " + CAPTURED if _instr == "wgmma" else ""
    _add(["H100"], _instr, ["float16", "bfloat16"], (16, 25, 23, "toward_zero", True),
         _how + _cap.format(what="torch.matmul, FP16 / BF16 output"))
    _add(["H100"], _instr, ["tf32"], (8, 25, 23, "toward_zero", True),
         _how + "; " + CAPTURED.format(what="torch.matmul with TF32, kernel on " + _instr))
_add(["H100"], "wgmma", _FP8, (32, 13, 13, "toward_zero", True),
     "measured rows (hw-vectors H100 E4M3 / E5M2, FP32 output, run with C = 0): every row bit-exact; "
     + MMASIM + "; " + CAPTURED.format(
         what="torch._scaled_mm E4M3 x E4M3 and E5M2 x E4M3, use_fast_accum True and False (promotion every "
              "128), FP32 / BF16 / FP16 output"))
#: H100 FP8 mma.sync is an emulation on the FP16 path (SplitFP16Unit; the parameters describe its FP16
#: steps: 16 products, F = 25, truncated to FP32, then C added with one nearest-even FP32 rounding)
_add(["H100"], "mma.sync", _FP8, (32, 25, 23, "toward_zero", False, "nearest_even"),
     "measured on an H100 (tests/data/h100_mma_sync_fp8.npz: 40,960 outputs of mma.sync.m16n8k32 E4M3 x E4M3 "
     "and E5M2 x E4M3, random operands and C, K = 32 to 128; tests/data/h100_mma_probe.json: C's corner "
     "cases): every output bit-exact; not the 13-bit unit of wgmma")
_add(["B200"], "mma.sync", ["float16", "bfloat16"], (16, 25, 23, "toward_zero", True), MEASURED)
_add(["B200"], "mma.sync", ["tf32"], (8, 25, 23, "toward_zero", True), MEASURED)
_add(["B200"], "mma.sync", _FP8, (32, 25, 23, "toward_zero", False, "nearest_even"),
     MEASURED + " (C added after the products' truncated sum; see B200_FP8_NOTES)")
_add(["B200"], "tcgen05", ["float16", "bfloat16"], (16, 25, 23, "toward_zero", True), MMASIM)
_add(["B200"], "tcgen05", ["tf32"], (8, 25, 23, "toward_zero", True), MMASIM)
_add(["B200"], "tcgen05", _F8F6F4, (32, 25, 23, "toward_zero", True), MMASIM + " (kind::f8f6f4)")
_add(["RTX50"], "mma.sync", _F8F6F4, (32, 25, 23, "toward_zero", True), MMASIM + " (sm_120 kind::f8f6f4)")

_FNUZ8 = ("float8_e4m3fnuz", "float8_e5m2fnuz")
#: AMD units: (gpu, instruction, format) -> (class name, keyword arguments, what validated it)
_AMD = {}
for _f, _blk in (("float16", 4), ("bfloat16", 2)):
    _AMD[("MI100", "mfma", _f)] = ("ExactBlockUnit", {"block": _blk}, MMASIM + " (CDNA1, E-FDPA)")
_AMD[("MI250X", "mfma", "float16")] = ("FTZUnit", {"group": 4}, MMASIM + " (CDNA2, FTZ-MUL-ADD)")
_AMD[("MI250X", "mfma", "bfloat16")] = ("FTZUnit", {"group": 4}, MMASIM + " (CDNA2 bf16_1k, FTZ-MUL-ADD)")
_AMD[("MI250X", "mfma.legacy", "bfloat16")] = ("FTZUnit", {"group": 2}, MMASIM + " (CDNA2 bf16, FTZ-MUL-ADD)")
for _f in ("float16", "bfloat16"):
    _AMD[("MI300X", "mfma", _f)] = ("FloorSumUnit", {"block": 8}, MMASIM + " (CDNA3, TR-FDPA)")
_AMD[("MI300X", "mfma", "tf32")] = ("FloorSumUnit", {"block": 4}, MMASIM + " (CDNA3 xf32, TR-FDPA)")
for _f in _FNUZ8:
    _AMD[("MI300X", "mfma", _f)] = ("FloorSumUnit", {"block": 16, "split_parity": True, "c_drop_bits": 25,
                                                      "overflow_check": False}, MMASIM + " (CDNA3 FP8, GTR-FDPA)")

#: which operand formats each (gpu, instruction, in_format) may pair with
_PAIRS = {"tcgen05": _F8F6F4}


def presets():
    """Every (gpu, instruction, in_format name) the table holds, with what validated it.

    >>> ("H100", "wgmma", "float8_e4m3fn") in {k[:3] for k in presets()}
    True
    """
    return ([(g, i, f, v[-1]) for (g, i, f), v in sorted(_PRESETS.items())]
            + [(g, i, f, v[-1]) for (g, i, f), v in sorted(_AMD.items())])


B200_FP8_NOTES = """\
B200, FP8 inputs, mma.sync (E4M3, E5M2; 5000 measured rows each; counts from
experiments/fit_b200.py).  The published truncating model, with C in the
alignment and the sum truncated to FP32, matches at most 3207 (E4M3) and
3236 (E5M2) rows for any F from 13 to 32: the outputs lie on both sides
of the exact value.  What matches every row of both sets: the 32 products
are aligned to their largest exponent and truncated to F bits, their sum
is normalised and truncated to FP32, and only then is C added, with one
rounding to nearest-even FP32.  Every F >= 23 gives the same outputs on
this data (E5M2: F = 22 matches 4998 rows, F = 20 4974); the preset uses
F = 25, as B200's FP16/BF16 path.  Rounding the products' sum to nearest
instead of truncating it matches 4999 E5M2 rows; truncating C's addition
too matches 3183.  A second mechanism also fits every row (HARDWARE.md):
FP8 converted to FP16, two chained 16-product FP16 steps from C = 0, then C
added with one nearest-even FP32 addition; it fits every row too, and the
two disagree on 635 of 4000 random rows with E4M3 operands over 2**+-6
and C ~ N(0, 64) (experiments/fit_b200.py), so rows of that kind measured
on a B200 would tell them apart.  The library GEMMs run tcgen05, a different unit.
"""


def _gpu_key(gpu):
    key = GPUS.get(str(gpu).upper().replace(" ", "").replace("-", "").replace("_", ""))
    if key is None:
        raise ValueError(f"unknown gpu {gpu!r}; accepted: {sorted(GPUS)}")
    return key


def tensor_core(gpu: str, in_format: FormatLike, out_format: FormatLike = "float32",
                b_format: FormatLike | None = None, instruction: str | None = None):
    """The matrix unit a GPU's instruction uses for given operand and output formats.

    Parameters
    ----------
    gpu : str
        ``"V100"``, ``"T4"``, ``"A100"``, ``"Ada"``, ``"L40S"``, ``"H100"``,
        ``"B200"``, ``"RTX50"``, or an alias from :data:`GPUS` (``"H200"``,
        ``"H800"``, ``"sm90"``, ``"hopper"``, ``"RTX PRO 6000"`` ... each gets
        the unit of the part of its architecture that was measured or
        modelled); case, spaces, ``-`` and ``_`` are ignored.
    in_format : str or FloatFormat
        The first operand's format: ``"e4m3"``, ``"e5m2"``, ``"float16"``,
        ``"bfloat16"``, ``"tf32"``; on ``tcgen05`` and RTX50 also ``"e3m2"``,
        ``"e2m3"``, ``"e2m1"``.
    out_format : str
        ``"float32"`` (default) or ``"float16"``: the FP16-output mode (C in
        FP16, use with ``matmul(..., out_format="float16")``).
    b_format : str, optional
        The second operand's format when it differs (mixed FP8; every pair
        of kind::f8f6f4 on tcgen05 and RTX50).  The measured sets have no
        mixed rows.
    instruction : str, optional
        ``"mma.sync"``, ``"wgmma"`` (Hopper) or ``"tcgen05"`` (B200); default
        :data:`DEFAULT_INSTRUCTION`, the instruction a library GEMM runs:
        ``wgmma`` on Hopper, ``tcgen05`` on B200, ``mma.sync`` elsewhere.
        The measured rows were captured with ``mma.sync``, except H100 FP8
        with FP32 output (``wgmma``; :func:`measured_instruction`).  H100
        FP8 ``mma.sync`` is an FP16-path emulation, measured on an H100: a
        :class:`fp8sim.accumulate.SplitFP16Unit` with FP32 output.

    Returns
    -------
    BlockFMA, or SplitFP16Unit for FP8 ``mma.sync`` with FP16 output on
    Hopper and Blackwell.  ``fp8sim.hardware.validation(unit)`` says what
    validated it.

    Examples
    --------
    >>> from fp8sim.hardware import tensor_core
    >>> u = tensor_core("H100", "e4m3")
    >>> u.block, u.align_bits, u.out_frac_bits, u.out_rounding, u.name
    (32, 13, 13, 'toward_zero', 'H100:float8_e4m3fn@wgmma')
    >>> tensor_core("B200", "e4m3").c_in_alignment, tensor_core("B200", "e4m3", instruction="mma.sync").c_in_alignment
    (True, False)
    """
    from .accumulate import SplitFP16Unit

    key = _gpu_key(gpu)
    instr = DEFAULT_INSTRUCTION[key] if instruction is None else str(instruction).strip().lower()
    if any(g == key for g, _, _ in _AMD):
        return _amd_unit(key, instr, in_format, out_format, b_format, instruction)
    fmt, params = _lookup(_PRESETS, key, instr, instruction, in_format)
    fb = fmt if b_format is None else get_format(b_format)
    if fb != fmt:
        family = _PAIRS.get(instr, _F8F6F4 if key == "RTX50" else _FP8)
        if fmt.name not in family or fb.name not in family or (key, instr, fb.name) not in _PRESETS:
            raise ValueError(f"mixed operands on {key} {instr}: both must be among {list(family)}, "
                             f"got {fmt.name} and {fb.name}")
    block, align, frac, rnd, c_in, c_round, _ = params
    name = _unit_name(key, fmt, fb, instr)
    out = get_format(out_format).name
    if out not in ("float32", "float16"):
        raise ValueError(f"out_format must be 'float32' or 'float16', got {out_format!r}")
    if out == "float16" and fb != fmt:
        raise ValueError("mixed operands: FP16 output is not modelled")
    suffix = ":fp16out" if out == "float16" else ""
    # FP8 mma.sync on the FP16 path: H100 (measured, both outputs), B200 (FP16 output)
    if fmt.name in _FP8 and instr == "mma.sync" and (key == "H100" or (key == "B200" and out == "float16")):
        step = tensor_core(key, "float16", out_format=out, instruction="mma.sync")
        return SplitFP16Unit(step, fmt, b_format=fb, out_format=out, name=name + suffix)
    if out == "float32":
        return BlockFMA(fmt, block, align, frac, rnd, c_in, c_round, name=name, b_format=fb)
    return BlockFMA(fmt, block, align, 10, "nearest_even", c_in, "nearest_even", name=name + ":fp16out", b_format=fb,
                    step_format="float16")


def _amd_unit(key, instr, in_format, out_format, b_format, instruction):
    from . import cdna

    fmt, entry = _lookup(_AMD, key, instr, instruction, in_format)
    fb = fmt if b_format is None else get_format(b_format)
    if fb != fmt and not (fmt.name in _FNUZ8 and fb.name in _FNUZ8):
        raise ValueError(f"mixed operands on {key} {instr}: both must be among {list(_FNUZ8)}, "
                         f"got {fmt.name} and {fb.name}")
    if get_format(out_format).name != "float32":
        raise ValueError(f"{key} {instr}: only FP32 output is modelled, got out_format={out_format!r}")
    cls, kwargs, _ = entry
    return getattr(cdna, cls)(fmt, name=_unit_name(key, fmt, fb, instr), b_format=fb, **kwargs)


def _lookup(table, key, instr, instruction, in_format):
    """(format, entry) of ``table`` for a GPU, instruction and input format; a ValueError that lists
    what the GPU has otherwise."""
    have = sorted({(i, f) for g, i, f in table if g == key})
    if not any(i == instr for i, _ in have):
        raise ValueError(f"{key} has no instruction {instruction!r}; it has "
                         f"{sorted({i for i, _ in have})} (default {DEFAULT_INSTRUCTION[key]!r})")
    fmt = get_format(in_format)
    entry = table.get((key, instr, fmt.name))
    if entry is None:
        raise ValueError(f"no {key} {instr} unit for in_format {fmt.name!r}; {key} {instr} takes "
                         f"{sorted(f for i, f in have if i == instr)}")
    return fmt, entry


def _unit_name(key, fmt, fb, instr):
    """A preset's name: GPU:format[,b_format]@instruction."""
    return f"{key}:{fmt.name}" + (f",{fb.name}" if fb != fmt else "") + f"@{instr}"


def block_scaled_unit(gpu: str, a_format: FormatLike, b_format: FormatLike | None = None):
    """The block-scaled ``kind::mxf8f6f4`` unit of B200 (``tcgen05.mma.block_scale``) or RTX50
    (``mma.sync.block_scale``): :class:`fp8sim.blockscale.BlockScaledFMA` (MMA-Sim's ST-FDPA; the
    two run the same arithmetic).

    >>> block_scaled_unit("B200", "e4m3").name
    'B200:float8_e4m3fn@block_scale'
    """
    from .blockscale import BlockScaledFMA

    key = _gpu_key(gpu)
    if key not in ("B200", "RTX50"):
        raise ValueError(f"block-scaled MMA (kind::mxf8f6f4) is modelled for B200 and RTX50, not {key}")
    fa = get_format(a_format)
    fb = fa if b_format is None else get_format(b_format)
    return BlockScaledFMA(fa, fb, name=_unit_name(key, fa, fb, "block_scale"))


def group_scaled_unit(gpu: str, kind: str = "mxf4", block: int = 32, scale_format: FormatLike = "ue8m0"):
    """The ``kind::mxf4`` / ``kind::mxf4nvf4`` unit of B200 or RTX50 (E2M1 elements, K = 64 per
    instruction): :class:`fp8sim.blockscale.GroupScaledFMA` (MMA-Sim's GST-FDPA).  ``kind="mxf4"``
    takes UE8M0 scales per 32; ``"mxf4nvf4"`` UE8M0 per 32 or 16, or UE4M3 per 16 (NVFP4).

    >>> group_scaled_unit("B200", "mxf4nvf4", 16, "e4m3").name
    'B200:float4_e2m1fn@mxf4nvf4.block16.float8_e4m3fn'
    """
    from .blockscale import GroupScaledFMA

    key = _gpu_key(gpu)
    if key not in ("B200", "RTX50"):
        raise ValueError(f"block-scaled MMA (kind::mxf4) is modelled for B200 and RTX50, not {key}")
    kind = str(kind).strip().lower()
    sfmt = get_format(scale_format)
    allowed = {"mxf4": [(32, "float8_e8m0fnu")],
               "mxf4nvf4": [(32, "float8_e8m0fnu"), (16, "float8_e8m0fnu"), (16, "float8_e4m3fn")]}
    if kind not in allowed or (block, sfmt.name) not in allowed[kind]:
        raise ValueError(f"kind {kind!r} with block {block} and {sfmt.name} scales: not an instruction; accepted "
                         f"{ {k: v for k, v in allowed.items()} }")
    return GroupScaledFMA(block, sfmt, name=f"{key}:float4_e2m1fn@{kind}.block{block}.{sfmt.name}")


def validation(unit) -> str:
    """What validated a unit from :func:`tensor_core` (by its name).

    >>> validation(tensor_core("B200", "e2m1"))[:7]
    'MMA-Sim'
    """
    name = getattr(unit, "name", "") or ""
    try:
        gpu, rest = name.split(":", 1)
        fmts, instr = rest.split("@", 1)
    except ValueError:
        return "not a preset"
    instr = instr.split(":")[0]
    if instr == "block_scale":
        return MMASIM + " (kind::mxf8f6f4 block-scaled, ST-FDPA)"
    if instr.startswith("mxf4"):
        return MMASIM + " (kind::mxf4 / mxf4nvf4, GST-FDPA)"
    v = _PRESETS.get((gpu, instr, fmts.split(",")[0])) or _AMD.get((gpu, instr, fmts.split(",")[0]))
    if v is None:
        return "not a preset"
    if name.endswith(":fp16out"):
        return v[-1] + "; FP16 output: " + ("measured rows, every row bit-exact" if (
            gpu in ("V100", "A100", "Ada", "L40S", "H100", "B200") and instr == "mma.sync"
            and (fmts.startswith("float16") or gpu in ("Ada", "H100", "B200"))) else MMASIM)
    return v[-1]


# --- conformance data ----------------------------------------------------------

def measured_instruction(gpu, fmt_dir, output="fp32"):
    """The instruction whose preset a measured set (hw-vectors) belongs to.

    Every set is ``mma.sync`` except H100 FP8 with FP32 output: run with
    C = 0 (as wgmma's scale-d = 0 does), its rows fit the 13-bit model of
    ``wgmma`` (confirmed on whole cuBLAS GEMMs captured on an H100), not the
    H100's FP8 ``mma.sync``, which an H100 shows to be an FP16-path emulation
    (``tests/data/h100_mma_sync_fp8.npz``).

    >>> measured_instruction("H100", "E4M3"), measured_instruction("H100", "E4M3", "fp16")
    ('wgmma', 'mma.sync')
    """
    if gpu == "H100" and fmt_dir in ("E4M3", "E5M2") and output == "fp32":
        return "wgmma"
    return "mma.sync"

_DIR_FORMAT = {"fp16": "float16", "bf16": "bfloat16", "tf32": "tf32", "E4M3": "float8_e4m3fn", "E5M2": "float8_e5m2"}

#: every measured set: (GPU folder, input-format folder)
VECTOR_SETS = [
    ("V100", "fp16"),
    *[("A100", f) for f in ("fp16", "bf16", "tf32")],
    *[(g, f) for g in ("Ada", "L40S", "H100", "B200") for f in ("fp16", "bf16", "tf32", "E4M3", "E5M2")],
]

#: the packed copy of the measured sets that ships with the tests (experiments/pack_conformance.py)
PACKED_VECTORS = Path(__file__).resolve().parent.parent / "tests" / "data" / "hw_vectors.npz"


def has_vectors(root: str | Path, gpu: str, fmt_dir: str, output: str = "fp32") -> bool:
    """Whether ``root`` (a hw-vectors folder or a packed file) holds that set with that output."""
    root = Path(root)
    if root.is_file():
        with np.load(root, allow_pickle=False) as data:
            return f"{gpu}/{fmt_dir}/d_{output}" in data.files
    return (root / gpu / fmt_dir / f"d_{gpu}_{output}.txt").is_file()


def load_vectors(root: str | Path, gpu: str, fmt_dir: str, output: str = "fp32") -> dict:
    """Read one set of measured tensor-core outputs.

    ``root`` is the folder of the text layout (``../shared/hw-vectors``) or
    the packed file ``tests/data/hw_vectors.npz``.  Returns a dict with
    ``a`` and ``b`` (rows, K) float64 inputs, ``c`` (rows,) float64 addends,
    ``d`` (rows,) float64 measured outputs, and ``d_bits`` the outputs' FP32
    bit patterns (uint32).

    >>> import fp8sim.hardware as hw
    >>> hw.load_vectors("/nonexistent", "H100", "E4M3")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no conformance set at /nonexistent/H100/E4M3
    """
    from .codec import decode

    fmt = _DIR_FORMAT[fmt_dir]
    root = Path(root)
    if root.is_file():
        key = f"{gpu}/{fmt_dir}"
        with np.load(root, allow_pickle=False) as data:
            if f"{key}/d_{output}" not in data.files:
                raise FileNotFoundError(f"no conformance set {key} ({output} output) in {root}")
            a, b = decode(data[f"{key}/a"], fmt), decode(data[f"{key}/b"], fmt)
            c_bits, d_bits = data[f"{key}/c"], data[f"{key}/d_{output}"]
    else:
        d = root / gpu / fmt_dir
        if not d.is_dir():
            raise FileNotFoundError(f"no conformance set at {d}")

        def hex_rows(name):
            rows = [line.split() for line in (d / name).read_text().splitlines() if line.strip()]
            return np.array([[int(t, 16) for t in r] for r in rows], np.uint32).view(np.float32).astype(np.float64)

        def bin_rows(name):
            return np.array([int(line.strip(), 2) for line in (d / name).read_text().splitlines() if line.strip()],
                            np.uint32)

        a, b = hex_rows(f"a_{gpu}_{fmt_dir}.txt"), hex_rows(f"b_{gpu}_{fmt_dir}.txt")
        c_bits, d_bits = bin_rows(f"c_{gpu}_fp32.txt"), bin_rows(f"d_{gpu}_{output}.txt")
    return {
        "a": a,
        "b": b,
        "c": c_bits.view(np.float32).astype(np.float64),
        "d": d_bits.view(np.float32).astype(np.float64),
        "d_bits": d_bits,
        "in_format": fmt,
    }
