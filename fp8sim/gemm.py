"""Matrix products through a simulated unit: :func:`matmul`.

``matmul(a, b, c, unit=..., promote_every=...)`` computes ``a @ b + c``
as the unit would: a tensor-core :class:`~fp8sim.accumulate.BlockFMA`
chained over K, optionally with CUDA-core promotion (DeepSeek-V3, arXiv
2412.19437, section 3.3.2: the chain restarts every ``promote_every``
elements of K and each partial result is added into an FP32 accumulator
with round-to-nearest-even), or one of the comparison units
(:class:`~fp8sim.accumulate.ExactUnit`, :class:`~fp8sim.accumulate.FMAUnit`).
"""

from __future__ import annotations

import math

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .accumulate import (BlockFMA, ExactUnit, FMAUnit, SplitFP16Unit, add_fp32, dot_chain, round_pair,  # noqa: F401
                         split_fp16_chain, two_sum)
from .cdna import ExactBlockUnit, FloorSumUnit, FTZUnit, cdna_chain
from .formats import FormatLike, check_bool, get_format
from .hardware import tensor_core
from .rounding import as_float64, quantize, to_array

if TYPE_CHECKING:  # scaling imports gemm's neighbours; only for the annotations
    from .scaling import ScaledTensor

#: what a ``unit`` argument accepts: a unit object or a unit string ("H100:e4m3", "exact", "fp32_fma")
Unit = BlockFMA | ExactUnit | FMAUnit | SplitFP16Unit | str

__all__ = ["Unit", "matmul", "dot_rows", "scaled_matmul", "resolve_unit", "add_fp32", "thread_count", "THREAD_MIN_MACS"]

FP32 = get_format("float32")
AMD_UNITS = (ExactBlockUnit, FTZUnit, FloorSumUnit)


def resolve_unit(unit: Unit) -> BlockFMA | ExactUnit | FMAUnit:
    """A unit object from a unit or a string: ``"H100:e4m3"``, ``"H100:e5m2,e4m3"``
    (mixed operands), ``"B200:e4m3@mma.sync"`` (an instruction other than the
    GPU's default), ``"exact"``, ``"fp32_fma"``.

    >>> resolve_unit("H100:e5m2").block, resolve_unit("B200:e4m3@mma.sync").c_in_alignment
    (32, False)
    """
    from .blockscale import BlockScaledFMA, GroupScaledFMA

    if isinstance(unit, (BlockFMA, ExactUnit, FMAUnit, SplitFP16Unit, BlockScaledFMA, GroupScaledFMA, *AMD_UNITS)):
        return unit
    if isinstance(unit, str):
        if unit.strip().lower() == "exact":
            return ExactUnit()
        if unit.strip().lower() == "fp32_fma":
            return FMAUnit()
        if ":" in unit:
            gpu, fmts = unit.split(":", 1)
            fmts, _, instr = fmts.partition("@")
            fa, _, fb = fmts.partition(",")
            return tensor_core(gpu, fa.strip(), b_format=fb.strip() or None, instruction=instr.strip() or None)
    raise ValueError(f"unit must be a BlockFMA, ExactUnit, FMAUnit, 'GPU:format[,b_format][@instruction]', 'exact' "
                     f"or 'fp32_fma'; got {unit!r}")


def _operand(x, name, fmt, quantize_inputs):
    v, inexact = as_float64(x, name)
    if inexact is not None:
        raise ValueError(f"{name} holds values float64 cannot hold exactly")
    if quantize_inputs:
        return quantize(v, fmt)
    flat = v.reshape(-1)
    n_bad, first = 0, []
    for i in range(0, flat.size, 1 << 18):  # bounded temporaries
        x = flat[i:i + (1 << 18)]
        q = quantize(x, fmt, overflow="infinity" if fmt.has_inf else None)
        bad = ~((q == x) | (np.isnan(q) & np.isnan(x)))
        if not fmt.has_inf:
            bad |= np.isinf(x)
        n_bad += int(bad.sum())
        first += x[bad][: 3 - len(first)].tolist()
    if n_bad:
        raise ValueError(
            f"{name}: {n_bad} of {v.size} values are not representable in {fmt.name or fmt!r} "
            f"(first: {first}); pass quantize_inputs=True to round them"
        )
    return v


