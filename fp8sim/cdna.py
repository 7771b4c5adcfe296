"""AMD CDNA matrix units (``mfma``): the three algorithms MMA-Sim publishes for CDNA1-3.

Chen et al., "MMA-Sim" (arXiv 2511.10909), as summarised in
``../shared/HARDWARE.md``; checked bit for bit against MMA-Sim 2.1.1 on
random rows (``tests/test_mmasim.py``).  The scalar twins are in
:mod:`fp8sim.reference` (``exact_block_dot``, ``ftz_dot``, ``floor_sum_dot``).

``ExactBlockUnit`` (CDNA1, MI100; MMA-Sim's E-FDPA)
    Each step sums ``block`` exact products and C exactly and rounds once
    to nearest-even FP32 (block 4 for f16, 2 for bf16).
``FTZUnit`` (CDNA2, MI210/MI250/MI250X; FTZ-MUL-ADD)
    Inputs subnormal in their own format become +0; each product is
    rounded to FP32 and flushed to a signed zero if subnormal; per group of
    ``group`` products ``s = p0 + p1`` (and for 4, ``s = s + (p2 + p3)``),
    then ``c = c + s``; every addition is FP32 nearest-even with a
    subnormal result flushed (sign kept); a subnormal C becomes +0.  An
    input or C of -0 reads as +0 too (``negative_zero="flush"``, MMA-Sim's
    model: its flush takes every magnitude below the smallest normal, zeros
    included), or stays -0 (``"keep"``, IEEE 754's reading: only
    subnormals flush); no measurement decides, and the two differ only in
    the sign of a zero result.
``FloorSumUnit`` (CDNA3, MI300A/MI300X/MI325X; TR-FDPA and, with
``split_parity``, GTR-FDPA for FP8)
    The products' truncated fused sum at F = ``align_bits`` without C
    gives ``(s_dot, e_dot)``; ``e_max = max(e_dot, e_C)``; ``s_dot`` is
    floored (toward -Inf) to ``2**(e_max - join_bits)``, C to
    ``2**(e_max - align_bits)``; their sum is floored to ``frac_bits``
    fraction bits and rounded to nearest-even FP32.  With
    ``split_parity`` the even-k and odd-k products are two truncated sums,
    each floored to ``2**(e_dot - align_bits)`` (``e_dot`` the larger of
    their two exponents) and added, and C is dropped when
    ``e_C < e_max - c_drop_bits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .accumulate import (CODED_EXP_BLOCK, RUN_EXP_PLANES, ExactBlocks, block_exponents23, clamped_exponents,
                         exponent_code, pow2, round_pair, truncated_sum_k)
from .formats import FloatFormat, get_format
from .rounding import quantize

__all__ = ["ExactBlockUnit", "FTZUnit", "FloorSumUnit", "cdna_chain"]

FP32 = get_format("float32")


def _formats(self):
    object.__setattr__(self, "in_format", get_format(self.in_format))
    object.__setattr__(self, "b_format", self.in_format if self.b_format is None else get_format(self.b_format))


@dataclass(frozen=True)
class ExactBlockUnit:
    """CDNA1: ``block`` products and C summed exactly, rounded once to nearest-even FP32.

    >>> import fp8sim
    >>> u = fp8sim.hardware.tensor_core("MI100", "float16")
    >>> fp8sim.matmul([[2.0**15, 2.0**-14, 1.0, -2.0**15]], [[1.0], [1.0], [1.0], [1.0]], unit=u).item()
    1.00006103515625
    """

    in_format: FloatFormat
    block: int
    name: str = ""
    b_format: FloatFormat | None = None

    def __post_init__(self):
        _formats(self)


@dataclass(frozen=True)
class FTZUnit:
    """CDNA2: FP32 products and pairwise FP32 additions, every subnormal flushed (see the module notes)."""

    in_format: FloatFormat
    group: int
    name: str = ""
    b_format: FloatFormat | None = None
    negative_zero: str = "flush"

    def __post_init__(self):
        _formats(self)
        if self.group not in (2, 4):
            raise ValueError(f"group must be 2 or 4, got {self.group!r}")
        if self.negative_zero not in ("flush", "keep"):
            raise ValueError(f"negative_zero must be 'flush' (MMA-Sim: -0 inputs and C read as +0) or 'keep', "
                             f"got {self.negative_zero!r}")

    def flushed(self, x, smallest_normal):
        """Where an input (or C) of magnitude below ``smallest_normal`` reads as +0: subnormals, and
        zeros unless ``negative_zero="keep"`` (NaN compares False and stays)."""
        small = np.abs(x) < smallest_normal
        return small & (x != 0) if self.negative_zero == "keep" else small

    @property
    def block(self):
        return self.group


@dataclass(frozen=True)
class FloorSumUnit:
    """CDNA3: truncated product sum, C and the join floored, one nearest-even FP32 rounding."""

    in_format: FloatFormat
    block: int
    align_bits: int = 24
    join_bits: int = 32
    frac_bits: int = 31
    split_parity: bool = False
    c_drop_bits: int | None = None
    overflow_check: bool = True
    name: str = ""
    b_format: FloatFormat | None = None

    def __post_init__(self):
        _formats(self)


# --- the engines --------------------------------------------------------------------------------

def _exps(x, fmt):
    """Exponents clamped at fmt's emin (int64); zeros get -10**6."""
    return clamped_exponents(x, fmt, -(10**6))


def _floor_to(v, e):
    """v floored (toward -Inf) onto the grid 2**e (float64, exact for the values here)."""
    e = np.clip(e, -1000, 1000)
    return np.floor(v * pow2(-e)) * pow2(e)


def _trunc_to(v, e):
    return np.ldexp(np.trunc(np.ldexp(v, -e)), e)


def _truncated_sum(p, ep, F):
    """Truncated fused sum of products p (..., k) with exponents ep: (sum, E); E = -10**6 when none
    (also for k = 0: the odd-k half of a one-element block)."""
    E = ep.max(axis=-1, initial=-(10**6))
    live = E > -(10**5)
    Ez = np.where(live, E, 0)
    s = _trunc_to(p, (Ez - F)[..., None]).sum(axis=-1)
    return np.where(live, s, 0.0), E


def _floor_sum_step(unit, p, ep, c):
    F = unit.align_bits
    if unit.split_parity:
        s0, e0 = _truncated_sum(p[..., 0::2], ep[..., 0::2], F)
        s1, e1 = _truncated_sum(p[..., 1::2], ep[..., 1::2], F)
        e_dot = np.maximum(e0, e1)
        ez = np.where(e_dot > -(10**5), e_dot, 0)
        s_dot = _floor_to(s0, ez - F) + _floor_to(s1, ez - F)
    else:
        s_dot, e_dot = _truncated_sum(p, ep, F)
    return _join(unit, s_dot, e_dot, c)


def _ftz_inplace(x):
    """Flush x's FP32 subnormals to zero of the same sign, in place (NaN and Inf stay)."""
    np.copysign(np.float32(0), x, out=x, where=np.abs(x) < np.float32(FP32.smallest_normal))
    return x


def _ftz32(x):
    """x as float32, its subnormals flushed (a copy)."""
    return _ftz_inplace(np.array(x, np.float32))


