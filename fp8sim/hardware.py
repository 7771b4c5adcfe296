"""Measured presets: which :class:`~fp8sim.accumulate.BlockFMA` each GPU uses.

Parameters follow Fasi, Higham, Mikaitis & Pranesh (PeerJ Comput. Sci.
7:e330, 2021) for V100, and Khattak & Mikaitis ("Accurate Models of NVIDIA
Tensor Cores", arXiv 2512.07004) for the later GPUs; every preset is
checked bit for bit against the measured outputs in the conformance data
(``tests/test_conformance.py``; the table in the README comes from
``experiments/conformance_table.py``).

B200 with FP8 inputs does not fit the truncating model: ``C`` is added
after the products' truncated FP32 sum, with a rounding to nearest-even.
See ``B200_FP8_NOTES``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .accumulate import BlockFMA
from .formats import FormatLike, get_format

__all__ = ["tensor_core", "GPUS", "load_vectors", "has_vectors", "VECTOR_SETS", "PACKED_VECTORS", "B200_FP8_NOTES"]

#: canonical GPU names and their aliases (upper case; lookups ignore case, spaces, '-' and '_').  An alias
#: names a part of the same architecture as the part that was measured and gets that part's unit: H200,
#: H800, H20 and GH200 are Hopper (sm_90, measured: H100); GB200 is Blackwell (sm_100, measured: B200);
#: A30 is GA100 (sm_80, measured: A100); the RTX 40 series and L4 are Ada (sm_89, measured: an RTX
#: 4000-class Ada card, "Ada"); the architecture and compute-capability names map the same way.
GPUS = {"V100": "V100", "A100": "A100", "ADA": "Ada", "L40S": "L40S", "H100": "H100", "H200": "H100", "B200": "B200",
        "VOLTA": "V100", "SM70": "V100", "A30": "A100", "AMPERE": "A100", "SM80": "A100",
        "ADALOVELACE": "Ada", "SM89": "Ada", "L4": "Ada", "RTX4090": "Ada", "RTX4080": "Ada", "RTX4070": "Ada",
        "RTX4060": "Ada", "H800": "H100", "H20": "H100", "GH200": "H100", "HOPPER": "H100", "SM90": "H100",
        "SM90A": "H100", "GB200": "B200", "BLACKWELL": "B200", "SM100": "B200", "SM100A": "B200"}

_FP = ("float16", "bfloat16", "tf32")
_FP8 = ("float8_e4m3fn", "float8_e5m2")

#: (gpu, format name) -> (block, align_bits, out_frac_bits, out_rounding, c_in_alignment[, c_rounding])
_PRESETS = {}
for _f in ("float16",):
    _PRESETS[("V100", _f)] = (4, 23, 23, "toward_zero", True)
for _gpu in ("A100", "Ada", "L40S"):
    _PRESETS[(_gpu, "float16")] = (8, 24, 23, "toward_zero", True)
    _PRESETS[(_gpu, "bfloat16")] = (8, 24, 23, "toward_zero", True)
    _PRESETS[(_gpu, "tf32")] = (4, 24, 23, "toward_zero", True)
for _gpu in ("Ada", "L40S"):
    for _f in _FP8:
        _PRESETS[(_gpu, _f)] = (16, 13, 13, "toward_zero", True)
for _gpu in ("H100", "B200"):
    _PRESETS[(_gpu, "float16")] = (16, 25, 23, "toward_zero", True)
    _PRESETS[(_gpu, "bfloat16")] = (16, 25, 23, "toward_zero", True)
    _PRESETS[(_gpu, "tf32")] = (8, 25, 23, "toward_zero", True)
for _f in _FP8:
    _PRESETS[("H100", _f)] = (32, 13, 13, "toward_zero", True)
    _PRESETS[("B200", _f)] = (32, 25, 23, "toward_zero", False, "nearest_even")

B200_FP8_NOTES = """\
B200, FP8 inputs (E4M3, E5M2; 5000 measured rows each; counts from
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
too matches 3183.
"""


def tensor_core(gpu: str, in_format: FormatLike, out_format: FormatLike = "float32",
                b_format: FormatLike | None = None) -> BlockFMA:
    """The block FMA a GPU's tensor cores use for an input format.

    Parameters
    ----------
    gpu : str
        ``"V100"``, ``"A100"``, ``"Ada"``, ``"L40S"``, ``"H100"`` or
        ``"B200"``, or an alias from :data:`GPUS` (``"H200"``, ``"H800"``,
        ``"sm90"``, ``"hopper"`` ... each gets the unit of the measured part
        of its architecture); case, spaces, ``-`` and ``_`` are ignored.
    in_format : str or FloatFormat
        ``"e4m3"``, ``"e5m2"``, ``"float16"``, ``"bfloat16"`` or ``"tf32"``.
    out_format : str
        ``"float32"`` (default) or ``"float16"``: the unit of the FP16-output
        mode, where each block's exact sum is rounded to nearest with FP16's
        10 fraction bits (use it with C in FP16 and ``matmul(...,
        out_format="float16")``, which applies FP16's range).  This fits
        every measured FP16-output row for FP16 inputs and for Ada's FP8
        inputs; H100 and B200 with FP8 inputs and FP16 output are not
        modelled (``ValueError``).  Ranges beyond FP16's inside a chain of
        several blocks are not checked by the data.
    b_format : str, optional
        The second operand's format for mixed FP8 products (E5M2 x E4M3 and
        E4M3 x E5M2): the same unit as same-format FP8, each input's
        exponent clamped at its own format's ``emin``.  The conformance data
        has no mixed sets, so this is the model's assumption, not a
        measurement.

    Examples
    --------
    >>> from fp8sim.hardware import tensor_core
    >>> u = tensor_core("H100", "e4m3")
    >>> u.block, u.align_bits, u.out_frac_bits, u.out_rounding
    (32, 13, 13, 'toward_zero')
    """
    key = GPUS.get(str(gpu).upper().replace(" ", "").replace("-", "").replace("_", ""))
    if key is None:
        raise ValueError(f"unknown gpu {gpu!r}; accepted: {sorted(GPUS)}")
    fmt = get_format(in_format)
    params = _PRESETS.get((key, fmt.name))
    if params is None:
        have = sorted(f for g, f in _PRESETS if g == key)
        raise ValueError(f"no {key} preset for in_format {fmt.name!r}; {key} has {have}")
    fb = fmt if b_format is None else get_format(b_format)
    if fb != fmt:
        if fmt.name not in _FP8 or fb.name not in _FP8:
            raise ValueError(f"mixed operands are modelled for FP8 only, got {fmt.name} and {fb.name}")
        mixed = BlockFMA(fmt, *params, name=f"{key}:{fmt.name}x{fb.name}", b_format=fb)
        if get_format(out_format).name != "float32":
            raise ValueError("mixed FP8 operands: FP16 output is not modelled")
        return mixed
    out = get_format(out_format).name
    if out == "float32":
        return BlockFMA(fmt, *params, name=f"{key}:{fmt.name}")
    if out != "float16":
        raise ValueError(f"out_format must be 'float32' or 'float16', got {out_format!r}")
    if fmt.name in _FP8 and key not in ("Ada", "L40S"):
        raise ValueError(f"{key} with {fmt.name} inputs and FP16 output is not modelled")
    block, align, _, _, c_in = params[:5]
    return BlockFMA(fmt, block, align, 10, "nearest_even", c_in, "nearest_even", name=f"{key}:{fmt.name}:fp16out")


# --- conformance data ----------------------------------------------------------

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