def matmul(
    a: ArrayLike,
    b: ArrayLike,
    c: ArrayLike | None = None,
    *,
    unit: Unit,
    promote_every: int | None = None,
    quantize_inputs: bool = False,
    out_format: FormatLike | None = None,
    tile_elems: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """``a @ b + c`` as a simulated unit computes it.

    Parameters
    ----------
    a, b : array_like
        (M, K) and (K, N) real values (float arrays or ml_dtypes arrays),
        exactly representable in the unit's input format (FP32 for the
        comparison units) unless ``quantize_inputs``.
    c : array_like, optional
        FP32 addend, broadcast to (M, N); default zero.
    unit : BlockFMA, ExactUnit, FMAUnit or str
        For example ``fp8sim.hardware.tensor_core("H100", "e4m3")`` or the
        string ``"H100:e4m3"``; ``"exact"``; ``"fp32_fma"``.
    promote_every : int, optional
        CUDA-core promotion: restart the unit's chain every
        ``promote_every`` elements of K (a multiple of the unit's block) and
        add each partial result into an FP32 accumulator (initialised with
        ``c``) with nearest-even rounding.  ``None``: one chain over all of K.
    quantize_inputs : bool
        Round ``a`` and ``b`` to the input format (nearest-even, the
        format's overflow convention) instead of rejecting them.
    out_format : str, optional
        Round the result once more, to nearest-even in this format (the
        tensor cores' FP16-output mode: ``"float16"``, with ``c`` in FP16
        and a unit from ``tensor_core(..., out_format="float16")``).
    tile_elems : int, optional
        Bound on the 3-D working set (products per tile); memory does not
        grow with K.  Default: ``fp8sim.accumulate.KMAJOR_TILE``.
    threads : int, optional
        Threads that share the rows (``None``: the cores this process may
        use, for products of at least ``THREAD_MIN_MACS`` MACs).  Rows are
        independent, so the result is bit-identical to one thread.

    Returns
    -------
    numpy.ndarray
        (M, N) float64 holding FP32 values (the unit's output), or values
        of ``out_format``.

    Examples
    --------
    >>> import numpy as np, fp8sim
    >>> a = np.full((1, 4096), 0.5); b = np.full((4096, 1), 1.125)
    >>> fp8sim.matmul(a, b, unit="H100:e4m3").item()        # products swamped as the sum grows
    2162.0
    >>> fp8sim.matmul(a, b, unit="H100:e4m3", promote_every=128).item(), 4096 * 0.5 * 1.125
    (2304.0, 2304.0)
    """
    unit, a, b = _prepare(a, b, unit, promote_every, quantize_inputs)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape}, b is {b.shape} (K must agree)")
    M, N = a.shape[0], b.shape[1]
    c = _addend(c, (M, N))
    if isinstance(unit, ExactUnit):
        out = _exact(a, b, c)
    elif isinstance(unit, FMAUnit):
        out = _fma(a, b, c)
    elif isinstance(unit, AMD_UNITS):
        out = cdna_chain(a, b, c, unit)
    else:
        out = _chained(a, b, c, unit, promote_every, tile_elems, paired=False, threads=threads)
    return out if out_format is None else quantize(out, out_format)


def dot_rows(
    a: ArrayLike,
    b: ArrayLike,
    c: ArrayLike | None = None,
    *,
    unit: Unit,
    promote_every: int | None = None,
    quantize_inputs: bool = False,
    out_format: FormatLike | None = None,
    tile_elems: int | None = None,
) -> np.ndarray:
    """Row-wise dot products ``sum(a[i] * b[i]) + c[i]`` through a unit.

    ``a`` and ``b`` are (R, K); ``c`` broadcasts to (R,); returns (R,).
    The same arithmetic as :func:`matmul`, for many independent dot
    products (conformance rows, golden vectors) without forming all R*R
    pairs.  Parameters as for :func:`matmul`; the comparison units are
    not supported here.

    >>> import fp8sim
    >>> dot_rows([[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, -1.0]], unit="H100:e4m3").tolist()
    [3.0, -1.0]
    """
    unit, a, b = _prepare(a, b, unit, promote_every, quantize_inputs)
    if not isinstance(unit, (BlockFMA, SplitFP16Unit, *AMD_UNITS)):
        raise ValueError("dot_rows needs a matrix unit (BlockFMA, SplitFP16Unit or an AMD unit)")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be 2-D of the same shape, got {a.shape} and {b.shape}")
    c = _addend(c, (a.shape[0], 1)) if np.ndim(c) == 0 or c is None else _addend(to_array(c, "c")[:, None], (a.shape[0], 1))
    if isinstance(unit, AMD_UNITS):
        out = cdna_chain(a, b, c, unit, paired=True)[:, 0]
    else:
        out = _chained(a, b, c, unit, promote_every, tile_elems, paired=True)[:, 0]
    return out if out_format is None else quantize(out, out_format)