def cdna_chain(a, b, c, unit, *, paired=False):
    """An AMD unit chained over K: a (M, K) @ b (K, N) + c (M, N) (or row-paired, as dot_chain)."""
    M, K = a.shape
    out = np.array(c, np.float64, copy=True)
    if paired:
        A, B = a[:, None, :], b[:, None, :]
    else:
        A, B = a[:, None, :], b.T[None, :, :]
    fa, fb = unit.in_format, unit.b_format
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        if isinstance(unit, FTZUnit) and not paired:
            return _ftz_chain_fast(unit, a, b, out)
        if isinstance(unit, FTZUnit):
            A = np.where(unit.flushed(A, fa.smallest_normal), 0.0, A)
            B = np.where(unit.flushed(B, fb.smallest_normal), 0.0, B)
            acc = _ftz32(np.where(unit.flushed(out, FP32.smallest_normal), 0.0, out))
            for k0 in range(0, K, unit.group):
                p = _ftz32((A[..., k0:k0 + unit.group] * B[..., k0:k0 + unit.group]).astype(np.float32))
                s = _ftz32(p[..., 0] + p[..., 1]) if p.shape[-1] > 1 else p[..., 0]
                if p.shape[-1] == 4:
                    s = _ftz32(s + _ftz32(p[..., 2] + p[..., 3]))
                elif p.shape[-1] == 3:
                    s = _ftz32(s + p[..., 2])
                acc = _ftz32(acc + s)
            return acc.astype(np.float64)
        if isinstance(unit, FloorSumUnit) and not paired:
            return _floor_sum_chain_fast(unit, a, b, out)
        if isinstance(unit, ExactBlockUnit) and not paired and np.isfinite(a).all() and np.isfinite(b).all():
            return _exact_chain_fast(unit, a, b, out)
        ea, eb = _exps(A, fa), _exps(B, fb)
        for k0 in range(0, K, unit.block):
            kk = slice(k0, k0 + unit.block)
            p = A[..., kk] * B[..., kk]
            if isinstance(unit, ExactBlockUnit):
                out = _exact_block_step(p, out)
                continue
            ep = ea[..., kk] + eb[..., kk]
            res = _floor_sum_step(unit, np.where(np.isfinite(p), p, 0.0), np.where(np.isfinite(p), ep, -(10**6)),
                                  np.where(np.isfinite(out), out, 0.0))
            res = _specials(res, p, out, unit)
            out = res
    return out


#: products per row tile of the whole-array FloorSumUnit engine, and (row, column) elements per tile
#: (as :data:`fp8sim.accumulate.KMAJOR_PLANE`: blocks of 4 and 8 measured faster with it)
FLOOR_TILE = 1 << 19
FLOOR_PLANE = 1 << 14
#: K elements per pass of the whole-array FTZUnit engine (a multiple of every group)
FTZ_CHUNK = 64


