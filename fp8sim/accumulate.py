"""Tensor-core accumulation: the block fused multiply-add and the engine that chains it.

One hardware step, :class:`BlockFMA`, computes ``D = sum(a_i * b_i) + C``
over ``block`` products (Fasi, Higham, Mikaitis & Pranesh, PeerJ Comput.
Sci. 7:e330, 2021, section 5; Khattak & Mikaitis, "Accurate Models of
NVIDIA Tensor Cores", arXiv 2512.07004; DeepSeek-V3 report, arXiv
2412.19437, section 3.3.2):

1. every product is exact; an input is ``significand * 2**e`` with ``e``
   clamped at the input format's ``emin`` (subnormals), and the product's
   exponent is the sum of its inputs' exponents (not renormalised);
2. ``E`` is the largest exponent among the non-zero products and, when
   ``c_in_alignment``, the exponent of a non-zero ``C``;
3. every term is truncated toward zero onto the grid ``2**(E - align_bits)``;
4. the integers are summed exactly, the sum is normalised once and rounded
   to ``out_frac_bits`` fraction bits with ``out_rounding`` in FP32's
   exponent range; when ``C`` is not in the alignment it is added to that
   result afterwards, with one more rounding (``c_rounding``);
5. over K the steps chain: each step's result is the next step's ``C``.

Special values: a NaN input, ``Inf * 0`` or ``Inf - Inf`` give NaN; an
infinite product gives Inf; an infinite ``C`` stays unless a product is the
opposite infinity.  A result beyond the step's format overflows as IEEE
754 rounds it (to Inf, or to the largest finite value under toward-zero).

The scalar twin is :func:`fp8sim.reference.block_fma_dot`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .formats import FloatFormat, FormatLike, check_bool, get_format
from .rounding import quantize, rounding_mode

__all__ = ["BlockFMA", "ExactUnit", "FMAUnit", "SplitFP16Unit", "round_pair", "two_sum", "dot_chain", "split_fp16_chain"]

FP32 = get_format("float32")


@dataclass(frozen=True)
class BlockFMA:
    """Parameters of one tensor-core block fused multiply-add.

    Parameters
    ----------
    in_format : FloatFormat or str
        Format of both inputs (``"e4m3"``, ``"float16"``, ...).
    block : int
        Products summed in one step.
    align_bits : int
        ``F``: terms are truncated onto the grid ``2**(E - F)``.
    out_frac_bits : int
        Fraction bits of each step's result (23: FP32).
    out_rounding : str
        How each step's result is rounded: ``"toward_zero"`` (NVIDIA) or
        ``"nearest_even"``.
    c_in_alignment : bool
        Whether ``C`` joins the alignment (and its truncation); if not, ``C``
        is added to the rounded sum of the products.
    c_rounding : str or None
        Rounding of that addition when ``C`` is not in the alignment
        (``None``: ``out_rounding``).
    name : str
        Label for reports.
    b_format : FloatFormat or str, optional
        Format of the second operand when it differs from the first (mixed
        FP8, e.g. E5M2 gradients times E4M3 weights); ``None``: ``in_format``.
    step_format : FloatFormat or str, optional
        The format each step's result is rounded to, range included (FP16 for
        the FP16-output mode: a step beyond 65504 overflows inside the
        chain); its mantissa bits must be ``out_frac_bits``.  ``None``: FP32's
        exponent range with ``out_frac_bits`` fraction bits.
    rz_overflow : str
        A result truncated toward zero beyond the step format's range:
        ``"inf"`` (the default: what an H100 gives, measured in
        ``tests/data/h100_scaled_mm.npz``'s overflow set through ``mma.sync``
        TF32 and ``wgmma`` BF16 kernels, and MMA-Sim's choice) or ``"max"``
        (IEEE 754's toward-zero rounding, the largest finite value).
    c_subnormal_exponent : str
        The exponent a subnormal C brings to the alignment: ``"emin"`` (the
        default: the format's minimum normal exponent, -126 for FP32; what
        an H100's ``wgmma`` does, measured in
        ``tests/data/h100_mma_probe.json``, and MMA-Sim's choice) or
        ``"true"`` (its own exponent).  With 13 alignment bits they differ
        in the sign of a subnormal C truncated to zero (``"emin"``: +0).

    Examples
    --------
    >>> import numpy as np, fp8sim
    >>> unit = fp8sim.BlockFMA("e4m3", block=32, align_bits=13, out_frac_bits=13)
    >>> a = np.array([[256.0, 1.0, 0.0078125]])      # the smallest product falls off the grid
    >>> b = np.array([[1.0], [1.0], [1.0]])
    >>> fp8sim.matmul(a, b, unit=unit).item()
    257.0
    """

    in_format: FloatFormat
    block: int
    align_bits: int
    out_frac_bits: int = 23
    out_rounding: str = "toward_zero"
    c_in_alignment: bool = True
    c_rounding: str | None = None
    name: str = ""
    b_format: FloatFormat | None = None
    step_format: FloatFormat | None = None
    rz_overflow: str = "inf"
    c_subnormal_exponent: str = "emin"

    def __post_init__(self):
        for field, allowed in (("rz_overflow", ("max", "inf")), ("c_subnormal_exponent", ("true", "emin"))):
            value = getattr(self, field)
            value = value.strip().lower() if isinstance(value, str) else value
            if value not in allowed:
                raise ValueError(f"{field} must be one of {list(allowed)}, got {value!r}")
            object.__setattr__(self, field, value)
        object.__setattr__(self, "in_format", get_format(self.in_format))
        if self.step_format is not None:
            object.__setattr__(self, "step_format", get_format(self.step_format))
        object.__setattr__(self, "b_format", self.in_format if self.b_format is None else get_format(self.b_format))
        for field, lo, hi in (("block", 1, 4096), ("align_bits", 1, 40), ("out_frac_bits", 1, 23)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ValueError(f"{field} must be an int in {lo}..{hi}, got {value!r}")
            object.__setattr__(self, field, int(value))
        if self.c_rounding is None:
            object.__setattr__(self, "c_rounding", self.out_rounding)
        object.__setattr__(self, "c_in_alignment", check_bool(self.c_in_alignment, "c_in_alignment"))
        for field in ("out_rounding", "c_rounding"):
            value = getattr(self, field)
            try:
                value = rounding_mode(value, field).value
            except ValueError:
                pass
            if value not in ("toward_zero", "nearest_even"):
                raise ValueError(f"{field} must be 'toward_zero' or 'nearest_even', got {value!r}")
            object.__setattr__(self, field, value)
        for field in ("in_format", "b_format"):
            if getattr(self, field).mantissa_bits > 23:
                raise ValueError(f"{field}: at most 23 mantissa bits (products must be exact in float64)")
        fa, fb = self.in_format, self.b_format
        low = fa.emin + fb.emin - fa.mantissa_bits - fb.mantissa_bits
        high = fa.emax + fb.emax + 2
        if low < -1074 or high > 1023:
            raise ValueError(
                f"in_format {fa.name or fa!r} x b_format {fb.name or fb!r}: products span 2**{low} to 2**{high}, "
                "beyond what float64 holds exactly (2**-1074 to 2**1023); the engine cannot simulate them"
            )
        if self.step_format is not None and self.step_format.mantissa_bits != self.out_frac_bits:
            raise ValueError(f"step_format {self.step_format.name} has {self.step_format.mantissa_bits} fraction bits, "
                             f"out_frac_bits is {self.out_frac_bits}")
        if self.align_bits + 3 + math.ceil(math.log2(self.block + 1)) > 52:
            raise ValueError("align_bits and block too large for exact float64 sums")

    @property
    def acc_format(self) -> FloatFormat:
        """Format of each step's result: ``step_format``, or FP32's exponent range with ``out_frac_bits``
        fraction bits."""
        if self.step_format is not None:
            return self.step_format
        return FloatFormat(8, self.out_frac_bits, 127, name=f"fp32_{self.out_frac_bits}frac")

    def replace(self, **changes) -> BlockFMA:
        """A copy with some parameters changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def default_choices(self) -> bool:
        """Whether the choices for corner cases are fp8sim's defaults."""
        return self.rz_overflow == "inf" and self.c_subnormal_exponent == "emin"

    def with_mmasim_choices(self) -> BlockFMA:
        """This unit with MMA-Sim's choices for the corner cases: a truncated overflow gives Inf and
        a subnormal C aligns at the minimum normal exponent, as fp8sim's defaults and the H100 do.

        >>> import fp8sim
        >>> u = fp8sim.hardware.tensor_core("H100", "bf16")
        >>> fp8sim.matmul([[2.0**127]], [[4.0]], unit=u).item()
        inf
        >>> fp8sim.matmul([[2.0**127]], [[4.0]], unit=u.replace(rz_overflow="max")).item()
        3.4028234663852886e+38
        """
        return self.replace(rz_overflow="inf", c_subnormal_exponent="emin")


@dataclass(frozen=True)
class ExactUnit:
    """Comparison unit: the exact dot product, rounded once to FP32 (nearest-even).

    A float64 matrix product is exact whenever every partial sum is a
    multiple of the smallest product's last bit below ``2**53`` of them;
    :func:`fp8sim.matmul` checks that bound on the data and uses one BLAS
    product (typical FP8 data); otherwise it falls back to ``math.fsum`` per
    dot product, with the sign of the remainder deciding FP32 ties exactly.

    >>> import fp8sim
    >>> fp8sim.matmul([[1.0, 2.0**-24, 2.0**-40]], [[1.0], [1.0], [2.0**-40]], unit=fp8sim.ExactUnit()).item()
    1.0000001192092896
    """

    name: str = "exact"


@dataclass(frozen=True)
class FMAUnit:
    """Comparison unit: IEEE FP32 fused multiply-add, one term at a time, in order of k.

    ``acc = fma(a_k, b_k, acc)`` rounded to nearest-even in FP32 after each
    term: what a scalar CPU loop computes.

    >>> import fp8sim
    >>> fp8sim.matmul([[2.0**24, 1.0, 1.0]], [[1.0], [1.0], [1.0]], unit=fp8sim.FMAUnit()).item()  # 1 is lost twice
    16777216.0
    """

    name: str = "fp32_fma"


@dataclass(frozen=True)
class SplitFP16Unit:
    """FP8 ``mma.sync`` on Hopper (and, with FP16 output, Blackwell): an emulation on the FP16 path.

    Per block of 32 products (k = 0 ... 31 within the block), with
    ``G1 = {k : k mod 4 in (0, 1)}`` and ``G2 = {k : k mod 4 in (2, 3)}``:
    ``t1 = step(G1 products, C = 0)``, ``t2 = step(G2 products, C = t1)``,
    ``D = round(t2 + C)`` (one nearest-even rounding to ``out_format``,
    overflow to Inf), where ``step`` is the FP16-input unit of the same GPU
    with the same output (16 products, F = 25; each step truncated to FP32,
    or rounded to nearest FP16 for FP16 output; the FP8 inputs are FP16
    values exactly, and their exponents are those of FP16).  Over K, each
    block's D is the next block's C.

    What measured it: FP16 output, every FP16-output row of the H100 and
    B200 E4M3 and E5M2 sets (5000 each, K = 32, with their addend C); FP32
    output, 40,960 outputs of ``mma.sync.m16n8k32`` E4M3 x E4M3 and E5M2 x
    E4M3 on an H100, random operands and C, K = 32 and chained to K = 128
    (``tests/data/h100_mma_sync_fp8.npz``, ``experiments/probe_mma.py``):
    every one bit-exact.  The scalar twin is
    :func:`fp8sim.reference.split_fp16_dot`.

    Parameters
    ----------
    step : BlockFMA
        The FP16-input step of the same GPU: ``tensor_core(gpu, "float16",
        out_format=out_format, instruction="mma.sync")``.
    in_format, b_format : FloatFormat or str
        The FP8 operand formats.
    out_format : FloatFormat or str
        ``"float16"`` (default) or ``"float32"``: the format of the step's
        output and of the final addition of C.
    """

    step: BlockFMA
    in_format: FloatFormat
    b_format: FloatFormat | None = None
    block: int = 32
    name: str = ""
    out_format: FloatFormat = "float16"

    def __post_init__(self):
        object.__setattr__(self, "in_format", get_format(self.in_format))
        object.__setattr__(self, "b_format", self.in_format if self.b_format is None else get_format(self.b_format))
        object.__setattr__(self, "out_format", get_format(self.out_format))
        if not isinstance(self.step, BlockFMA) or self.step.in_format.name != "float16":
            raise ValueError("step must be a BlockFMA with float16 inputs (the FP16 path of the same GPU)")
        if self.out_format.name not in ("float16", "float32"):
            raise ValueError(f"out_format must be 'float16' or 'float32', got {self.out_format.name!r}")
        step_out = "float16" if (self.step.step_format is not None and self.step.step_format.name == "float16") \
            else "float32"
        if step_out != self.out_format.name:
            raise ValueError(f"step rounds to {step_out}, out_format is {self.out_format.name}: they must agree")
        if self.block != 32:
            raise ValueError(f"block must be 32 (two groups of 16 products), got {self.block!r}")

    @property
    def groups(self):
        """(G1, G2): the positions within a 32-product block of each half."""
        return tuple(k for k in range(32) if k % 4 < 2), tuple(k for k in range(32) if k % 4 >= 2)


def split_fp16_chain(a, b, c, unit: SplitFP16Unit, *, paired=False, tile_elems=None) -> np.ndarray:
    """:class:`SplitFP16Unit` chained over K: a (M, K) @ b (K, N) + c (or row-paired, as dot_chain).

    Matrix products run in the k-major layout, one plan and one set of buffers for the whole chain
    (:func:`_split_fp16_kmajor`); row-paired products chain :func:`dot_chain` per group."""
    if not paired:
        return _split_fp16_kmajor(a, b, c, unit, tile_elems)
    g1, g2 = (np.array(g) for g in unit.groups)
    out = np.asarray(c, np.float64)
    K = a.shape[1]
    for k0 in range(0, K, unit.block):
        kb = min(unit.block, K - k0)
        i1, i2 = k0 + g1[g1 < kb], k0 + g2[g2 < kb]
        t1 = _split_group(a, b, np.zeros_like(out), unit, i1, paired, tile_elems)
        t2 = _split_group(a, b, t1, unit, i2, paired, tile_elems)
        out = _split_join(unit, t2, out)
    return out


def _split_group(a, b, cc, unit, idx, paired, tile_elems):
    """One group's FP16-path step of a SplitFP16Unit block over the columns ``idx`` of K, any inputs."""
    if idx.size == 0:
        return np.asarray(cc, np.float64)
    bb = b[:, idx] if paired else b[idx]
    return dot_chain(a[:, idx], bb, cc, unit.step, paired=paired, tile_elems=tile_elems)


def _split_join(unit, t2, c):
    """A SplitFP16Unit block's last operation: ``t2 + C``, one nearest-even rounding to the output."""
    with np.errstate(invalid="ignore", over="ignore"):
        if unit.out_format.name == "float16":
            return quantize(t2 + c, "float16")  # both FP16-grid values: the float64 sum is exact
        return add_fp32_values(t2, c)  # the step's result and the chain state are FP32 values


def _split_fp16_kmajor(a, b, c, unit, tile_elems=None):
    """:func:`split_fp16_chain` for a matrix product: the two group steps of every block through
    :func:`_step_kmajor` with one plan for the FP16-path step over the whole chain; a row tile whose
    operands or state are not all finite takes :func:`dot_chain` (its special-value rules) for that
    block's groups."""
    M, K = a.shape
    N = b.shape[1]
    step = unit.step
    plan = _Plan(step, a, b)
    g1, g2 = (np.array(g) for g in unit.groups)
    half = len(g1)
    rows = max(1, min(M, (KMAJOR_TILE if tile_elems is None else tile_elems) // max(1, N * half)))
    tbuf = np.empty((half, rows, N), plan.dtype)
    ebuf = np.empty((half, rows, N), plan.exp_dtype)
    plan.int_sums = bool((plan.f64 or plan.c_after) and plan.dtype == np.float32)
    zero = np.zeros((rows, N))
    out = np.array(c, np.float64, copy=True)
    # operands prepared per chunk of several blocks, each block's columns in group order (G1, then G2)
    chunk = unit.block * max(1, min(KMAJOR_CHUNK_K, KMAJOR_CHUNK // (M + N)) // unit.block)
    for k0 in range(0, K, unit.block):
        kb = min(unit.block, K - k0)
        groups = [k0 + g for g in (g1[g1 < kb], g2[g2 < kb]) if (g < kb).any()]
        if k0 % chunk == 0:
            c0 = k0
            order = np.concatenate([k + np.concatenate([g[g < min(unit.block, K - k)] for g in (g1, g2)])
                                    for k in range(k0, min(k0 + chunk, K), unit.block)])
            aT_c, eaT_c, bk_c, ebk_c, special_c = _kmajor_operands(plan, a[:, order], b[order])
        ops, j = [], k0 - c0
        for i in groups:
            special = special_c and not (np.isfinite(a[:, i]).all() and np.isfinite(b[i]).all())
            ops.append((aT_c[j:j + len(i)], eaT_c[j:j + len(i)], bk_c[j:j + len(i)], ebk_c[j:j + len(i)], special))
            j += len(i)
        for m0 in range(0, M, rows):
            m1 = min(m0 + rows, M)
            r = m1 - m0
            cm = out[m0:m1]
            t = zero[:r]
            for (aT, eaT, bk, ebk, special), i in zip(ops, groups):
                if special or not np.isfinite(t).all():
                    t = dot_chain(a[m0:m1, i], b[i], t, step, tile_elems=tile_elems)
                else:
                    t = _step_kmajor(plan, aT[:, m0:m1], eaT[:, m0:m1], bk, ebk, t, tbuf[:len(i), :r],
                                     ebuf[:len(i), :r])
            out[m0:m1] = _split_join(unit, t, cm)
    return out


def add_fp32(acc: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``acc + x`` rounded once to nearest-even FP32, for float64 arrays of FP32 values.

    >>> add_fp32(np.array([1.0]), np.array([2.0**-24 + 2.0**-40])).tolist()   # above the midpoint
    [1.0000001192092896]
    """
    with np.errstate(invalid="ignore", over="ignore"):
        s, e = two_sum(acc, x)
        r = s.astype(np.float32).astype(np.float64)  # the FPU rounds to nearest-even once
        d = s - r
        o = r + 2 * d  # the other neighbour when s is a midpoint
        mid = (d != 0) & (o.astype(np.float32).astype(np.float64) == o) & (e != 0) & np.isfinite(s)
        return np.where(mid & ((e > 0) == (d > 0)), o, r)


def add_fp32_values(acc: np.ndarray, x: np.ndarray) -> np.ndarray:
    """:func:`add_fp32` where both operands hold FP32 values (NaN and Inf included): one IEEE float32
    addition, which is the exact sum rounded once to nearest-even (overflow to Inf), as float64.

    >>> add_fp32_values(np.array([1.0]), np.array([2.0**-24])).tolist()   # a tie: to even
    [1.0]
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return (acc.astype(np.float32) + x.astype(np.float32)).astype(np.float64)


def clamped_exponents(x, fmt: FloatFormat, zero_exp=None) -> np.ndarray:
    """The exponent each value of ``x`` brings to a product: ``floor(log2|x|)`` clamped at ``fmt.emin``
    (subnormals), as int64; zeros get ``zero_exp`` when given.

    >>> clamped_exponents(np.array([1.5, 2.0**-9, 0.0]), get_format("e4m3"), zero_exp=-99).tolist()
    [0, -6, -99]
    """
    _, e = np.frexp(x)
    e = np.maximum(e.astype(np.int64) - 1, fmt.emin)
    return e if zero_exp is None else np.where(x == 0, zero_exp, e)


def pow2(e) -> np.ndarray:
    """``2.0**e`` (float64) for integer arrays ``e`` in [-1022, 1023], built from the bit pattern.

    >>> pow2(np.array([-3, 0, 10])).tolist()
    [0.125, 1.0, 1024.0]
    """
    return ((np.asarray(e, np.int64) + 1023) << 52).view(np.float64)


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error-free transformation: ``s + e == a + b`` exactly, ``s = fl(a + b)``
    (Knuth, TAOCP vol. 2, 4.2.2)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def round_pair(hi: ArrayLike, lo: ArrayLike, fmt: FormatLike, rounding: str, overflow: str | None = None) -> np.ndarray:
    """Round the exact value ``hi + lo`` onto ``fmt``, where ``hi = fl64(hi + lo)``.

    Only a ``hi`` on a rounding boundary of ``fmt`` (a midpoint for
    nearest-even, a representable value for toward-zero) can round
    differently from ``hi + lo``; there ``lo``'s sign decides.  Non-finite
    ``hi`` passes through ``quantize``.

    >>> round_pair(1.0 + 2.0**-24, -2.0**-60, "float32", "nearest_even")  # just below a midpoint
    array(1.)
    """
    fmt = get_format(fmt)
    rounding = rounding_mode(rounding).value
    hi = np.asarray(hi, np.float64)
    lo = np.where(np.isfinite(hi), np.asarray(lo, np.float64), 0.0)
    if rounding not in ("nearest_even", "toward_zero"):
        raise ValueError(f"round_pair supports 'nearest_even' and 'toward_zero', got {rounding!r}")
    r = quantize(hi, fmt, rounding, overflow)
    # Only a hi that is a midpoint (nearest-even) or a value (toward zero) of fmt can round
    # differently from hi + lo; such a hi has at most mantissa_bits + 2 significant bits, so its
    # float64 fraction ends in zeros: the few candidates are checked, the rest keep r.
    exact_low = fmt.emin - fmt.mantissa_bits - 1 >= -1022  # fmt's midpoints are float64 normals
    low = np.uint64((1 << max(0, 52 - fmt.mantissa_bits - 1)) - 1 if exact_low else 0)
    cand = (lo != 0) & ((hi.view(np.uint64) & low) == 0)
    if not cand.any():
        return r
    idx = np.flatnonzero(cand)
    h, lo_c = hi.reshape(-1)[idx], lo.reshape(-1)[idx]
    up = quantize(h, fmt, "upward", overflow)
    dn = quantize(h, fmt, "downward", overflow)
    out = np.array(r, dtype=np.float64, copy=True).reshape(-1)
    with np.errstate(invalid="ignore"):
        if rounding == "nearest_even":
            mid = (up != dn) & (h - dn == up - h)
            out[idx] = np.where(mid, np.where(lo_c > 0, up, dn), out[idx])
        else:
            exact = (up == dn) & (h != 0) & (np.signbit(lo_c) != np.signbit(h))
            below = quantize(np.nextafter(h, 0.0), fmt, "toward_zero", overflow)
            out[idx] = np.where(exact, below, out[idx])
    return out.reshape(np.shape(r))


# --- the engine -------------------------------------------------------------

def _exponent_range(x, fmt: FloatFormat) -> tuple[int, int]:
    """(smallest, largest) exponent that x's non-zero finite values bring to a product (clamped at
    fmt.emin as :func:`clamped_exponents`); the format's whole range when ``x`` is None; (0, 0) when
    x holds no such value (every product is zero)."""
    if x is None:
        return fmt.emin, fmt.emax
    lo, hi = np.inf, 0.0
    flat = np.asarray(x).reshape(-1)
    for i in range(0, flat.size, RANGE_CHUNK):  # in chunks: no copy of the whole operand
        v = np.abs(flat[i:i + RANGE_CHUNK])
        v = v[(v != 0) & (v != np.inf) & ~np.isnan(v)]
        if v.size:
            lo, hi = min(lo, v.min()), max(hi, v.max())
    if hi == 0:
        return 0, 0
    lo_hi = clamped_exponents(np.array([lo, hi]), fmt)
    return int(lo_hi[0]), int(lo_hi[1])


#: elements per pass of :func:`_exponent_range`
RANGE_CHUNK = 1 << 18


class _ProductRange:
    """The exponents the products of ``a`` and ``b`` can take (of the formats, or of the data when
    given), and the work types they allow; shared by the NVIDIA engine's plan and CDNA3's fast sums.

    ``lo`` / ``hi``: smallest exponent of a non-zero product / a bound above every product's
    exponent; ``top``: the largest input exponent; ``products32``: float32 holds every product
    exactly (both significands' bits, its lowest bit at or above 2**-149, its value below 2**127);
    a zero input's exponent ``no_exp`` and the exponents' type ``exp_dtype`` (int8 when every
    exponent lies within 28 of zero and ``no_exp = -60`` plus the largest exponent stays below every
    non-zero product's exponent, int16 with ``no_exp = -16000`` otherwise).  A zero product's exponent
    sum must stay below every non-zero product's: the engines take the largest sum of a block as its
    alignment exponent, zeros included (with -60, a zero times 2**27 next to products of 2**-56 once
    set the alignment at 2**-33 and truncated those products).
    """

    def __init__(self, fa: FloatFormat, fb: FloatFormat, a=None, b=None):
        (a_lo, a_hi), (b_lo, b_hi) = _exponent_range(a, fa), _exponent_range(b, fb)
        self.lo, self.hi, self.top = a_lo + b_lo, a_hi + b_hi + 2, max(a_hi, b_hi)
        self.products32 = (fa.mantissa_bits + fb.mantissa_bits + 2 <= 24
                           and self.lo - fa.mantissa_bits - fb.mantissa_bits >= -149
                           and self.hi <= 126)
        narrow = max(-a_lo, a_hi + 1, -b_lo, b_hi + 1) <= 28 and -60 + self.top < self.lo
        self.no_exp = -60 if narrow else -16000
        self.exp_dtype = np.int8 if narrow else np.int16

    def exponents(self, x, fmt):
        """Input exponents clamped at fmt's emin, zeros at no_exp (never the largest)."""
        return clamped_exponents(x, fmt, self.no_exp).astype(self.exp_dtype)

    def exponents32(self, x, fmt):
        """:meth:`exponents` of finite float32 ``x`` for a format with ``fmt.emin >= -126``, from the
        exponent fields: a normal's field less 127 is floor(log2|x|); a float32 subnormal's (field 0,
        below 2**-126) clamps to fmt.emin as its own exponent would."""
        e = x.view(np.int32) >> 23
        e &= 0xFF
        np.maximum(e, fmt.emin + 127, out=e)
        e -= 127
        np.putmask(e, x == 0, self.no_exp)
        return e.astype(self.exp_dtype)


class _Plan:
    """Work types for a unit: float32 terms and int8 exponents where exact, else float64/int16.

    Given the operands (``a``, ``b``), the conditions are checked on the exponents the data holds,
    not on the formats' whole ranges: BF16 or TF32 data of ordinary magnitude gets float32 products
    and int8 exponents, as FP8 does.  (Every condition below is about the products that occur.)
    """

    def __init__(self, unit: BlockFMA, a=None, b=None):
        self.unit = unit
        self.acc_fmt = unit.acc_format
        self.range = pr = _ProductRange(unit.in_format, unit.b_format, a, b)
        self.int_sums = False  # the steps on bits' int32 sums (set by the chain that runs them)
        lo = pr.lo  # smallest exponent of a non-zero product
        # float32 holds every product exactly (_ProductRange.products32), and every scaled, truncated
        # term (a power-of-two multiple of the product, below 2**(F+2)); 2**(F - E) stays a float32
        # normal while products exist
        terms32 = pr.products32 and unit.align_bits - lo <= 127
        # ... and the block sum (< block * 2**(F+2)) too
        small = terms32 and unit.align_bits + 2 + math.ceil(math.log2(unit.block + 1)) <= 24
        self.dtype = np.float32 if terms32 else np.float64  # products and terms
        self.sum_dtype = np.float32 if small else np.float64  # a block's sum of terms
        # exponents of 2**(F - E) that the work type holds; beyond them only all-zero
        # products occur (E set by C alone), which any finite scale keeps zero
        self.shift_range = (-149, 127) if terms32 else (-1074, 1023)
        self.no_exp, self.exp_dtype = pr.no_exp, pr.exp_dtype
        narrow = pr.exp_dtype == np.int8
        self.min_exp = lo
        self.rtz_mask = np.uint64((2**64 - 1) ^ (2 ** (52 - unit.out_frac_bits) - 1))
        # the float32 step (_align_and_sum_f32): chain state in float32, every per-step operation on
        # float32 / int32 bits; it applies to truncating units with C in the alignment
        # a zero input's exponent (no_exp) plus any other stays below every product's: then an entry
        # at or above min_exp + 127 is a real exponent (of a product or of a normal C)
        # (its range conditions keep every result below 2**127, so rz_overflow never applies there)
        bit_step = (unit.c_in_alignment and unit.out_rounding == "toward_zero" and unit.step_format is None
                    # (and C there is normal whenever its exponent is the largest: both
                    # c_subnormal_exponent choices give the same alignment)
                    and self.no_exp + pr.top < lo)
        # ... or, where the float32 sum is not exact, with the block's truncated terms and C's summed as
        # int32 in one chunk of truncated_sum_k (block + 1 <= 2**(29 - F); more chunks measured slower
        # than the float64 step) and the sum truncated onto FP32 through float64 (``f32_int``; its
        # results are FP32 values when the result format is FP32's)
        f32_int = (not small and terms32 and unit.block + 1 <= 2 ** (29 - unit.align_bits)
                   and unit.out_frac_bits <= 23
                   and self.acc_fmt.emax == 127 and self.acc_fmt.emin == -126)
        self.f32 = (small or f32_int) and narrow and bit_step
        self.f32_int = self.f32 and not small
        # the float64 step on bits (_align_and_sum_f64) for the other truncating units, and for
        # f32_int units on a float64 state (a C that is not FP32, the split FP16 path's groups)
        self.f64 = bit_step and (not self.f32 or self.f32_int)
        L = math.ceil(math.log2(unit.block + 1))
        # biased exponents E (= E + 127) for which the float32 step is exact: 2**-(F - E) and
        # 2**(F - E) float32 normals, and the result below 2**128
        self.f32_range = (max(unit.align_bits + 1, lo + 127), 253 - L)
        # ... which no block without a zero input leaves, by the data's range (_f32_in_range), while
        # C stays below 2**f32_cbound
        self.f32_static = lo + 127 >= unit.align_bits + 1 and pr.hi + 125 <= 253 - L
        self.f32_cbound = 127 - L
        self.f32_mask = np.int32(~((1 << (23 - unit.out_frac_bits)) - 1))
        # the step with C outside the alignment (_sum_then_add_c): the products' truncated sum on float32
        # terms, truncated to FP32 by masking and C added with one nearest-even rounding; exact when
        # 2**(F - E) is a float32 normal for every product exponent E, every non-zero sum times
        # 2**(E - F) an FP32 normal (lo - F >= -126) below 2**128 (E below 2**(126 - L)), and a zero
        # input's exponent tells an all-zero block
        self.c_after = (not unit.c_in_alignment and unit.out_rounding == "toward_zero"
                        and unit.c_rounding == "nearest_even" and unit.step_format is None
                        and unit.out_frac_bits == 23 and terms32 and unit.align_bits <= 28
                        and lo - unit.align_bits >= -126 and pr.hi - 2 <= 125 - L
                        and self.no_exp + pr.top < lo)

    def exponents(self, x, fmt):
        """Input exponents clamped at fmt's emin, zeros at no_exp (never the largest)."""
        return self.range.exponents(x, fmt)

    def round_acc(self, v, rounding):
        """Round exact float64 values onto the step's result format (and apply the unit's choices); a
        zero result is +0, also where a negative sum underflows (the bit steps' results are normal or
        +0 by their range conditions)."""
        fmt = self.acc_fmt
        if rounding != "toward_zero":
            return self._choices(quantize(v, fmt, rounding, "infinity"), v, overflow=False) + 0.0
        # truncating the float64 fraction is the rounding, for normal in-range results
        r = (v.view(np.uint64) & self.rtz_mask).view(np.float64)
        a = np.abs(v)
        odd = ((a < fmt.smallest_normal) & (v != 0)) | (a > fmt.max)
        if odd.any():
            r = np.where(odd, quantize(v, fmt, rounding, "infinity"), r)
        return self._choices(r, v) + 0.0  # (-0 + 0 is +0; every other value, NaN included, stays)

    def _choices(self, r, v, overflow=True):
        """The unit's overflow choice: a truncated overflow to Inf (``rz_overflow="inf"``) or left at
        the largest finite value."""
        if overflow and self.unit.rz_overflow == "inf":
            with np.errstate(invalid="ignore"):
                r = np.where(np.abs(v) > self.acc_fmt.max, np.copysign(np.inf, v), r)
        return r


def _step(plan, a, ea, bt, ebt, c):
    """One block FMA for a tile (the classic layout): a (m, 1, k) with bt (1, n, k) or (m, 1, k); c (m, n) finite."""
    E = (ea + ebt).max(axis=2).astype(np.int32) + 127
    terms = a * bt
    return _align_and_sum(plan, E, terms, 2, c)


def _step_kmajor(plan, aT, eaT, b, eb, c, tbuf, ebuf, general=True, formed=False, codes=None):
    """One block FMA for a row tile in the k-major layout: aT (k, r), b (k, n); c (r, n) finite
    (with ``general=False``: any c; the steps on bits alone, ``None`` where they do not apply, and
    ``tbuf`` then still holds the products: ``formed=True`` reuses them).

    The products are formed into ``tbuf`` (k, r, n) and their exponent sums
    into ``ebuf``: each pass runs over long contiguous rows, and the
    reductions over k combine whole (r, n) planes.  With ``codes``
    (``(codeT, code_b, buf)``: :func:`block_exponents23`'s codes of this
    block's exponents and a float64 buffer), the exponent maxima come from
    a float64 matrix product instead.  (Codes made block by block were no
    faster, and BLAS products above OpenBLAS's threshold for threads were
    slower with ``threads=``; the codes are now made once per chunk and
    the products kept below the threshold.)
    """
    full, tbuf = tbuf, tbuf[:aT.shape[0]]  # (f32_int: ``full`` has one plane more, for C)
    if not formed:
        np.einsum("ki,kj->kij", aT, b, out=tbuf)
    if codes is None:
        np.add(eaT[:, :, None], eb[:, None, :], out=ebuf)
        E = np.add(ebuf.max(axis=0), 127, dtype=np.int32)
        E23 = None
    else:
        E23 = block_exponents23(codes[0], codes[1], aT.shape[0], codes[2])[0]
        E = None if c.dtype == np.float32 else np.right_shift(E23, 23)
    if c.dtype == np.float32:
        r = _align_and_sum_f32(plan, np.left_shift(E, 23) if E23 is None else E23, full, c)
        if r is not None or not general:
            return r
        c = c.astype(np.float64)
        if E is None:
            E = np.right_shift(E23, 23)
    elif plan.f64:
        r = _align_and_sum_f64(plan, E, tbuf, c)
        if r is not None or not general:
            return r
    elif not general:
        return None
    elif plan.c_after:
        return _sum_then_add_c(plan, E, tbuf, c)
    return _align_and_sum(plan, E, tbuf, 0, c)


def _sum_then_add_c(plan, E, terms, c):
    """The step of a unit with C outside the alignment (``plan.c_after``): ``E`` biased maximum product
    exponents (r, n), ``terms`` (k, r, n) exact float32 products, ``c`` (r, n) finite FP32 values.

    Each product is scaled onto the grid ``2**(E - F)`` (an all-zero block takes the lowest product
    exponent's scale, which keeps its zeros), truncated and summed exactly (:func:`truncated_sum_k`),
    scaled back (an FP32 normal or zero under ``plan.c_after``'s conditions) and truncated to FP32 by
    masking its float64 fraction; C is then added with one nearest-even rounding (both are FP32 values:
    :func:`add_fp32_values`)."""
    F = plan.unit.align_bits
    Ez = np.maximum(E, np.int32(plan.min_exp + 127))
    shift = np.subtract(F + 127, Ez, out=Ez)
    ts = shift + 127
    ts <<= 23
    terms *= ts.view(np.float32)
    s = truncated_sum_k(terms, F, plan.int_sums)
    np.negative(shift, out=shift)
    np.ldexp(s, shift, out=s)
    bits = s.view(np.uint64)
    bits &= plan.rtz_mask
    return add_fp32_values(s, c)


def _align_and_sum_f32(plan, E23, terms, c, check=True):
    """The step on float32 / int32 bits: ``E23`` biased maximum product exponents (r, n) in float32's
    exponent field (``(E + 127) << 23``), ``terms`` (k, r, n) exact float32 products, ``c`` (r, n)
    float32 chain state, finite.

    With ``Eb = max(E, exponent field of C)`` (C in the alignment; a zero C
    has field 0; both compared in place, as fields), the grid scale
    ``2**(F - E)`` and its inverse are built as float32 bit patterns, terms
    and C are scaled and truncated exactly (the scale is a power of two, the
    results are integers below ``2**24``), and the sum times ``2**(E - F)``
    is a float32 normal (``Eb >= F + 1`` and the sum is an integer) below
    ``2**128``, so masking its low fraction bits truncates it onto the result
    format.  ``None`` when some ``Eb`` lies outside that range (a subnormal
    or huge C, an all-zero block with a zero or tiny C; ``Eb >= min_exp +
    127`` also tells real exponents from those of zero products): the caller
    takes the general step for this tile.  ``check=False``: the caller has
    shown the range holds (:func:`_f32_in_range`).
    """
    Eb = c.view(np.int32) & np.int32(0x7F800000)
    np.maximum(E23, Eb, out=Eb)
    if check:
        lo, hi = plan.f32_range
        if Eb.min() < lo << 23 or Eb.max() > hi << 23:
            return None
    F = plan.unit.align_bits
    # (F + 254 - Eb) << 23, in uint32: the constant does not fit int32, the result does
    scale = np.subtract(np.uint32((F + 254) << 23), Eb.view(np.uint32)).view(np.float32)
    if plan.f32_int:
        return _int_sum_f32(plan, Eb, scale, terms, c)
    terms *= scale
    np.trunc(terms, out=terms)
    s = terms.sum(axis=0, dtype=np.float32)
    ct = c * scale
    np.trunc(ct, out=ct)
    s += ct
    Eb -= np.int32(F << 23)  # 2**(E - F)
    s *= Eb.view(np.float32)
    bits = s.view(np.int32)
    bits &= plan.f32_mask
    return s


def _f32_in_range(plan, aT, eaT, bk, ebk, c):
    """Whether every block of a run (``aT`` (k, r), ``bk`` (k, n) and their exponents: the run's
    products) from the float32 state ``c`` keeps :func:`_align_and_sum_f32`'s range, shown once for
    the run: no zero input (so every block has a non-zero product and ``E >= lo``, with ``lo + 127
    >= F + 1`` and ``hi + 125 <= 253 - L`` by the data, ``plan.f32_static``), and C stays below
    ``2**(127 - L)`` (each step's result is at most ``|C| + sum |p|`` in magnitude: every
    truncation is toward zero), bounded by ``max|C| + k * max|a| * max|b|``, doubled for the
    bound's own rounding.  (With the int8 exponents a float32 plan needs, products stay below
    2**58, so in practice only a C that starts near FP32's top fails the bound.)"""
    if not plan.f32_static or eaT.min(initial=0) <= plan.no_exp or ebk.min(initial=0) <= plan.no_exp:
        return False
    amax, bmax = float(np.abs(aT).max(initial=0.0)), float(np.abs(bk).max(initial=0.0))
    cmax = float(np.abs(c).max(initial=0.0))
    return 2 * (cmax + aT.shape[0] * amax * bmax) < 2.0 ** plan.f32_cbound


def _int_sum_f32(plan, Eb, scale, terms, c):
    """The end of :func:`_align_and_sum_f32` for ``plan.f32_int``: ``terms`` (k + 1, r, n) holds the
    block's k products and a free last plane.  C scaled onto the grid goes into that plane (below
    2**(F + 1), an integer after truncation, like each scaled product below 2**(F + 2)), and
    :func:`truncated_sum_k` sums the k + 1 truncated terms exactly.  The sum (an integer below
    2**31 · block) is truncated to the result's significand by masking its float64 fraction,
    converted to float32 (exact: at most 24 significant bits) and multiplied by ``2**(E - F)``
    (exact: the range conditions keep the result an FP32 normal, and below FP32's largest value,
    or zero)."""
    k = terms.shape[0] - 1
    terms[:k] *= scale
    np.multiply(c, scale, out=terms[k])
    s = truncated_sum_k(terms, plan.unit.align_bits, plan.int_sums)
    bits = s.view(np.uint64)
    bits &= plan.rtz_mask
    r = s.astype(np.float32)
    Eb -= np.int32(plan.unit.align_bits << 23)  # 2**(E - F)
    r *= Eb.view(np.float32)
    return r


def _f32_run(plan, aT_c, eaT_c, bk_c, ebk_c, c, j0, j1, tbuf, ebuf, codes=None):
    """The float32 step (:func:`_align_and_sum_f32`) for the full blocks of a chunk from ``j0`` to ``j1``,
    all rows in one tile, in one loop: the products and exponent maxima of :func:`_step_kmajor` without
    the per-block dispatch of :func:`dot_chain`.  Returns the state and where it stopped: ``j1``, or
    the start of the first block whose range check fails (the caller takes that block through the
    per-block path, from the state before it).  The exponent maxima (which do not depend on the
    state) come for as many blocks at once as ``ebuf`` holds planes for (:data:`RUN_EXP_PLANES`):
    from their int8 sums, or, with ``codes`` (``(codeT, code_b, buf)``, :func:`block_exponents23`'s
    codes of the chunk's exponents for this row tile and a float64 buffer), from matrix products."""
    k = plan.unit.block
    terms = tbuf[:k]
    r, n = c.shape
    check = not _f32_in_range(plan, aT_c[j0:j1], eaT_c[j0:j1], bk_c[j0:j1], ebk_c[j0:j1], c)
    step = k * (ebuf.shape[0] // k)
    for jb in range(j0, j1, step):
        je = min(jb + step, j1)
        if codes is not None:
            E23 = block_exponents23(codes[0][jb:je], codes[1][jb:je], k, codes[2])
        else:
            e = ebuf[:je - jb]
            np.add(eaT_c[jb:je, :, None], ebk_c[jb:je, None, :], out=e)
            E23 = e.reshape(-1, k, r, n).max(axis=1).astype(np.int32)
            E23 += np.int32(127)
            E23 <<= 23
        for i, j in enumerate(range(jb, je, k)):
            np.einsum("ki,kj->kij", aT_c[j:j + k], bk_c[j:j + k], out=terms)
            res = _align_and_sum_f32(plan, E23[i], tbuf, c, check)
            if res is None:
                return c, j
            c = res
    return c, j1


def truncated_sum_k(P, F, ints=True, int32=False):
    """The sum over the leading axis of scaled products ``P`` (k, r, n), each truncated toward zero, as
    float64, exactly.  Each scaled product of a truncated fused sum with F alignment bits lies below
    2**(F + 2) (two significands below 2), so for float32 ``P`` and F <= 28 the conversion to int32
    truncates it to an integer of magnitude at most 2**(F + 2) - 1, and int32 sums of 2**(29 - F) of
    them stay within 2**31 - 1 (the chunks are added in float64); that is faster than truncating in
    place and summing into float64.  The conversion is the int32 reduction's own cast of each element
    (NumPy casts the inputs to the loop's type before adding; measured 8-15% faster than converting
    into a buffer first).  ``ints=False``: truncation in place and a float64 sum.  ``int32=True``:
    where one chunk holds all of P, its int32 sum as it is (the caller converts).

    >>> truncated_sum_k(np.array([[[2.75]], [[-1.5]], [[3.99]]], np.float32), 25)
    array([[4.]])
    >>> truncated_sum_k(np.full((3, 1, 1), 0.75, np.float32), 25)  # (each term truncated: not 2.25 -> 2)
    array([[0.]])
    """
    if not ints or F > 28 or P.dtype != np.float32:
        np.trunc(P, out=P)
        return P.sum(axis=0, dtype=np.float64)
    k = P.shape[0]
    q = 1 << (29 - F)
    s = np.add.reduce(P[:q], axis=0, dtype=np.int32)
    if int32 and k <= q:
        return s
    s = s.astype(np.float64)
    for k0 in range(q, k, q):
        s += np.add.reduce(P[k0:k0 + q], axis=0, dtype=np.int32)
    return s


def matmul64(a, b, macs=1 << 18, out=None):
    """``a @ b`` in float64, in row slices of at most ``macs`` multiply-adds each (below OpenBLAS's
    threshold for threads, so that ``threads=1`` stays one thread); into ``out`` when given."""
    M, k = a.shape
    N = b.shape[1]
    rows = max(1, macs // max(1, k * N))
    if out is None:
        if rows >= M:
            return a @ b
        out = np.empty((M, N))
    for m0 in range(0, M, rows):
        np.matmul(a[m0:m0 + rows], b, out=out[m0:m0 + rows])
    return out


def exponent_code(e, a_side):
    """int8 exponents ``e`` (zeros' ``no_exp`` included) as the float64 powers of two whose matrix
    products give :func:`block_exponents23`: ``2**(8 e - 7)`` for the left operand, ``2**(8 e)``
    for the right (every one a float64 normal: int8 exponents of a plan lie in [-60, 28])."""
    bits = e.astype(np.int64)
    bits *= 8
    bits += 1023 - 7 if a_side else 1023
    bits <<= 52
    return bits.view(np.float64)


def block_exponents23(codeT, code_b, k, buf):
    """The largest exponent sum ``E = max(e_a + e_b)`` over each block of ``k`` products, for every
    (row, column), as float32's biased exponent field ``(E + 127) << 23`` (int32, (blocks, r, n)):
    from ``codeT`` (blocks * k, r) and ``code_b`` (blocks * k, n), :func:`exponent_code` of the
    k-major exponents, by one float64 matrix product per block into ``buf`` (float64, at least
    (blocks, r, n)).

    The product's sum over a block is ``sum 2**(8 (e_a + e_b) - 7)``: at least its largest term
    ``2**(8 (E + 127) - 1023)`` and below ``k`` times it (k <= 128, BLAS's rounding of positive
    terms included), so its float64 exponent field is ``8 (E + 127) + d`` with ``0 <= d < 8``, and the
    high word's bits 23 to 30 hold ``E + 127`` (in [7, 183] for int8 exponents): one mask.  It is
    the maximum the int8 sums give (:func:`_f32_run`'s other path), zeros' ``no_exp`` included, with
    fewer passes over (r, n) planes (the gain measured: the README's speed section)."""
    nb = codeT.shape[0] // k
    r, n = codeT.shape[1], code_b.shape[1]
    A = codeT.reshape(nb, k, r)
    B = code_b.reshape(nb, k, n)
    s = buf[:nb, :r, :n]
    for i in range(nb):
        matmul64(A[i].T, B[i], out=s[i])
    return np.bitwise_and(s.view(np.int32)[..., 1::2], np.int32(0x7F800000))


class ExactBlocks:
    """The common part of the engines' exact tiers (:class:`fp8sim.cdna._ExactSums` for CDNA3,
    :func:`_exact_f64_step` for NVIDIA's truncated fused sums): per (row, column) of a block, where
    every product lies on the grid the unit truncates onto and C within bounds of the products, a
    step's truncations lose nothing and its sum is the exact ``S + C``, S the block's product sum by one
    float64 matrix product (exact whatever the order of its additions: every partial sum lies on the
    products' grid and spans fewer than 53 bits).

    Two more float64 matrix products give, per element, ``e_dot``, the products' largest exponent
    (inputs' exponents clamped at emin as the units read them, zero products left out), from the sum
    of ``2**(8 (e_a + e_b))`` (at most 32 powers of two, so the sum's binade over 8 is the largest's;
    no product: a zero sum, -128), and ``Lb``, the finest grid any product lies on (``2**(e_a - m_a +
    e_b - m_b)``, m the formats' fraction bits), from the same sum over ``2**(-8 (e - m))`` (no
    product: 128).  An element meets the bounds where ``e_dot - Lb <= a_lim`` (``cert``) and C is zero
    or ``e_dot + d_lo <= e_C <= Lb + d_hi``; each engine derives its ``a_lim``, ``d_lo`` and ``d_hi``
    and finishes the step.  The exponents must be int8 (within 28 binades of 1, so the powers of 256
    stay float64 normals).  A tile-step with more than ``max_bad`` of its elements failing, or more
    than ``max_gen`` off the grid, is left to the engine's own step, and the tier retries after 2,
    4, ... ``RETRY`` blocks.
    """

    RETRY = 64

    def __init__(self, fa, fb, no_exp, a_lim, d_lo, d_hi, max_bad=1 / 3, max_gen=1 / 64):
        self.ma, self.mb, self.no_exp = fa.mantissa_bits, fb.mantissa_bits, no_exp
        self.a_lim, self.d_lo, self.d_hi, self.max_bad, self.max_gen = a_lim, d_lo, d_hi, max_bad, max_gen
        self.skip, self.retry = 0, 1

    def prepare(self, aT, bk, eaT, ebk):
        """A chunk's operands and int8 exponents, k-major ((k, M) and (k, N); zeros at ``no_exp``):
        kept for the elements that fail a condition, and each exponent e as the float64 ``2**(8 e)``
        and ``2**(-8 (e - m))`` (0 for a zero input), whose matrix products give ``e_dot`` and ``Lb``."""
        self.aT, self.bk, self.eaT, self.ebk = aT, bk, eaT, ebk
        self.encT = None  # built by the chunk's first check that runs

    def _encode(self):
        no = self.no_exp

        def enc(e, sign, m):  # 2**(8 sign (e - m)) as float64 (0 for a zero input)
            return np.where(e == no, 0.0, (((e.astype(np.int64) - m) * (8 * sign) + 1023) << 52).view(np.float64))

        self.encT, self.enc_b = enc(self.eaT, 1, 0), enc(self.ebk, 1, 0)
        self.lsbT, self.lsb_b = enc(self.eaT, -1, self.ma), enc(self.ebk, -1, self.mb)

    def check(self, ab, bb, j, m0, m1, c):
        """For the block ``ab`` (M, k) x ``bb`` (k, N) at ``j`` in the chunk, rows m0:m1, state ``c``
        (finite): ``(S, E, cert, bad, cs)`` -- the exact block sums, ``e_dot``, where the products lie
        on the grid, the flat indices of the elements that fail a bound (a zero C meets them where
        ``cert`` holds) and their C -- or None (the engine's own step takes the tile-step)."""
        if self.skip > 0:
            self.skip -= 1
            return None
        if self.encT is None:
            self._encode()
        sl = slice(j, j + ab.shape[1])
        E = matmul64(self.encT[sl, m0:m1].T, self.enc_b[sl]).view(np.int64) >> 52
        E -= 1023
        E >>= 3
        L = matmul64(self.lsbT[sl, m0:m1].T, self.lsb_b[sl]).view(np.int64) >> 52
        L -= 1023
        L >>= 3  # -Lb
        cert = np.add(E, L) <= self.a_lim
        if cert.size - np.count_nonzero(cert) > cert.size * self.max_gen:
            return self._back_off()
        # the bounds on |C|: 2**(e_dot + d_lo) <= |C| < 2**(Lb + d_hi + 1), as float64 bit patterns
        ac = np.abs(c)
        pw = E + (self.d_lo + 1023)
        pw <<= 52
        ok = ac >= pw.view(np.float64)
        np.subtract(self.d_hi + 1 + 1023, L, out=L)
        L <<= 52
        ok &= ac < L.view(np.float64)
        ok &= cert
        bad = np.flatnonzero(~ok)
        cs = c.reshape(-1)[bad]  # the C of the elements that fail a condition (a copy)
        if not np.isfinite(cs).all():  # (a non-finite C fails the bound above)
            return None
        if bad.size:
            # a zero C fails the bound on |C| but needs none: x = S where the products are on the grid
            keep = ~(cert.reshape(-1)[bad] & (cs == 0))
            bad, cs = bad[keep], cs[keep]
        if bad.size > ok.size * self.max_bad:
            return self._back_off()
        self.retry = 1
        S = matmul64(np.asarray(ab[m0:m1], np.float64), np.asarray(bb, np.float64))
        return S, E, cert, bad, cs

    def _back_off(self):
        """Retry after 2, 4, ... RETRY blocks while the tile-steps keep failing."""
        self.retry = min(2 * self.retry, self.RETRY)
        self.skip = self.retry


def _exact_tier(plan):
    """The exact tier (:class:`ExactBlocks`) of a unit with a float64 chain state on the bit steps
    (``plan.f64`` without the float32 state: C in the alignment, truncation toward zero), or None.

    Every term (products and C) is truncated onto ``2**(E - F)``, ``E = max(e_dot, e_C)``; where
    ``e_dot - Lb <= F`` and C is zero or ``e_dot + 23 - F <= e_C <= Lb + F`` (F >= 23), every product
    and C lie on that grid (C's last bit is ``2**(e_C - 23)``), so the truncated sum is the exact
    ``x = S + C`` (at most F + g + 2 bits, exact in float64), and its truncation onto the result's
    ``out_frac_bits`` is the float64 fraction masked: every non-zero ``|x|`` lies within FP32's
    normal range by the data's exponent range (checked here: ``lo - F >= -126``, ``hi + F < 127``), so
    neither the subnormal rules nor ``rz_overflow`` apply.  A zero result is +0.  Tried on FP8, FP6,
    FP4 and BF16 products (at most F - 8 fraction bits), blocks of at most 32, int8 exponents."""
    unit, pr = plan.unit, plan.range
    F = unit.align_bits
    g = 2 + math.ceil(math.log2(unit.block))
    if not (plan.f64 and not plan.f32 and plan.dtype == np.float32 and plan.exp_dtype == np.int8
            and F >= 23 and F + g + 2 <= 53 and unit.block <= 32
            and unit.in_format.mantissa_bits + unit.b_format.mantissa_bits <= F - 8
            and plan.acc_fmt.emax == 127 and plan.acc_fmt.emin == -126
            and pr.lo - F >= -126 and pr.hi + F + 1 <= 126):
        return None
    return ExactBlocks(unit.in_format, unit.b_format, pr.no_exp, F, 23 - F, F, max_bad=1 / 8)


def _exact_f64_step(tier, plan, a_blk, b_blk, j, m0, m1, c):
    """One block for rows m0:m1 through the exact tier (:func:`_exact_tier`): a new (rows, N) state,
    or None (the bit steps take the tile-step).  The elements that fail a bound take the general step
    (:func:`_step`) on their gathered (row, column) pairs."""
    chk = tier.check(a_blk, b_blk, j, m0, m1, c)
    if chk is None:
        return None
    S, _, _, bad, cs = chk
    x = np.add(S, c, out=S)
    bits = x.view(np.uint64)
    bits &= plan.rtz_mask
    x += 0.0  # a zero result is +0
    if bad.size:
        sl = slice(j, j + a_blk.shape[1])
        ii, jj = np.divmod(bad, x.shape[1])
        ii += m0
        a3, ea3 = (v[sl][:, ii].T[:, None, :] for v in (tier.aT, tier.eaT))
        b3, eb3 = (v[sl][:, jj].T[:, None, :] for v in (tier.bk, tier.ebk))
        x.reshape(-1)[bad] = _step(plan, a3, ea3, b3, eb3, cs[:, None])[:, 0]
    return x


def _align_and_sum_f64(plan, E, terms, c):
    """:func:`_align_and_sum_f32` with a float64 chain state and float64 sums (terms in float32 or
    float64): the same range conditions, the scales built as float64 (or float32) bit patterns, the
    result truncated by masking float64 fraction bits.  ``None`` hands the tile to the general step."""
    cf = (c.view(np.int64) >> 52).astype(np.int32)
    cf &= 0x7FF
    cf -= 1023 - 127  # biased like E; a zero C far below every product
    Eb = np.maximum(E, cf, out=cf)
    lo, hi = plan.f32_range
    if Eb.min() < lo or Eb.max() > hi:
        return None
    shift = np.subtract(plan.unit.align_bits + 127, Eb, out=Eb)  # F - E, within (-126, 127)
    if terms.dtype == np.float32:
        ts = shift + 127
        ts <<= 23
        terms *= ts.view(np.float32)
    else:
        terms *= pow2(shift)
    s = truncated_sum_k(terms, plan.unit.align_bits, plan.int_sums)
    # (ldexp with int32 exponents: powers of two applied exactly, no float64 scale arrays built)
    ct = np.ldexp(c, shift)
    np.trunc(ct, out=ct)
    s += ct
    np.negative(shift, out=shift)
    np.ldexp(s, shift, out=s)
    bits = s.view(np.uint64)
    bits &= plan.rtz_mask
    return s


def _align_and_sum(plan, E, terms, axis, c):
    """Steps 2-4 of the module notes, given the products' largest exponents ``E`` and the
    exact products ``terms`` (overwritten) with k along ``axis``."""
    unit = plan.unit
    E = E - 127
    live = E >= plan.min_exp
    if unit.c_in_alignment:
        _, ec = np.frexp(c)
        nz = c != 0
        if unit.c_subnormal_exponent == "emin":  # a subnormal C aligns at the format's minimum normal exponent
            ec = np.maximum(ec, plan.acc_fmt.emin + 1)
        E = np.where(nz, np.where(live, np.maximum(E, ec - 1), ec - 1), E)
        live |= nz
    E = np.where(live, E, 0)
    shift = unit.align_bits - E
    scale = np.ldexp(plan.dtype(1), np.clip(shift, *plan.shift_range)).astype(plan.dtype)
    terms *= np.expand_dims(scale, axis)
    np.trunc(terms, out=terms)
    s = terms.sum(axis=axis, dtype=plan.sum_dtype).astype(np.float64, copy=False)
    inv = np.ldexp(1.0, -shift)
    if unit.c_in_alignment:
        s += np.trunc(c * np.ldexp(1.0, shift))
    r = plan.round_acc(s * inv, unit.out_rounding)
    if unit.c_in_alignment:
        return r
    hi, lo = two_sum(r, c)
    return plan._choices(round_pair(hi, lo, plan.acc_fmt, unit.c_rounding, "infinity"), hi,
                         overflow=unit.c_rounding == "toward_zero")


def _special_counts(a, bt, paired=False):
    """Per (m, n): any NaN product, +Inf product, -Inf product of a (m, k) @ bt.T
    (``paired``: of the row-wise products of a and bt, as (m, 1))."""
    fa, fb = np.isfinite(a), np.isfinite(bt)
    if fa.all() and fb.all():
        return None
    if paired:
        with np.errstate(invalid="ignore"):
            p = a * bt
            nan = np.isnan(p).any(axis=1, keepdims=True)
        return nan, (p == np.inf).any(axis=1, keepdims=True), (p == -np.inf).any(axis=1, keepdims=True)
    f = np.float64
    nan_a, nan_b = np.isnan(a).astype(f), np.isnan(bt).astype(f)
    zero_a, zero_b = (a == 0).astype(f), (bt == 0).astype(f)
    pinf_a, ninf_a = (a == np.inf).astype(f), (a == -np.inf).astype(f)
    pinf_b, ninf_b = (bt == np.inf).astype(f), (bt == -np.inf).astype(f)
    inf_a, inf_b = pinf_a + ninf_a, pinf_b + ninf_b
    nan = nan_a @ np.ones_like(bt.T) + np.ones_like(a) @ nan_b.T + inf_a @ zero_b.T + zero_a @ inf_b.T
    pos_a = ((a > 0) & (a < np.inf)).astype(f)
    neg_a = ((a < 0) & (a > -np.inf)).astype(f)
    pos_b = ((bt > 0) & (bt < np.inf)).astype(f)
    neg_b = ((bt < 0) & (bt > -np.inf)).astype(f)
    pinf = pinf_a @ (pos_b + pinf_b).T + ninf_a @ (neg_b + ninf_b).T + pos_a @ pinf_b.T + neg_a @ ninf_b.T
    ninf = pinf_a @ (neg_b + ninf_b).T + ninf_a @ (pos_b + pinf_b).T + pos_a @ ninf_b.T + neg_a @ pinf_b.T
    return nan > 0, pinf > 0, ninf > 0


def _with_specials(res, cm, a_blk, b_blk, paired):
    """A step's result ``res`` over a tile whose inputs or C ``cm`` hold a non-finite value: C's specials
    kept, the special products' Inf / NaN applied."""
    cm64 = cm.astype(np.float64)
    counts = _special_counts(a_blk, b_blk, paired)
    if counts is None:
        counts = (np.zeros(res.shape, bool),) * 3
    return _apply_specials(np.where(np.isfinite(cm64), res, cm64), cm64, counts)


def _apply_specials(result, c, counts):
    """Combine a step's finite result with its special products and C."""
    nan, pinf, ninf = counts
    pinf = pinf | (c == np.inf)
    ninf = ninf | (c == -np.inf)
    out = np.where(pinf, np.inf, np.where(ninf, -np.inf, result))
    return np.where(nan | np.isnan(c) | (pinf & ninf), np.nan, out)


#: products per row tile of the k-major engine: block * rows * N close to this (a few MB, cache-sized)
KMAJOR_TILE = 1 << 19
#: and at most this many (row, column) elements per tile (rows * N), which keeps the per-step state
#: work cache-sized for small blocks: blocks of 4 and 8 measured 5-15% faster with it than with
#: KMAJOR_TILE alone (M = N = 256, K = 1024, timed interleaved in one process with the bound
#: lifted; the README's speed section); blocks of 32 unchanged
KMAJOR_PLANE = 1 << 14
#: the k-major engine prepares its operands for at most KMAJOR_CHUNK_K elements of K at a time, and at
#: most about KMAJOR_CHUNK values of both operands together (at least one block)
KMAJOR_CHUNK_K = 128
KMAJOR_CHUNK = 1 << 20
#: the float32 runs (and CDNA3's) add the exponents of up to this many products per (row, column) in
#: one pass and take the blocks' maxima from it: blocks of 4 and 8 measured 3-7% faster with 32 than
#: one block at a time (128 x 128 x 2048, alternating processes against the commit before, ratio to
#: the H100 unit: A100 TF32 0.57-0.60 -> 0.63-0.64, V100 FP16 0.61-0.62 -> 0.65-0.66, A100 BF16
#: 0.74-0.77 -> 0.78-0.79, MI300X BF16 0.70-0.71 -> 0.72-0.73)
RUN_EXP_PLANES = 32
#: the float32 runs (and CDNA3's) of units with blocks of at least this many products find the exponent
#: maxima by float64 matrix products (:func:`block_exponents23`) rather than from int8 sums; blocks of 4
#: measured no faster with them (the README's speed section)
CODED_EXP_BLOCK = 8


def _kmajor_operands(plan, a, b):
    """A chunk of K for the k-major engine: a (M, k) and b (k, N) as (aT, eaT, bk, ebk, special), the
    finite values (non-finite ones as 0) in the plan's work type and their exponents, k-major and
    contiguous; ``special``: whether the chunk holds a non-finite value."""
    unit, dt = plan.unit, plan.dtype
    if dt == np.float32 and min(unit.in_format.emin, unit.b_format.emin) >= -126:
        # float32 work: convert first (the transposed copy then moves half the bytes) and read the
        # exponents from the float32 fields; a non-finite value (or one beyond float32, which the plan's
        # range excludes) takes the general preparation below
        aT = np.ascontiguousarray(a.astype(np.float32).T)
        bk = b.astype(np.float32)
        if np.isfinite(aT).all() and np.isfinite(bk).all():
            pr = plan.range
            return aT, pr.exponents32(aT, unit.in_format), bk, pr.exponents32(bk, unit.b_format), False
    special = not (np.isfinite(a).all() and np.isfinite(b).all())
    if special:
        a = np.where(np.isfinite(a), a, 0.0)
        b = np.where(np.isfinite(b), b, 0.0)
    aT = np.ascontiguousarray(a.T)
    bk = np.ascontiguousarray(b)
    eaT, ebk = plan.exponents(aT, unit.in_format), plan.exponents(bk, unit.b_format)
    return aT.astype(dt, copy=False), eaT, bk.astype(dt, copy=False), ebk, special


def dot_chain(a: np.ndarray, b: np.ndarray, c: np.ndarray, unit: BlockFMA, *, tile_elems: int | None = None,
              paired: bool = False, engine: str = "kmajor") -> np.ndarray:
    """Chain ``unit`` over all of K: a (M, K) @ b (K, N) + c (M, N), finite or not.

    ``paired=True``: b is (M, K) and row i of a meets row i of b only
    (M independent dot products; c and the result are (M, 1)).  The caller
    has checked the inputs.  The only Python loops are over blocks of K and
    over row tiles; each step works on at most about ``tile_elems`` products
    and copies only its own block of the inputs, so memory does not grow
    with K.

    ``engine``: ``"kmajor"`` (default for matrix products) lays each row
    tile's products out as (k, rows, N) and reduces over the leading axis;
    ``"classic"`` (the engine of fp8sim 0.1, used for ``paired``) lays them
    out as (rows, N, k).  Both compute the same bits; the tests compare
    them with each other and with :func:`fp8sim.reference.block_fma_dot`.
    """
    if tile_elems is None:
        tile_elems = KMAJOR_TILE if engine == "kmajor" and not paired else 1 << 21
    if isinstance(tile_elems, (bool, np.bool_)) or not isinstance(tile_elems, (int, np.integer)) or tile_elems < 1:
        raise ValueError(f"tile_elems must be a positive integer, got {tile_elems!r}")
    if engine not in ("kmajor", "classic"):
        raise ValueError(f"engine must be 'kmajor' or 'classic', got {engine!r}")
    M, K = a.shape
    N = 1 if paired else b.shape[1]
    plan = _Plan(unit, a, b)
    dt = plan.dtype
    kmajor = engine == "kmajor" and not paired
    # the chain state: float32 where the float32 step applies and C is FP32 (it always is after a step)
    state_f32 = kmajor and plan.f32
    out = np.array(c, dtype=np.float32 if state_f32 else np.float64, copy=True)
    if state_f32 and not np.array_equal(out.astype(np.float64), c, equal_nan=True):
        out, state_f32 = np.array(c, dtype=np.float64, copy=True), False
    rows = max(1, min(M, tile_elems // max(1, N * unit.block)))
    if kmajor:
        rows = max(1, min(rows, KMAJOR_PLANE // max(1, N)))
    cplane = int(state_f32 and plan.f32_int)  # the float32 step's plane for C in int32 sums
    if kmajor:
        tbuf = np.empty((unit.block + cplane, rows, N), dt)
        # (the float32 runs find the exponent maxima of several blocks at once)
        ebuf = np.empty((unit.block * max(1, RUN_EXP_PLANES // unit.block), rows, N), plan.exp_dtype)
        # the steps on bits sum their truncated terms in int32
        plan.int_sums = bool((plan.f64 or plan.c_after or plan.f32_int) and dt == np.float32)
    # the k-major engine prepares its operands (finite values in the work type, exponents, k-major
    # copies) for a chunk of several blocks at once: fewer, larger passes than one per block
    chunk = unit.block
    if kmajor:
        chunk = unit.block * max(1, min(KMAJOR_CHUNK_K, KMAJOR_CHUNK // (M + N)) // unit.block)
    # the float32 step: each row tile runs through a chunk's full blocks in one loop (_f32_run)
    run = kmajor and state_f32 and (plan.f32_int or plan.sum_dtype == np.float32)
    # with int8 exponents and blocks of CODED_EXP_BLOCK or more, the exponent maxima from matrix products
    coded = kmajor and plan.exp_dtype == np.int8 and unit.block >= CODED_EXP_BLOCK
    if coded:
        cbuf = np.empty((ebuf.shape[0] // unit.block, rows, N))
    tier = _exact_tier(plan) if kmajor and not state_f32 else None

    def put(m0, m1, res, bits):
        # a step on bits over every row gives a new array of the state's type: it becomes the state
        nonlocal out
        if bits and m1 - m0 == M:
            out = res
        else:
            out[m0:m1] = res

    def kmajor_step(k0, m0, m1):
        """One block (from k0, in the current chunk) for the row tile m0:m1, into the state."""
        k1 = min(k0 + unit.block, K)
        kb, j, r, cm = k1 - k0, k0 % chunk, m1 - m0, out[m0:m1]
        if tier is not None and not special_c:
            res = _exact_f64_step(tier, plan, a[:, k0:k1], b[k0:k1], j, m0, m1, cm)
            if res is not None:
                return put(m0, m1, res, True)
        a_t, b_blk = a[m0:m1, k0:k1], b[k0:k1].T
        special = special_c and not (np.isfinite(a_t).all() and np.isfinite(b_blk).all())
        args = (plan, aT_c[j:j + kb, m0:m1], eaT_c[j:j + kb, m0:m1], bk_c[j:j + kb], ebk_c[j:j + kb])
        codes = (codeT_c[j:j + kb, m0:m1], code_b_c[j:j + kb], cbuf) if coded else None
        # the steps on bits first, on the state as it is: a non-finite C lies outside their range
        try_bits = not special and (plan.f64 or (plan.f32 and state_f32))
        res = (_step_kmajor(*args, cm, tbuf[:kb + cplane, :r], ebuf[:kb, :r], general=False, codes=codes)
               if try_bits else None)
        if res is not None:
            return put(m0, m1, res, True)
        plain = not special and np.isfinite(cm).all()
        res = _step_kmajor(*args, cm if plain else np.where(np.isfinite(cm), cm, 0).astype(np.float64),
                           tbuf[:kb + cplane, :r], ebuf[:kb, :r], formed=try_bits, codes=codes)
        if not plain:
            res = _with_specials(res, cm, a_t, b_blk, False)
        put(m0, m1, res, False)

    done = 0
    for k0 in range(0, K, unit.block):
        if k0 < done:
            continue
        k1 = min(k0 + unit.block, K)
        kb = k1 - k0
        if kmajor:
            if k0 % chunk == 0:  # (k, M) and (k, N) for the chunk, contiguous along the long axis
                c1 = min(k0 + chunk, K)
                aT_c, eaT_c, bk_c, ebk_c, special_c = _kmajor_operands(plan, a[:, k0:c1], b[k0:c1])
                if coded:
                    codeT_c, code_b_c = exponent_code(eaT_c, True), exponent_code(ebk_c, False)
                if tier is not None and not special_c:
                    tier.prepare(aT_c, bk_c, eaT_c, ebk_c)
            j = k0 % chunk
            if run and not special_c and kb == unit.block:
                jf = j + (min(aT_c.shape[0] - j, K - k0) // unit.block) * unit.block  # the chunk's full blocks
                for m0 in range(0, M, rows):
                    m1, jj = min(m0 + rows, M), j
                    r = m1 - m0
                    while jj < jf:
                        res, stop = _f32_run(plan, aT_c[:, m0:m1], eaT_c[:, m0:m1], bk_c, ebk_c, out[m0:m1],
                                             jj, jf, tbuf[:, :r], ebuf[:, :r],
                                             (codeT_c[:, m0:m1], code_b_c, cbuf) if coded else None)
                        put(m0, m1, res, True)
                        if stop < jf:  # a range check failed: that block takes the per-block path
                            kmajor_step(k0 + stop - j, m0, m1)
                            stop += unit.block
                        jj = stop
                done = k0 + jf - j
                continue
            for m0 in range(0, M, rows):
                kmajor_step(k0, m0, min(m0 + rows, M))
            continue
        a_blk = a[:, k0:k1]
        b_blk = b[:, k0:k1] if paired else b[k0:k1].T  # (rows or N, k)
        special = not (np.isfinite(a_blk).all() and np.isfinite(b_blk).all())
        if special:
            a_fin = np.where(np.isfinite(a_blk), a_blk, 0.0)
            b_fin = np.where(np.isfinite(b_blk), b_blk, 0.0)
        else:
            a_fin, b_fin = a_blk, b_blk
        ea, eb = plan.exponents(a_fin, unit.in_format), plan.exponents(b_fin, unit.b_format)
        a_fin, b_fin = a_fin.astype(dt), b_fin.astype(dt)
        for m0 in range(0, M, rows):
            m1 = min(m0 + rows, M)
            cm = out[m0:m1]
            plain = not special and np.isfinite(cm).all()
            if paired:
                b3, eb3 = b_fin[m0:m1, None, :], eb[m0:m1, None, :]
            else:
                b3, eb3 = b_fin[None], eb[None]
            res = _step(plan, a_fin[m0:m1, None, :], ea[m0:m1, None, :], b3, eb3,
                        cm if plain else np.where(np.isfinite(cm), cm, 0.0))
            if not plain:
                res = _with_specials(res, cm, a_blk[m0:m1], b_blk[m0:m1] if paired else b_blk, paired)
            out[m0:m1] = res
    return out.astype(np.float64, copy=False)