def _prepare(a, b, unit, promote_every, quantize_inputs):
    from .blockscale import BlockScaledFMA, GroupScaledFMA

    unit = resolve_unit(unit)
    if isinstance(unit, (BlockScaledFMA, GroupScaledFMA)):
        raise ValueError("a block-scaled unit needs its scales: use fp8sim.scaled_matmul with MX ScaledTensors")
    quantize_inputs = check_bool(quantize_inputs, "quantize_inputs")
    fa, fb = (unit.in_format, unit.b_format) if isinstance(unit, (BlockFMA, SplitFP16Unit, *AMD_UNITS)) \
        else (FP32, FP32)
    a = _operand(a, "a", fa, quantize_inputs)
    b = _operand(b, "b", fb, quantize_inputs)
    if promote_every is not None:
        if not _fp32_chain_unit(unit):
            raise ValueError("promote_every applies to a BlockFMA unit or an FP32-output SplitFP16Unit")
        if isinstance(promote_every, bool) or not isinstance(promote_every, (int, np.integer)) or promote_every <= 0 \
                or promote_every % unit.block:
            raise ValueError(f"promote_every must be a positive multiple of the unit's block ({unit.block}), "
                             f"got {promote_every!r}")
    return unit, a, b


def _addend(c, shape):
    if c is None:
        return np.zeros(shape)
    try:
        return np.broadcast_to(_operand(c, "c", FP32, False), shape).astype(np.float64)
    except ValueError as exc:
        if "broadcast" in str(exc):
            raise ValueError(f"c of shape {np.shape(c)} does not broadcast to {shape}") from None
        raise


#: below this many multiply-accumulates, threads=None runs on one thread (a pool costs more than it gains)
THREAD_MIN_MACS = 1 << 22


def thread_count(threads: int | None, rows: int, macs: int) -> int:
    """How many threads ``threads`` means for a product of ``rows`` rows and ``macs`` multiply-accumulates.

    ``None``: the cores this process may use, for products of at least
    ``THREAD_MIN_MACS`` MACs, never more than one per row; an int: that many
    (at most one per row).

    >>> thread_count(1, 100, 10**9), thread_count(4, 2, 10**9)
    (1, 2)
    """
    import os

    if threads is None:
        if macs < THREAD_MIN_MACS:
            return 1
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            threads = os.cpu_count() or 1
    elif isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be None or a positive integer, got {threads!r}")
    return max(1, min(int(threads), rows))


def _fp32_chain_unit(unit) -> bool:
    """Units whose chain gives FP32 partial sums that promotion and the scaled pipelines can add up."""
    return isinstance(unit, BlockFMA) or (isinstance(unit, SplitFP16Unit) and unit.out_format.name == "float32")


def _unit_chain(a, b, c, unit, *, tile_elems=None, paired=False):
    """The unit's chain over all of K: :func:`dot_chain` for a BlockFMA, the FP16-path emulation
    (:func:`split_fp16_chain`) for a SplitFP16Unit."""
    if isinstance(unit, SplitFP16Unit):
        return split_fp16_chain(a, b, c, unit, paired=paired, tile_elems=tile_elems)
    return dot_chain(a, b, c, unit, tile_elems=tile_elems, paired=paired)