def _ftz_chain_fast(unit, a, b, out):
    """FTZUnit over K on whole arrays: the operations of :func:`cdna_chain`'s FTZ loop, in the same order.

    The products do not depend on the chain, so for a chunk of ``FTZ_CHUNK`` elements of K they are
    formed at once by a float32 multiply into (k, rows, N) (a float32 multiply is the product rounded
    once to FP32, Inf on overflow, IEEE's NaN rules), flushed, and summed pairwise per group, each
    addition a float32 one followed by the flush; then the group sums enter the FP32 chain state one
    group at a time, ``acc = ftz(acc + s)``.  A last partial group sums as the loop does.
    """
    M, K = a.shape
    N = b.shape[1]
    g = unit.group
    fa, fb = unit.in_format, unit.b_format
    # inputs subnormal in their own format become +0 (and -0 ones, as the unit's negative_zero says);
    # the values are FP32
    aT = np.ascontiguousarray(np.where(unit.flushed(a, fa.smallest_normal), 0.0, a).T, np.float32)
    bk = np.ascontiguousarray(np.where(unit.flushed(b, fb.smallest_normal), 0.0, b), np.float32)
    acc = _ftz32(np.where(unit.flushed(out, FP32.smallest_normal), 0.0, out))
    # where every non-zero product and C is at least 2**-103, every value of the chain (products, their
    # FP32 sums, the state) is a multiple of 2**-126 (an FP32 value of magnitude 2**e is a multiple of
    # 2**(e - 23), and a rounded sum of such multiples stays one): so it is zero or at least 2**-126,
    # never subnormal, and every flush is the identity; they are skipped
    flush = _ftz_inplace
    if _smallest(aT) * _smallest(bk) >= 2.0**-103 and _smallest(acc) >= 2.0**-103:
        def flush(x):
            return x
    rows = max(1, min(M, FLOOR_TILE // max(1, N * FTZ_CHUNK)))
    for m0 in range(0, M, rows):
        m1 = min(m0 + rows, M)
        st = acc[m0:m1]
        for k0 in range(0, K, FTZ_CHUNK):
            k1 = min(k0 + FTZ_CHUNK, K)
            P = flush(_products32(aT[k0:k1, m0:m1], bk[k0:k1]))
            full = (k1 - k0) // g * g
            if full:
                s = flush(P[0:full:g] + P[1:full:g])
                if g == 4:
                    s += flush(P[2:full:g] + P[3:full:g])
                    flush(s)
                for j in range(full // g):
                    st += s[j]
                    flush(st)
            tail = P[full:]
            if len(tail):  # a last partial group (K not a multiple of the group), as the loop sums it
                t = tail[0] if len(tail) == 1 else flush(tail[0] + tail[1])
                if len(tail) == 3:
                    t = flush(t + tail[2])
                st += t
                flush(st)
        acc[m0:m1] = st
    return acc.astype(np.float64)


def _smallest(x):
    """The smallest magnitude among x's finite non-zero values (Inf where there is none)."""
    m = np.abs(x)
    return float(m[(m != 0) & np.isfinite(m)].min(initial=np.inf))


def _products32(aT, bk):
    """The float32 products ``aT[k, i] * bk[k, j]`` as (k, rows, N), each rounded once, with IEEE signs.

    ``einsum`` is the faster kernel but forms each product as ``0 + x * y``, which makes a zero
    product (of a zero input, or one that underflows float32) +0 whatever its sign; the sign of a zero
    shows in FTZ's FP32 sums.  So einsum only where no product can be zero (no zero input, and the
    smallest magnitudes' product at or above 2**-149, float32's smallest value; a NaN fails the test),
    where ``0 + x * y`` is ``x * y``; a broadcast multiply elsewhere."""
    amin, bmin = np.abs(aT).min(initial=np.inf), np.abs(bk).min(initial=np.inf)
    if float(amin) * float(bmin) >= 2.0**-149:
        return np.einsum("ki,kj->kij", aT, bk)
    return np.multiply(aT[:, :, None], bk[:, None, :])


def _floor_sum_chain_fast(unit, a, b, out):
    """FloorSumUnit over K in the k-major layout: per block and row tile, the products by einsum into a
    (k, rows, N) buffer, the exponent maxima from int sums, the scaled truncation and the sum over the
    leading axis; the floors and the rounding then work on (rows, N).  A block with a non-finite input or
    C, or (with the overflow check) a product of 2**128 or more, takes the general per-element path."""
    M, K = a.shape
    N = b.shape[1]
    F = unit.align_bits
    fa, fb = unit.in_format, unit.b_format
    rows = max(1, min(M, FLOOR_TILE // max(1, N * unit.block), FLOOR_PLANE // max(1, N)))
    fast = _FastSums(unit, a, b)
    if fast.ok:
        half = (unit.block + 1) // 2 if unit.split_parity else unit.block
        tbuf = np.empty((half, rows, N), np.float32)
        # (run finds the exponent maxima of several blocks at once)
        planes = unit.block * max(1, RUN_EXP_PLANES // unit.block) if fast.run_ok else half
        ebuf = np.empty((planes, rows, N), fast.exp_dtype)
        fast.int_sums = True
    # run's exponent maxima from matrix products (int8 exponents, blocks of CODED_EXP_BLOCK or more)
    coded = fast.ok and fast.run_ok and fast.exp_dtype == np.int8 and unit.block >= CODED_EXP_BLOCK
    if coded:
        cbuf = np.empty((planes // unit.block, rows, N))
    # the fast sums' operands (float32 values, exponents, k-major) are prepared per chunk of K
    chunk = unit.block * max(1, 128 // unit.block)
    exact = _ExactSums.for_unit(unit, fast)

    def tile_step(ab, bb, j, m0, m1, try_exact):
        """One block (``ab`` (M, k), ``bb``, at ``j`` in the chunk) for rows m0:m1, on the fast sums."""
        c = out[m0:m1]
        # (a non-finite C fails the exact tier's bounds and join_into's; the general step below)
        if try_exact and exact is not None and exact.step(unit, ab, bb, j, m0, m1, c):
            return
        kb = ab.shape[1]
        if unit.split_parity:
            parts = [slice(j, j + kb, 2), slice(j + 1, j + kb, 2)]
            ops = [tuple(x[p] for x in ops_c) for p in parts if len(range(j + kb)[p])]
        else:
            ops = [(ops_c[0][j:j + kb], ops_c[1][j:j + kb], ops_c[2][j:j + kb], ops_c[3][j:j + kb])]
        sums = [fast.isum(x[:, m0:m1], y, ex[:, m0:m1], ey, tbuf, ebuf, dead) for x, y, ex, ey in ops]
        if fast.join_fast and fast.join_into(unit, sums, c, dead):
            return
        if not np.isfinite(c).all():
            out[m0:m1] = _general_block(unit, ab[m0:m1], bb, c)
        else:
            out[m0:m1] = fast.join(unit, sums, c)

    done = 0
    for k0 in range(0, K, unit.block):
        if k0 < done:
            continue
        ab, bb = a[:, k0:k0 + unit.block], b[k0:k0 + unit.block]
        kb = ab.shape[1]
        if fast.ok and k0 % chunk == 0:
            # float32 first (the transposed copy moves half the bytes; _FastSums.ok: every finite input
            # is a float32 value below 2**127), exponents from the float32 fields where they are finite
            aT_c = np.ascontiguousarray(a[:, k0:k0 + chunk].astype(np.float32).T)
            bk_c = b[k0:k0 + chunk].astype(np.float32)
            finite_c = np.isfinite(aT_c).all() and np.isfinite(bk_c).all()
            if finite_c and min(fa.emin, fb.emin) >= -126:
                ops_c = (aT_c, bk_c, fast.range.exponents32(aT_c, fa), fast.range.exponents32(bk_c, fb))
            else:
                ops_c = (aT_c, bk_c, fast.exponents(aT_c, fa), fast.exponents(bk_c, fb))
            if exact is not None:
                exact.prepare(*ops_c)
            if coded and finite_c:
                codes_c = (exponent_code(ops_c[2], True), exponent_code(ops_c[3], False))
            # a block without products needs a zero input
            dead = (ops_c[2] == fast.range.no_exp).any() or (ops_c[3] == fast.range.no_exp).any()
        finite_in = fast.ok and finite_c or (np.isfinite(ab).all() and np.isfinite(bb).all())
        if fast.ok and finite_in:
            j = k0 % chunk
            # whole blocks from here to the chunk's end in one loop per row tile (_FastSums.run) while
            # the exact tier waits to retry (each of these blocks counts as one it skips)
            nb = (ops_c[0].shape[0] - j) // unit.block
            if exact is not None:
                nb = min(nb, exact.skip)
            if fast.run_ok and finite_c and kb == unit.block and nb > 0:
                jend = j + nb * unit.block
                for m0 in range(0, M, rows):
                    m1, jj = min(m0 + rows, M), j
                    while jj < jend:
                        codes = (codes_c[0][jj:jend, m0:m1], codes_c[1][jj:jend], cbuf) if coded else None
                        jj += fast.run(unit, ops_c[0][jj:jend, m0:m1], ops_c[1][jj:jend], ops_c[2][jj:jend, m0:m1],
                                       ops_c[3][jj:jend], out[m0:m1], dead, tbuf, ebuf, codes)
                        if jj < jend:  # that block through the per-block path
                            kk = k0 - j + jj
                            tile_step(a[:, kk:kk + unit.block], b[kk:kk + unit.block], jj, m0, m1, False)
                            jj += unit.block
                if exact is not None:
                    exact.skip -= nb
                done = k0 + nb * unit.block
                continue
            for m0 in range(0, M, rows):
                tile_step(ab, bb, j, m0, min(m0 + rows, M), True)
            continue
        aT, bk = np.ascontiguousarray(ab.T), np.ascontiguousarray(bb)
        eaT32, ebk32 = _exps(aT, fa).astype(np.int32), _exps(bk, fb).astype(np.int32)
        for m0 in range(0, M, rows):
            m1 = min(m0 + rows, M)
            c = out[m0:m1]
            P = np.einsum("ki,kj->kij", aT[:, m0:m1], bk)
            big = unit.overflow_check and finite_in and np.abs(P).max(initial=0.0) >= 2.0**128
            if not finite_in or not np.isfinite(c).all() or big:
                out[m0:m1] = _general_block(unit, ab[m0:m1], bb, c)
                continue
            ep = eaT32[:, m0:m1, None] + ebk32[:, None, :]

            def tsum(Pk, ek):
                E = ek.max(axis=0).astype(np.int64)
                live = E > -(10**5)
                Ez = np.where(live, E, 0)
                Pk = Pk * pow2(F - Ez)
                np.trunc(Pk, out=Pk)
                return Pk.sum(axis=0) * pow2(np.where(live, Ez - F, -1000)), E

            if unit.split_parity:
                s0, e0 = tsum(P[0::2], ep[0::2])
                s1, e1 = tsum(P[1::2], ep[1::2]) if kb > 1 else (np.zeros_like(s0), np.full_like(e0, -(10**6)))
                e_dot = np.maximum(e0, e1)
                ez = np.where(e_dot > -(10**5), e_dot, 0)
                s_dot = _floor_to(s0, ez - F) + _floor_to(s1, ez - F)
            else:
                s_dot, e_dot = tsum(P, ep)
            out[m0:m1] = _join(unit, s_dot, e_dot, c)
    return out


class _FastSums:
    """The truncated product sums on float32 products and int8 / int16 exponents, where the data allow.

    ``ok`` when, over the exponents the operands hold (as :class:`fp8sim.accumulate._Plan` plans
    them): every product is exact in float32 and below 2**127 (so also below CDNA3's overflow check
    at 2**128), the scale ``2**(F - E)`` is a float32 normal for every product exponent E, and a zero
    input's exponent (``no_exp``) plus any other stays below every product's (so ``E >= lo`` tells a
    block with a non-zero product), and the join's integer units hold every value exactly.  Each sum
    is then the same value as ``tsum`` in :func:`_floor_sum_chain_fast` gives (products scaled by a
    power of two and truncated, exact, summed exactly), kept in units of its grid, and
    :meth:`join` finishes the step on them with the same bits as :func:`_join`.
    """

    def __init__(self, unit, a, b):
        from .accumulate import _ProductRange

        self.range = pr = _ProductRange(unit.in_format, unit.b_format, a, b)
        self.lo, self.exp_dtype, self.exponents = pr.lo, pr.exp_dtype, pr.exponents
        self.F = F = unit.align_bits
        # join's integer units: the sums (below 2**(F + 3) per product, two of them) counted on a grid
        # 2**(join_bits - F) finer stay below 2**52
        half = (unit.block + 1) // 2 if unit.split_parity else unit.block
        units_ok = (F <= unit.join_bits and unit.frac_bits <= 51
                    and unit.join_bits + 4 + math.ceil(math.log2(half + 1)) <= 52)
        self.ok = (pr.products32 and F - pr.lo <= 127 and F - pr.hi >= -126
                   and pr.no_exp + pr.top < pr.lo and units_ok)
        self.int_sums = False  # isum's int32 sums (set by the chain that runs them)
        # join_into (one sum, no dropped C; its docstring): C exact on its own grid (F >= 23); a C more
        # than join_bits - F binades above the sum's grid outweighs the sum (|sum| < 2**(Ez + 2 + L),
        # L = ceil(log2 block)) enough that the floor to frac_bits + 1 bits is the coarser one
        self.join_fast = (self.ok and not unit.split_parity and unit.c_drop_bits is None and F >= 23
                          and unit.join_bits - F >= 2 + math.ceil(math.log2(unit.block))
                          and unit.frac_bits + 1 <= unit.join_bits and unit.frac_bits <= 51
                          and pr.lo - F >= -126)
        # run: join_into's steps in one loop, the products' sum in one int32 chunk, C on the sum's grid
        # in float32 (every product below 2**(F + 1), so a non-zero C times 2**(F - Ez) stays nonzero)
        self.run_ok = self.join_fast and unit.block <= 1 << (29 - F) and pr.hi - 2 <= F

    def run(self, unit, aT, bk, eaT, ebk, c, dead, tbuf, ebuf, codes=None):
        """:meth:`isum` and :meth:`join_into` for the whole blocks of one row tile (``aT`` (k, r), ``bk``
        (k, n) and their exponents) into the chain state ``c`` (a view, FP32 values as float64), in one
        loop (``run_ok``): the same operations, without isum's and join_into's calls and tuples a step; returns
        where it stopped: the end, or the start of the first block for which join_into's bound on
        ``|t|`` (``2**52``) fails (the caller takes that block through :meth:`join`, from the state
        before it), or 0 where C is not finite.

        The bound is shown without a pass over ``t`` where it can be: ``|t| <= max|C| * 2**(F -
        min Ez)``, with ``max|C|`` measured once and then bounded step by step: a step's result is at
        most ``|C| + sum |p| + 2**(Ez - F)`` (C's floor onto the sum's grid adds at most one unit;
        ``2**Ez`` is at most the largest product) before the floor to ``frac_bits + 1`` bits and the
        rounding to FP32, so ``(max|C| + (k + 1) max|a| max|b|) (1 + 2**-20)`` bounds it.  Where it does
        not, the pass decides, as in join_into.

        The state runs in float32 (its values are FP32's), and ``t = C * 2**(F - Ez)`` is a float32
        product: exact below 2**52 (the bound), or below 1 and of C's sign where it is subnormal (a
        non-zero C is at least 2**-149 and ``Ez <= F``, ``run_ok``), which is all ``floor(t)`` needs.
        The floor to ``frac_bits + 1`` bits and the rounding work on ``X`` itself, which is then scaled
        by ``2**(Ez - F)`` in float32: a power of two commutes with both (``|X| < 2**52`` lies in
        float32's range, and the result is at least ``2**(lo - F) >= 2**-126``, an FP32 normal, or
        zero, or overflows to Inf as the cast of ``X * 2**(Ez - F)`` would).

        The exponent maxima come from the int8 sums, or, with ``codes`` (``(codeT, code_b, buf)``:
        :func:`fp8sim.accumulate.block_exponents23`'s codes of these blocks' exponents and a float64
        buffer), from matrix products, as float32 exponent fields (the same maxima)."""
        k, F, lo = unit.block, self.F, self.lo
        g_bits = np.int32(254 << 23)
        n = aT.shape[0] - aT.shape[0] % k
        r, nc = aT.shape[1], bk.shape[1]
        P = tbuf[:k, :r]
        if codes is None:
            lo_plane = np.full((r, nc), lo, ebuf.dtype) if dead else None
        else:  # (exponents as float32 fields: (E + 127) << 23)
            lo_plane = np.full((r, nc), (lo + 127) << 23, np.int32) if dead else None
        step = k * (ebuf.shape[0] // k)
        cmax = float(np.abs(c).max(initial=0.0))
        if not cmax < np.inf:
            return 0
        state, c = c, c.astype(np.float32)
        grow = (k + 1) * float(np.abs(aT).max(initial=0.0)) * float(np.abs(bk).max(initial=0.0))
        for j in range(0, n, k):
            i = (j % step) // k
            if i == 0:  # the exponent maxima and scales of the next blocks, as many as ebuf holds
                je = min(j + step, n)
                if codes is not None:
                    Es = block_exponents23(codes[0][j:je], codes[1][j:je], k, codes[2])
                    Ezs = np.maximum(Es, lo_plane) if dead else Es
                    # (F + 254 - (Ez + 127)) << 23, in uint32: the constant does not fit int32
                    sbs = np.subtract(np.uint32((F + 254) << 23), Ezs.view(np.uint32)).view(np.int32)
                else:
                    ep = ebuf[:je - j, :r]
                    np.add(eaT[j:je, :, None], ebk[j:je, None, :], out=ep)
                    Es = ep.reshape(-1, k, r, nc).max(axis=1)
                    Ezs = np.maximum(Es, lo_plane) if dead else Es
                    sbs = np.subtract(F + 127, Ezs, dtype=np.int32)
                    sbs <<= 23
            E, Ez, sb = Es[i], Ezs[i], sbs[i]
            scale = sb.view(np.float32)  # 2**(F - Ez)
            np.einsum("ki,kj->kij", aT[j:j + k], bk[j:j + k], out=P)
            P *= scale
            units = np.add.reduce(P, axis=0, dtype=np.int32)  # (each term truncated by the conversion)
            t = c * scale
            np.floor(t, out=t)
            ez_min = int(Ez.min()) if codes is None else (int(Ez.min()) >> 23) - 127
            if not cmax < 2.0 ** (52 - F + ez_min):
                if not (t.max() < 2.0**52 and t.min() > -(2.0**52)):
                    state[...] = c
                    return j
            t = t.astype(np.float64)
            t += units.astype(np.float64)  # X
            _floor_bits(t, unit.frac_bits)
            x = t.astype(np.float32)
            np.subtract(g_bits, sb, out=sb)  # 2**(Ez - F)
            x *= scale
            if dead:
                none = E < lo_plane
                if none.any():
                    np.add(c, np.float32(0.0), out=x, where=none)
            c = x
            cmax = (cmax + grow) * (1 + 2.0**-20)
        state[...] = c
        return n

    def isum(self, aT, bk, eaT, ebk, tbuf, ebuf, dead=True):
        """One truncated sum over the leading axis of aT (k, r) x bk (k, n): ``(I, E, Ez, scale)``, with
        ``E`` the products' largest exponent (the exponents' int8 / int16; below ``lo`` where every
        product is zero), ``Ez = max(E, lo)``, ``I`` the sum of the products truncated onto ``2**(Ez -
        F)``, in units of that grid (float64 integers; 0 for an all-zero block, whose scale any valid
        one is) and ``scale`` the float32 ``2**(F - Ez)``.  ``dead=False``: the caller knows every
        block has a non-zero product (no zero input), so ``Ez = E``."""
        k, r = aT.shape
        P, ep = tbuf[:k, :r], ebuf[:k, :r]
        np.einsum("ki,kj->kij", aT, bk, out=P)
        np.add(eaT[:, :, None], ebk[:, None, :], out=ep)
        # two such sums (split_parity) add in int32 in join where k * 2**(F + 3) <= 2**31
        return self._tsum(P, ep.max(axis=0), self.int_sums, k <= 1 << (28 - self.F), dead)

    def isum_pairs(self, aT, bk, eaT, ebk):
        """:meth:`isum` of paired columns: the truncated sum over the leading axis of ``aT * bk`` (k, n),
        for n (row, column) pairs gathered from a tile, in float64 units."""
        return self._tsum(aT * bk, (eaT.astype(np.int32) + ebk).max(axis=0), False, False)

    def _tsum(self, P, E, ints, int32, dead=True):
        """The products ``P`` (k, ...) scaled onto the grid ``2**(Ez - F)`` of their largest exponents
        ``E`` (``Ez = max(E, lo)``, or E where ``dead`` is False; the scale a float32 built from its
        bits), truncated and summed: ``(I, E, Ez, scale)``; E and Ez in E's integer type (the exponents'
        int8 / int16 from :meth:`isum`: the join's arithmetic on them converts to int32).  (The maximum
        against a plane of ``lo``: NumPy's maximum with a scalar measured 5-9x slower.)"""
        Ez = np.maximum(E, np.full_like(E, self.lo)) if dead else E
        scale = np.subtract(self.F + 127, Ez, dtype=np.int32)
        scale <<= 23
        scale = scale.view(np.float32)
        P *= scale
        return truncated_sum_k(P, self.F, ints, int32), E, Ez, scale

    def join_into(self, unit, sums, c, dead):
        """:meth:`join` for one sum (``join_fast``), written into the chain state ``c`` (a view, finite
        FP32 values as float64) in place; ``dead``: whether a block without products may occur.

        With ``t = C * 2**(F - Ez)`` (C on the sum's grid ``2**(Ez - F)``, exact) and ``X = I +
        floor(t)``, ``x = X * 2**(Ez - F)`` (exact in float64 while ``|t| < 2**52``; checked) is the
        join's sum before its last floor: if ``e_C <= Ez``, ``e_max = Ez``, C's floor is ``floor(t)``
        and the sum's floor onto the finer ``2**(Ez - join_bits)`` is exact; if ``e_C > Ez``, C lies
        on ``2**(e_C - F)`` (F >= 23, ``floor(t) = t``) and the sum's floor onto ``2**(e_C -
        join_bits)`` is exact while ``e_C - Ez <= join_bits - F``; beyond it, ``|x| >= 2**(e_C - 1)``
        (``join_bits - F >= 2 + ceil(log2 block)``), so that floor followed by the floor to
        ``frac_bits + 1`` significant bits is the latter alone (``frac_bits + 1 <= join_bits``).
        So the step is ``x`` floored to ``frac_bits + 1`` bits (its float64 fraction masked, as
        :meth:`join` does) and cast to float32, the one nearest-even rounding.  (A zero X is +0: ``I``
        is +0 then.)  A block without products (``E < lo``; only where ``dead``) has no grid of its
        own: its step is C (+0 for -0), as in :meth:`join`.  False (``c`` untouched) where some
        ``|t| >= 2**52`` (C 28 binades above the products: the caller takes :meth:`join`; defensive,
        for these units the rounded ``X`` there gives the same bits, ``tests/test_cdna.py`` finds no
        difference) or C is not finite (the caller's general step)."""
        I0, E, Ez, scale = sums[0]
        s = scale.astype(np.float64)  # 2**(F - Ez)
        t = c * s
        np.floor(t, out=t)
        if not (t.max(initial=0.0) < 2.0**52 and t.min(initial=0.0) > -(2.0**52)):
            return False  # (also a non-finite C)
        t += I0.astype(np.float64, copy=False)  # (an int32 I: converted first, measured faster)
        sb = s.view(np.int64)
        np.subtract(np.int64(2046 << 52), sb, out=sb)  # 2**(Ez - F)
        t *= s
        _floor_bits(t, unit.frac_bits)
        if dead:
            none = E < self.lo
            if none.any():
                np.add(c, 0.0, out=t, where=none)
        c[...] = t.astype(np.float32)  # (an overflow to Inf: cdna_chain's errstate holds)
        return True

    def join(self, unit, sums, c):
        """The rest of a FloorSumUnit step on (rows, N) from :meth:`isum`'s sums (one, or the even-k and
        the odd-k one with ``split_parity``) and the finite chain state ``c`` (float64 FP32 values): the
        operations of :func:`_floor_sum_step` and :func:`_join` in integer units, exponents in int32.

        With ``e_dot`` the larger exponent of the two sums (``split_parity``; each sum floored onto
        ``2**(e_dot - F)``, which is exact for the one at ``e_dot``) and ``e_max = max(e_dot, e_C)``,
        everything is counted in units of ``2**(e_max - join_bits)``: the sum floored there, C floored
        onto ``2**(e_max - F)`` (``join_bits >= F``, checked by ``ok``), their sum (an integer below
        2**45, exact in float64) floored to ``frac_bits + 1`` significant bits by masking its float64
        fraction (one unit more in magnitude for a negative value that lost bits: the floor), scaled
        back and cast to float32 (its one nearest-even rounding)."""
        F, J = self.F, unit.join_bits
        I0, E0, Ez0 = sums[0][:3]
        if len(sums) == 2:
            I1, E1, Ez1 = sums[1][:3]
            e_dot = np.maximum(Ez0, Ez1)
            if I0.dtype == np.int32 and I1.dtype == np.int32:
                # the floors as arithmetic shifts (NumPy gives 0 or -1 for shifts past 31: the floor
                # too); each |I| < 2**30 (isum's condition), so the int32 sum is exact
                D = np.right_shift(I0, e_dot - Ez0)
                D += np.right_shift(I1, e_dot - Ez1)
                D = D.astype(np.float64)
            else:
                D = np.floor(np.ldexp(I0, Ez0 - e_dot, dtype=np.float64))
                D += np.floor(np.ldexp(I1, Ez1 - e_dot, dtype=np.float64))
            dead = np.maximum(E0, E1) < self.lo
        else:
            D, e_dot, dead = I0.astype(np.float64, copy=False), Ez0, E0 < self.lo
        # C's exponent from its float64 field (FP32 values are float64 normals); a zero C gets -1023,
        # below every product's exponent and every other C's; a block without products is pushed below it
        e_c = (c.view(np.int64) >> 52).astype(np.int32)
        e_c &= 0x7FF
        e_c -= 1023
        e_max = np.maximum(e_dot - dead * np.int32(4000) if dead.any() else e_dot, e_c)
        if unit.c_drop_bits is not None:
            drop = e_c < e_max - unit.c_drop_bits
            if drop.any():
                c = np.where(drop, 0.0, c)  # a dropped C: a zero (its sign cannot show below)
        v = np.floor(np.ldexp(D, e_dot - e_max + (J - F)))
        ct = np.floor(np.ldexp(c, F - e_max))
        ct *= 2.0 ** (J - F)
        v += ct
        _floor_bits(v, unit.frac_bits)
        with np.errstate(over="ignore"):
            return np.ldexp(v, e_max - J).astype(np.float32).astype(np.float64)


def _floor_bits(v, frac_bits):
    """Floor finite float64 ``v`` to ``frac_bits + 1`` significant bits in place, by its bits: a negative
    value's magnitude rounded up (the low fraction bits' mask added, then cleared), a positive one's
    truncated; no carry reaches the sign bit."""
    low = (1 << (52 - frac_bits)) - 1
    bits = v.view(np.int64)
    neg = bits >> 63  # -1 where negative
    neg &= low
    bits += neg
    bits &= np.int64(~low)


class _ExactSums(ExactBlocks):
    """FloorSumUnit steps whose truncations and floors provably lose nothing (:class:`fp8sim.accumulate.
    ExactBlocks` gives each block's exact product sum ``S``, ``e_dot``, the finest grid ``Lb`` and which
    elements meet the bounds below): the step is then the float64 sum ``x = S + C`` rounded once to
    FP32 by the float32 cast.  Where

    - ``e_dot - Lb <= min(F, join_bits, frac_bits - g)`` (``g = 2 + ceil(log2(block))``, so that
      ``|S| < 2**(e_dot + g)``): every product is a multiple of ``2**(e_dot - F)``, so the truncated
      sums (each half's too, and their floors onto the larger half's grid) are exact and
      ``s_dot = S``;
    - C is zero, or ``e_dot + d_lo <= e_C <= Lb + d_hi`` with ``d_lo = max(23 - F, g + 23 -
      frac_bits, -c_drop_bits)`` and ``d_hi = min(frac_bits - 1, join_bits)``: then ``e_max <=
      e_C - min(d_lo, 0)`` keeps C's floor onto ``2**(e_max - F)`` exact and C undropped, S lies on
      the grid ``2**(e_max - join_bits)``, and ``x`` (exact in float64: at most ``frac_bits + 1``
      bits from its top to its grid) has no bits below ``frac_bits`` fraction bits;

    the join's floors are the identity and the step is ``RNE_FP32(x)``, a zero result +0 as
    :func:`_join` gives it (``tests/test_cdna.py`` puts an element just past each bound).  The
    elements where a C condition fails (C small beside the block's products, early in a chain) take
    :meth:`_FastSums.join` on their exact S; those whose products are off the grid take the truncated
    sums of their gathered (row, column) pairs.  Used where every input and C is finite,
    :class:`_FastSums` holds (products below 2**127: no CDNA3 product overflow) with int8 exponents,
    for blocks of at most 16 and products of at most ``min(...) - 4`` fraction bits (on MI300X: 20,
    so FP16 and TF32 too; their products lie on the grid only where the data span few binades, so on
    random data the tier mostly backs off for them: 2.6% of MI300X TF32's time in a line profile).
    """

    def __init__(self, unit, fast, a_lim, d_lo, d_hi):
        super().__init__(unit.in_format, unit.b_format, fast.range.no_exp, a_lim, d_lo, d_hi)
        self.fast = fast

    @classmethod
    def for_unit(cls, unit, fast):
        """The exact tier for ``unit`` over operands where ``fast`` (:class:`_FastSums`) holds, or None."""
        if not fast.ok:
            return None
        F, J, fr = unit.align_bits, unit.join_bits, unit.frac_bits
        g = 2 + math.ceil(math.log2(unit.block))
        a_lim = min(F, J, fr - g)
        m = unit.in_format.mantissa_bits + unit.b_format.mantissa_bits
        if F < 23 or fr < 24 or m > a_lim - 4 or fast.exp_dtype != np.int8 or unit.block > 16:
            return None
        d_lo = max(23 - F, g + 23 - fr, -unit.c_drop_bits if unit.c_drop_bits is not None else 23 - F)
        return cls(unit, fast, a_lim, d_lo, min(fr - 1, J))

    def step(self, unit, ab, bb, j, m0, m1, c):
        """One block (``ab`` (M, k), ``bb`` (k, N), at ``j`` in the chunk) for rows m0:m1 into ``c``
        (a view of the chain state) in place; False where the tile-step is left to the fast sums."""
        chk = self.check(ab, bb, j, m0, m1, c)
        if chk is None:
            return False
        S, E, cert, bad, cs = chk
        np.add(S, c, out=c)
        r = c.astype(np.float32)
        r += np.float32(0.0)  # a zero sum is +0 (-0 + -0 is the only -0)
        c[...] = r
        if bad.size:
            flat = c.reshape(-1)  # a view: the chain state's rows are contiguous
            cb = cert.reshape(-1)[bad]
            # exact S, only the C condition failing: the join on S (one sum, in units of 2**(Ez - F))
            sel = np.flatnonzero(cb)
            if sel.size:
                Eb = E.reshape(-1)[bad[sel]].astype(np.int32)
                Ez = np.maximum(Eb, np.int32(self.fast.lo))
                units = S.reshape(-1)[bad[sel]] * pow2(self.fast.F - Ez)
                flat[bad[sel]] = self.fast.join(unit, [(units, Eb, Ez)], cs[sel])
            # products off the grid (rare): the truncated sums of the gathered (row, column) pairs
            gen = np.flatnonzero(~cb)
            if gen.size:
                kb = ab.shape[1]
                sl = slice(j, j + kb)
                ii, jj = np.divmod(bad[gen], c.shape[1])
                ii += m0
                parts = [slice(0, kb, 2), slice(1, kb, 2)] if unit.split_parity else [slice(0, kb)]
                sums = [self.fast.isum_pairs(self.aT[sl][p, ii], self.bk[sl][p, jj], self.eaT[sl][p, ii],
                                             self.ebk[sl][p, jj]) for p in parts if len(range(kb)[p])]
                flat[bad[gen]] = self.fast.join(unit, sums, cs[gen])
        return True


#: K elements per pass of the whole-array ExactBlockUnit engine (a multiple of every block)
EXACT_CHUNK = 32


def _exact_chain_fast(unit, a, b, out):
    """ExactBlockUnit over K for finite a and b: float64 block sums, rounded by a float32 cast where
    that is provably the exact sum's rounding.

    For a chunk of ``EXACT_CHUNK`` elements of K, every block's product sum ``S`` comes from one batched
    float64 product (the products are exact in float64; the sums may round, in any order).  Three
    tiers, from the cheapest:

    1. where :func:`_exact_certificate` holds (every sum of the chunk, C's included, exact in float64
       and never below 2**-149 unless zero: the common case), a step is ``fl32(c + S)``: one float64
       addition and a cast, each rounding only once (:func:`_exact_plain_run`);
    2. elsewhere, while C is finite and no sum of the chunk can reach 2**127: the same addition and
       cast, with the positions where the cast could round twice checked (:func:`_exact_midpoint_run`);
    3. otherwise (a non-finite C, sums near FP32's top), each step's ``s = c + S`` is decided against
       its error bound (:func:`_exact_decided_step`).

    Every position that none of them can decide takes :func:`_exact_block_step`, the exact path, on
    its own products.
    """
    M, K = a.shape
    N = b.shape[1]
    blk = unit.block
    chunk = max(blk, EXACT_CHUNK // blk * blk)
    rows = max(1, min(M, FLOOR_TILE // max(1, N * chunk // blk)))
    k_bound = (blk + 2) * 2.0**-51
    out = np.array(out, np.float64, copy=True)
    for m0 in range(0, M, rows):
        m1 = min(m0 + rows, M)
        r = m1 - m0
        c = out[m0:m1]
        for k0 in range(0, K, chunk):
            k1 = min(k0 + chunk, K)
            nb = (k1 - k0) // blk
            kf = k0 + nb * blk
            if nb:
                ac, bc = a[m0:m1, k0:kf], b[k0:kf]
                Ab, Bb = ac.reshape(r, nb, blk).transpose(1, 0, 2), bc.reshape(nb, blk, N)
                S = np.matmul(Ab, Bb)
                c += 0.0  # a -0 state adds nothing to an exact sum (tier 1 relies on no -0 state)
                cert = _exact_certificate(c, ac, bc, unit) if np.isfinite(c).all() else None
                if cert is not None and cert.all():
                    c = _exact_plain_run(c, S)
                else:
                    c = _exact_checked_steps(c, S, Ab, Bb, cert, unit, k_bound)
            if kf < k1:  # a partial last block, exactly
                c = _exact_block_step(a[m0:m1, None, kf:k1] * b[kf:k1].T[None, :, :], c)
        out[m0:m1] = c
    return out


def _exact_checked_steps(c, S, Ab, Bb, cert, unit, k_bound):
    """Tiers 2 and 3 of :func:`_exact_chain_fast` for a chunk (``cert``: tier 1's certificate, ``None``
    for tier 3)."""
    T = np.matmul(np.abs(Ab), np.abs(Bb))
    # a lower bound on the lowest bit of every product of a block: per row and per column
    La = _lsb_bound(Ab, unit.in_format).min(axis=2)            # (nb, r)
    Lb = _lsb_bound(Bb, unit.b_format).min(axis=1)             # (nb, N)
    # as powers of two: 2**(La + 53) and 2**Lb (Inf for an all-zero row or column)
    pa, pb = np.ldexp(1.0, La + 53), np.ldexp(1.0, Lb)
    if cert is not None:
        return _exact_midpoint_run(c, S, T, Ab, Bb, pa, pb, cert)
    for j in range(S.shape[0]):
        c = _exact_decided_step(c, S[j], T[j], k_bound, Ab[j], Bb[j], pa[j], pb[j])
    return c


def _exact_certificate(c, ac, bc, unit):
    """Where the chunk ``ac`` (r, kc) @ ``bc`` (kc, N) from finite FP32 ``c`` (r, N), no -0, runs exactly
    in float64 (see :func:`_exact_chain_fast`); ``None`` where some sum could reach 2**127.

    Every product is a multiple of ``2**(La + Lb)`` (the lowest bits of the row's and the column's
    values, bounded from below), and C a multiple of ``2**Lc`` with ``Lc = max(e_C - 23, -149)``.  A
    float32 rounding keeps a multiple of a power of two ``2**L`` a multiple of it (its grid is either
    coarser or holds the value), so with ``L = min(La + Lb, Lc)`` every block sum, every state and
    every ``c + S`` of the chunk is a multiple of ``2**L``, and each is at most
    ``U = (|c| + sum |a| |b|) * (1 + 2**-16)`` in magnitude (the float32 roundings, at most 16 of
    them, each grow a value by at most 2**-24).  Where ``U < 2**(L + 53)`` every one of those sums is
    exact in float64 whatever the order; where also ``L >= -149``, a non-zero one never rounds to a
    zero (no -0 appears)."""
    U = np.matmul(np.abs(ac), np.abs(bc))
    U += np.abs(c)
    U *= 1 + 2.0**-16
    if not U.max() < 2.0**127:
        return None
    La = _lsb_bound(ac, unit.in_format).min(axis=1)
    Lb = _lsb_bound(bc, unit.b_format).min(axis=0)
    lim = np.multiply(np.ldexp(1.0, La + 53)[:, None], np.ldexp(1.0, Lb)[None, :])
    # 2**(Lc + 53) from C's float64 exponent field (FP32 subnormals are float64 normals); no bound from 0
    e = (c.view(np.int64) >> 52) & 0x7FF
    e -= 23
    np.maximum(e, 1023 - 149, out=e)
    e += 53
    pc = (e << 52).view(np.float64)
    np.putmask(pc, c == 0, np.inf)
    np.minimum(lim, pc, out=lim)
    return (U < lim) & (lim >= 2.0**-96)


def _exact_plain_run(c, S):
    """Tier 1 of :func:`_exact_chain_fast`: the blocks' sums ``S`` (nb, r, N) added to the state ``c``
    one block at a time, each sum exact in float64 (:func:`_exact_certificate`), so its float32 cast
    is the step's one nearest-even rounding (a zero sum is +0: no -0 reaches it)."""
    s = np.empty_like(c)
    r = np.empty(c.shape, np.float32)
    for j in range(S.shape[0]):
        np.add(c, S[j], out=s)
        np.copyto(r, s, casting="same_kind")
        np.copyto(c, r)
    return c


def _lsb_bound(x, fmt):
    """A lower bound on the exponent of each value's lowest set bit (its exponent, clamped at fmt's
    minimum, less fmt's mantissa bits); zeros get a bound far above any (they add nothing)."""
    e = clamped_exponents(x, fmt) - fmt.mantissa_bits
    return np.where(x == 0, 10**6, e)


#: float64 bits below FP32's significand (52 - 23) and the pattern of an FP32 midpoint in them
_MID_MASK, _MID = np.int64((1 << 29) - 1), np.int64(1 << 28)


def _exact_midpoint_run(c, S, T, Ab, Bb, pa, pb, cert):
    """ExactBlockUnit steps for the ``nb`` blocks of a chunk (see :func:`_exact_chain_fast`): C finite
    FP32 values (r, N), ``S`` / ``T`` (nb, r, N) the blocks' float64 product sums and sums of magnitudes,
    no sum of the chunk able to reach 2**127.

    Where every product of a block is a multiple of ``2**L`` with ``L >= -178`` (``L`` bounded from below
    by the rows' and columns' lowest bits, ``pa = 2**(La + 53)``, ``pb = 2**Lb``) and ``T < 2**(L + 53)``,
    ``S`` is the exact block sum (every partial sum holds in 53 bits, whatever the order).  Then ``s =
    c + S``, one float64 addition of two exact values, is the exact sum ``x`` rounded once to nearest,
    and its float32 cast rounds ``x`` correctly unless ``s`` is exactly an FP32 midpoint that ``x`` is
    not (a second rounding to nearest can differ from one only where the first lands on a midpoint of
    the second; below 2**-125 there is none: ``x``, a multiple of 2**-178, is exact in float64 there).
    So a step is an addition, a test of ``s``'s low 29 fraction bits for the midpoint pattern and the
    cast.  Positions where ``cert`` (:func:`_exact_certificate`) holds need no test (there ``x`` is
    exact in float64, and a midpoint a true tie); of the others, those with the pattern where the
    addition was inexact (its TwoSum error is not zero: a tie that ``s`` holds exactly is common
    where the inputs have few bits) or without the exactness bound take :func:`_exact_block_step`.  A zero sum gives +0 (``S`` holds no -0, and a float64 sum is -0 only
    of two); a result past FP32's largest value would be Inf by the cast, but the caller keeps those
    chunks out."""
    lim = np.multiply(pa[:, :, None], pb[:, None, :])
    bad = ~(T < lim)
    bad |= lim < 2.0**-125
    bad &= ~cert
    bad_blocks = bad.any(axis=(1, 2))
    S += 0.0  # (-0 + 0 is +0)
    s = np.empty_like(c)
    key = np.empty(c.shape, np.int64)
    for j in range(S.shape[0]):
        np.add(c, S[j], out=s)
        np.bitwise_and(s.view(np.int64), _MID_MASK, out=key)
        careful = key == _MID
        careful &= ~cert
        if bad_blocks[j]:
            careful |= bad[j]
        r = s.astype(np.float32)
        if careful.any():
            i, n = np.nonzero(careful)
            # a midpoint that s holds exactly is a true tie, which the cast breaks to even
            cs, Ss, ss = c[i, n], S[j][i, n], s[i, n]
            v = ss - cs
            inexact = (cs - (ss - v)) + (Ss - v) != 0
            if bad_blocks[j]:
                inexact |= bad[j][i, n]
            if inexact.any():
                i, n, cs = i[inexact], n[inexact], cs[inexact]
                r[i, n] = _exact_block_step(Ab[j][i] * Bb[j][:, n].T, cs)
        c = r.astype(np.float64)
    return c


def _exact_decided_step(c, S, T, k_bound, Ab, Bb, pa, pb):
    """One ExactBlockUnit step from a float64 block sum (see :func:`_exact_chain_fast`).

    Where every term of ``c + sum(products)`` is a multiple of ``2**L`` (L bounded from below by the
    rows' and columns' lowest bits, ``pa = 2**(La + 53)`` and ``pb = 2**Lb``, and by C's, an FP32
    value's exponent less 23) and ``T + |c|`` is below ``2**(L + 53)``, every partial sum is exact in
    float64 whatever the order: ``s`` is the exact sum and its float32 cast the step's rounding, with
    no bound to check (a zero sum still takes the exact path, whose zero is +0: a float64 sum of signed
    zeros could give -0).  The other positions, usually few, are decided against the error bound one
    by one."""
    s = c + S
    mag = T + np.abs(c)
    # mag < 2**(L + 53) with L = min(La + Lb, e_C - 23): below pa * pb and below 2**(e_C + 30) (2**e_C
    # from C's float64 exponent field, exact for FP32 subnormals too; no bound from a zero C)
    lim = np.multiply(pa[:, None], pb[None, :])
    pc = (c.view(np.int64) & np.int64(0x7FF << 52)).view(np.float64)
    pc *= 2.0**30
    np.putmask(pc, c == 0, np.inf)
    np.minimum(lim, pc, out=lim)
    exact = mag < lim                            # every partial sum holds in 53 bits
    r32 = s.astype(np.float32)
    r = r32.astype(np.float64)
    careful = ~(np.abs(s) < 2.0**127) | (s == 0)
    if not exact.all():
        i, j = np.nonzero(~exact)
        s_i, r_i, r32_i = s[i, j], r[i, j], r32[i, j]
        a_s = np.abs(s_i)
        bound = mag[i, j] * k_bound
        bits = r32_i.view(np.int32)
        field = (bits >> 23) & 0xFF
        # the spacing of FP32 values on s's side of r: 2**(e - 23) (2**-149 for subnormals), halved below
        # a power of two
        sp = np.maximum(field, 1).astype(np.int64) - 150
        sp -= ((bits & 0x7FFFFF) == 0) & (field > 1) & (a_s < np.abs(r_i))
        careful[i, j] |= (a_s <= bound) | (pow2(sp) * 0.5 - np.abs(s_i - r_i) <= bound)
    if careful.any():
        i, j = np.nonzero(careful)
        r[i, j] = _exact_block_step(Ab[i] * Bb[:, j].T, c[i, j])
    return r


def _general_block(unit, ab, bb, c):
    A, B = ab[:, None, :], bb.T[None, :, :]
    p = A * B
    ep = _exps(A, unit.in_format) + _exps(B, unit.b_format)
    res = _floor_sum_step(unit, np.where(np.isfinite(p), p, 0.0), np.where(np.isfinite(p), ep, -(10**6)),
                          np.where(np.isfinite(c), c, 0.0))
    return _specials(res, p, c, unit)


def _join(unit, s_dot, e_dot, c):
    """The C join of a FloorSumUnit step (the module notes), on (rows, N)."""
    F = unit.align_bits
    # floor(log2|x|) from the float64 exponent field: c holds FP32 values and v values far above
    # float64's subnormals, so every non-zero one is a float64 normal
    e_c = np.where(c != 0, _exponent_field(c), -(10**6))
    e_max = np.maximum(e_dot, e_c)
    em = np.where(e_max > -(10**5), e_max, 0)
    c_used = c
    if unit.c_drop_bits is not None:
        c_used = np.where(e_c < e_max - unit.c_drop_bits, 0.0, c)
    v = _floor_to(s_dot, em - unit.join_bits) + _floor_to(c_used, em - F)
    v = np.where(v != 0, _floor_to(v, _exponent_field(v) - unit.frac_bits), v)
    with np.errstate(over="ignore"):
        # v has at most frac_bits + 1 significant bits: the float32 cast is its one nearest-even
        # rounding to FP32 (subnormals included, Inf beyond the largest finite value)
        return v.astype(np.float32).astype(np.float64)


def _exponent_field(x):
    """floor(log2|x|) of float64 normals, from the bit pattern (int64)."""
    return ((x.view(np.int64) >> 52) & 0x7FF) - 1023


def _specials(res, p, c, unit):
    """NaN and Inf: a NaN anywhere or Inf - Inf gives NaN; an infinite product or C gives that Inf;
    CDNA3's check also makes a finite product of 2**128 or more an Inf."""
    inf_p = np.isinf(p)
    if unit.overflow_check:
        inf_p = inf_p | (np.isfinite(p) & (np.abs(p) >= 2.0**128))
    pos = (inf_p & (p > 0)).any(axis=-1) | (c == np.inf)
    neg = (inf_p & (p < 0)).any(axis=-1) | (c == -np.inf)
    nan = np.isnan(p).any(axis=-1) | np.isnan(c) | (pos & neg)
    out = np.where(pos, np.inf, np.where(neg, -np.inf, res))
    return np.where(nan, np.nan, out)


def _exact_block_step(p, c):
    """sum(p) + c, exact, rounded once to nearest-even FP32; NaN / Inf by IEEE rules."""
    terms = np.concatenate([p, c[..., None]], axis=-1)
    finite = np.isfinite(terms).all(axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        special = quantize(terms.sum(axis=-1), FP32)  # IEEE special-value rules for the non-finite
    t = np.where(np.isfinite(terms), terms, 0.0)
    # exact in float64 when every term's bits fit one 53-bit window: the common case
    nz = t != 0
    m, e = np.frexp(np.where(nz, t, 1.0))
    sig = np.ldexp(np.abs(m), 53).astype(np.int64)
    lsb = e.astype(np.int64) - 53 + np.log2((sig & -sig).astype(np.float64)).astype(np.int64)
    hi_e = np.where(nz, e.astype(np.int64), -(10**6)).max(axis=-1)
    lo_e = np.where(nz, lsb, 10**6).min(axis=-1)
    span_ok = (hi_e - lo_e + math.ceil(math.log2(terms.shape[-1] + 1))) <= 52
    s = t.sum(axis=-1)
    out = quantize(s, FP32)
    hard = finite & ~span_ok & nz.any(axis=-1)
    if hard.any():
        for idx in zip(*np.nonzero(hard)):
            vals = list(t[idx])
            hi = math.fsum(vals)
            lo = math.fsum(vals + [-hi])
            out[idx] = round_pair(np.array(hi), np.array(lo), FP32, "nearest_even")
    return np.where(finite, out, special)