def _chained(a, b, c, unit, promote_every, tile_elems, paired, threads=1):
    """The unit's chain (with promotion) over rows; with several threads, contiguous row
    ranges run side by side (rows are independent, so the bits are those of one thread)."""
    M = a.shape[0]
    n = thread_count(threads, M, M * a.shape[1] * (1 if paired else b.shape[1]))

    def rows(lo, hi):
        ar, br, cr = a[lo:hi], (b[lo:hi] if paired else b), c[lo:hi]
        if promote_every is None:
            return _unit_chain(ar, br, cr, unit, tile_elems=tile_elems, paired=paired)
        return _fp32_over_blocks(ar, br, cr, unit, promote_every, tile_elems=tile_elems, paired=paired)

    if n == 1:
        return rows(0, M)
    from concurrent.futures import ThreadPoolExecutor

    edges = [M * i // n for i in range(n + 1)]
    with ThreadPoolExecutor(n) as pool:
        parts = list(pool.map(rows, edges[:-1], edges[1:]))
    return np.concatenate(parts, axis=0)


def _fp32_over_blocks(a, b, acc, unit, T, scale=None, *, tile_elems=None, paired=False):
    """For each K block j of T elements: the unit's chain from C = 0, times ``scale(j)``
    (if given; the float64 product is exact), added into the FP32 accumulator with
    one nearest-even rounding.  Promotion and the blockwise-scaled pipelines.

    Without ``scale`` both addends are FP32 values, and a float32 addition is
    that one rounding (IEEE 754 addition is correctly rounded; overflow gives
    Inf as nearest-even does).
    """
    zeros = np.zeros_like(acc)
    acc32 = acc.astype(np.float32) if scale is None else None
    for j, k0 in enumerate(range(0, a.shape[1], T)):
        kk = slice(k0, k0 + T)
        part = _unit_chain(a[:, kk], b[:, kk] if paired else b[kk], zeros, unit, tile_elems=tile_elems, paired=paired)
        if scale is None:
            with np.errstate(invalid="ignore", over="ignore"):
                acc32 += part.astype(np.float32)
            continue
        with np.errstate(invalid="ignore"):
            part = part * scale(j)
        acc = add_fp32(acc, part)
    return acc if acc32 is None else acc32.astype(np.float64)


def _lsb_exponent(x):
    """Smallest exponent of a last significant bit among x's non-zero finite values."""
    nz = x[(x != 0) & np.isfinite(x)]
    if nz.size == 0:
        return None
    m, e = np.frexp(nz)
    # last set bit of the float64 significand
    sig = np.ldexp(np.abs(m), 53).astype(np.int64)
    tz = np.log2((sig & -sig).astype(np.float64)).astype(np.int64)
    return int((e.astype(np.int64) - 53 + tz).min())


def _exact(a, b, c):
    if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(c).all()):
        with np.errstate(invalid="ignore", over="ignore"):
            return quantize(a @ b + c, FP32)  # IEEE special-value rules
    la, lb, lc = _lsb_exponent(a), _lsb_exponent(b), _lsb_exponent(c)
    lows = [x for x in ((la + lb) if la is not None and lb is not None else None, lc) if x is not None]
    if not lows:
        return np.zeros_like(c)
    bound = float((np.abs(a) @ np.abs(b) + np.abs(c)).max()) * (1 + 2.0**-30)
    if bound < math.ldexp(1.0, min(lows) + 52):
        # every partial sum is a multiple of 2**min(lows) below 2**(min(lows)+53): exact in float64
        return quantize(a @ b + c, FP32)
    return _exact_compensated(a, b, c)


def _exact_compensated(a, b, c):
    """Exactly rounded FP32 dot products of wide-range data, whole-array.

    Compensated summation over K (Ogita, Rump & Oishi, "Accurate sum and dot
    product", SIAM J. Sci. Comput. 26(6), 2005, Algorithm 4.4, Sum2; the
    products of FP32 values are exact in float64) gives ``hi + lo`` with
    ``|S - (hi + lo)| <= gamma_n**2 * sum|p_i|`` (their Proposition 4.5,
    ``gamma_n = n u / (1 - n u)``); where both ends of that interval round
    to the same FP32 value, so does S.  The rare elements where they do not
    (S within the bound of an FP32 rounding boundary) are summed exactly,
    one at a time, with ``math.fsum``.
    """
    K = a.shape[1]
    s = np.array(c, np.float64, copy=True)
    comp = np.zeros_like(s)
    mag = np.abs(s)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(K):
            p = np.multiply.outer(a[:, k], b[k])
            t = s + p
            bp = t - s
            comp += (s - (t - bp)) + (p - bp)
            s = t
            mag += np.abs(p)
        hi, lo = two_sum(s, comp)
        n = K + 1
        g = n * 2.0**-53 / (1 - n * 2.0**-53)
        bound = 2 * g * g * mag * (1 + 2.0**-40) + np.abs(lo) * 2.0**-50 + 2.0**-1074
        r_lo = round_pair(*two_sum(hi, lo - bound), FP32, "nearest_even")
        r_hi = round_pair(*two_sum(hi, lo + bound), FP32, "nearest_even")
    out = np.where(r_lo == r_hi, r_lo, np.nan)
    for i, j in zip(*np.nonzero(r_lo != r_hi)):
        out[i, j] = _exact_fsum(a[i], b[:, j], c[i, j])
    return out


def _exact_fsum(a_row, b_col, c):
    """One exactly rounded FP32 dot product (math.fsum and the sign of the exact remainder)."""
    terms = list(a_row * b_col) + [c]
    s = math.fsum(terms)
    rest = math.fsum(terms + [-s])  # sign of the exact remainder
    return add_fp32(np.array([s]), np.array([rest]))[0] if rest else float(quantize(s, FP32))


def _fma(a, b, c):
    acc = c.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(a.shape[1]):
            acc = add_fp32(acc, np.multiply.outer(a[:, k], b[k]))  # exact products, one rounding
    return acc


# --- scaled GEMM pipelines -------------------------------------------------------

def scaled_matmul(
    A: ScaledTensor,
    B: ScaledTensor,
    *,
    unit: Unit,
    promote_every: int | None = None,
    out_format: FormatLike = "bfloat16",
    semantics: str | None = None,
) -> np.ndarray:
    """A scaled FP8/MX GEMM pipeline: quantized operands -> unit -> scales -> output rounding.

    Parameters
    ----------
    A, B : ScaledTensor
        (M, K) and (K, N), from :func:`fp8sim.quantize_scaled`; their element
        format must be the unit's input format.
    unit : BlockFMA or str
        The tensor-core unit, e.g. ``"H100:e4m3"`` (``"B200:e4m3"`` for MX).
    promote_every : int, optional
        ``"scaled_mm"`` only: ``None`` is cuBLAS fast accumulation (one
        chain over K), 128 promotes every 128 elements into FP32.
    out_format : str
        Output rounding (nearest-even): ``"bfloat16"`` (default),
        ``"float16"`` or ``"float32"``.
    semantics : str, optional
        ``"deepgemm"``, ``"scaled_mm"`` or ``"mx"``; inferred from the
        operands' granularities when omitted.

    Notes
    -----
    Every step, in order (``fl32``: round to nearest-even FP32; the scalar
    twin :func:`fp8sim.reference.scaled_dot` follows the same order):

    ``"deepgemm"`` (DeepSeek-V3, arXiv 2412.19437, section 3.3.2; A in 1 x T
    tiles, B in T x T blocks, T a multiple of the unit's block, 128 in
    DeepSeek-V3; B may also be in T x 1 tiles, both operands scaled per
    column and K block, as in the weight-gradient GEMM, whose K is the
    token axis): for each K block ``j`` of T elements,
    ``p = unit(A_j @ B_j)`` (the unit's chain from C = 0),
    ``s = fl32(sa[m, j] * sb[j, n // T])``,
    ``acc = fl32(acc + p * s)`` (a fused multiply-add, one rounding);
    finally ``out = round(acc, out_format)``.

    ``"scaled_mm"`` (``torch._scaled_mm``: per-tensor scales, or rowwise A and
    columnwise B): ``D = matmul(A_vals, B_vals, unit, promote_every)``,
    ``s = fl32(sa[m] * sb[n])``, ``out = round(fl32(D * s), out_format)``.

    ``"mx"`` (OCP MX: both operands in 32-element blocks along K with E8M0
    scales): for each K block ``j`` of 32, ``p = unit(A_j @ B_j)``,
    ``acc = fl32(acc + p * 2**(xa + xb))`` (the power-of-two scaling is
    exact), ``out = round(acc, out_format)``: the order software emulators
    such as microxcaling and torchao's MX emulation compute.  Blackwell's
    hardware puts the scales inside the fused sum instead: pass a unit from
    :func:`fp8sim.hardware.block_scaled_unit` or
    :func:`fp8sim.hardware.group_scaled_unit` (semantics ``"block_scale"``,
    MX and NVFP4 operands).

    Examples
    --------
    >>> import numpy as np, fp8sim
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((4, 256)), rng.standard_normal((256, 8))
    >>> A = fp8sim.quantize_scaled(x, "e4m3", (1, 128))
    >>> B = fp8sim.quantize_scaled(w, "e4m3", (128, 128))
    >>> out = fp8sim.scaled_matmul(A, B, unit="H100:e4m3")
    >>> rel = np.linalg.norm(out - x @ w) / np.linalg.norm(x @ w)   # E4M3 rounding of the inputs
    >>> bool(0.01 < rel < 0.05)
    True
    """
    from .scaling import ScaledTensor

    from .blockscale import BlockScaledFMA, GroupScaledFMA

    unit = resolve_unit(unit)
    if isinstance(unit, (BlockScaledFMA, GroupScaledFMA)):
        return _block_scaled(A, B, unit, promote_every, out_format, semantics)
    if not _fp32_chain_unit(unit):
        raise ValueError("scaled_matmul needs a BlockFMA, an FP32-output SplitFP16Unit or a BlockScaledFMA unit")
    for name, t in (("A", A), ("B", B)):
        if not isinstance(t, ScaledTensor):
            raise TypeError(f"{name} must be a ScaledTensor (use fp8sim.quantize_scaled)")
        if len(t.shape) != 2:
            raise ValueError(f"{name} must be 2-D, got shape {t.shape}")
        want = unit.in_format if name == "A" else unit.b_format
        if t.fmt != want:
            raise ValueError(f"{name}'s elements are {t.fmt.name}, the unit takes {want.name}")
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"shape mismatch: A is {A.shape}, B is {B.shape}")
    out_fmt = get_format(out_format)
    if out_fmt.name not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"out_format must be 'bfloat16', 'float16' or 'float32', got {out_format!r}")
    semantics = (semantics.strip().lower() if isinstance(semantics, str) else semantics) or _infer_semantics(A, B)
    if semantics == "deepgemm":
        acc = _deepgemm(A, B, unit, promote_every)
    elif semantics == "scaled_mm":
        acc = _scaled_mm(A, B, unit, promote_every)
    elif semantics == "mx":
        acc = _mx(A, B, unit, promote_every)
    else:
        raise ValueError(f"semantics must be 'deepgemm', 'scaled_mm' or 'mx', got {semantics!r}")
    return quantize(acc, out_fmt)


def _block_scaled(A, B, unit, promote_every, out_format, semantics):
    """MX / NVFP4 operands through a block-scaled unit: the block scales enter inside each fused sum
    (fp8sim.blockscale); NVFP4's FP32 tensor scales are applied in the epilogue,
    ``out = round(fl32(acc * fl32(gA * gB)), out_format)`` (fp8sim's model of the GEMM's alpha); then
    one rounding to ``out_format``."""
    from .blockscale import BlockScaledFMA, block_scaled_chain, group_scaled_chain
    from .scaling import ScaledTensor

    if semantics not in (None, "block_scale"):
        raise ValueError(f"a block-scaled unit runs semantics 'block_scale', got {semantics!r}")
    if promote_every is not None:
        raise ValueError("a block-scaled unit chains its blocks itself: promote_every must be None")
    grouped = not isinstance(unit, BlockScaledFMA)
    sname = unit.scale_format.name if grouped else "float8_e8m0fnu"
    blk = unit.block
    for name, t, tile, fmt in (("A", A, (1, blk), unit.in_format), ("B", B, (blk, 1), unit.b_format)):
        if not isinstance(t, ScaledTensor):
            raise TypeError(f"{name} must be a ScaledTensor (use fp8sim.quantize_scaled(..., 'mx32' or 'nvfp4'))")
        if t.scale_format.name != sname or t.tile != tile:
            raise ValueError(f"{name} must hold {sname} scales per {blk} elements along K (tile {tile}); got "
                             f"{t.scale_format.name} scales, tile {t.tile}")
        if t.fmt != fmt:
            raise ValueError(f"{name}'s elements are {t.fmt.name}, the unit takes {fmt.name}")
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"shape mismatch: A is {A.shape}, B is {B.shape}")
    out_fmt = get_format(out_format)
    if out_fmt.name not in ("bfloat16", "float16", "float32"):
        raise ValueError(f"out_format must be 'bfloat16', 'float16' or 'float32', got {out_format!r}")
    zeros = np.zeros((A.shape[0], B.shape[1]))
    chain = group_scaled_chain if grouped else block_scaled_chain
    acc = chain(A.values, B.values, zeros, A.scales, B.scales, unit)
    if A.global_scale != 1.0 or B.global_scale != 1.0:
        alpha = quantize(A.global_scale * B.global_scale, FP32)
        with np.errstate(invalid="ignore", over="ignore"):
            acc = quantize(acc * alpha, FP32)
    return quantize(acc, out_fmt)


def _infer_semantics(A, B):
    if A.scale_format.name == "float8_e8m0fnu" and B.scale_format.name == "float8_e8m0fnu":
        return "mx"
    (M, K), N = A.shape, B.shape[1]
    if A.tile in ((1, K), (M, K)) and B.tile in ((K, 1), (K, N)):
        return "scaled_mm"
    if A.tile[0] == 1 and B.tile[0] == A.tile[1]:
        return "deepgemm"
    raise ValueError(f"cannot infer the pipeline from tiles A {A.tile} and B {B.tile}; pass semantics=")


def _fl32_product(x, y):
    """``x * y`` rounded once to FP32 (nearest-even): for FP32 values one IEEE float32 multiplication,
    otherwise the exact float64 product of the values rounded by :func:`quantize`."""
    x32, y32 = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if np.array_equal(x32, x, equal_nan=True) and np.array_equal(y32, y, equal_nan=True):
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return (x32 * y32).astype(np.float64)
    return quantize(x * y, FP32)  # float64 holds the product of two values with at most 24 bits each


def _deepgemm(A, B, unit, promote_every):
    T = A.tile[1]
    # T % block: a K shorter than one tile clamps the tiles to K, a single (partial) block
    if B.tile[0] != T or B.tile[1] not in (1, T, B.shape[1]) or (T % unit.block and T != A.shape[1]):
        raise ValueError(f"deepgemm needs A in (1, T) tiles and B in (T, T) blocks or (T, 1) tiles, T a multiple "
                         f"of {unit.block}; got {A.tile} and {B.tile}")
    if promote_every not in (None, T):
        raise ValueError(f"deepgemm promotes once per scale block: promote_every must be None or {T}")
    M, N = A.shape[0], B.shape[1]
    sb_cols = np.arange(N) // B.tile[1]
    return _fp32_over_blocks(A.values, B.values, np.zeros((M, N)), unit, T,
                             lambda j: _fl32_product(A.scales[:, j][:, None], B.scales[j][sb_cols][None, :]))


def _scaled_mm(A, B, unit, promote_every):
    M, K = A.shape
    N = B.shape[1]
    if A.tile not in ((1, K), (M, K)) or B.tile not in ((K, 1), (K, N)):
        raise ValueError(f"scaled_mm takes per-tensor or rowwise A and per-tensor or columnwise B scales; "
                         f"got tiles {A.tile} and {B.tile}")
    D = matmul(A.values, B.values, unit=unit, promote_every=promote_every)
    s = _fl32_product(A.expanded_scales()[:, :1], B.expanded_scales()[:1, :])
    return quantize(D * s, FP32)


def _mx(A, B, unit, promote_every):
    for name, t in (("A", A), ("B", B)):
        if t.scale_format.name != "float8_e8m0fnu":
            raise ValueError(f"mx needs E8M0 (power-of-two) block scales; {name}'s scales are {t.scale_format.name} "
                             "(quantize_scaled(..., 'mx32'))")
    if A.tile != (1, 32) or B.tile != (32, 1):
        raise ValueError(f"mx needs A in 32-element blocks along K (tile (1, 32)) and B along K (tile (32, 1), "
                         f"quantize_scaled(..., axis=0)); got {A.tile} and {B.tile}")
    if promote_every is not None:
        raise ValueError("mx accumulates every 32-element block into FP32: promote_every must be None")
    return _fp32_over_blocks(A.values, B.values, np.zeros((A.shape[0], B.shape[1])), unit, 32,
                             lambda j: A.scales[:, j][:, None] * B.scales[j][None, :])
