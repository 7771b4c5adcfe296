"""Block-scaled matrix units: Blackwell's ``kind::mxf8f6f4`` (tcgen05.mma.block_scale, sm_120 mma.sync.block_scale).

MMA-Sim's ST-FDPA (Chen et al., arXiv 2511.10909; ``../shared/HARDWARE.md``):
the scales enter inside the fused sum.  For each block of 32 products along
K, with E8M0 scales ``2**xa`` (row of A) and ``2**xb`` (column of B):

1. every product is exact and its exponent is ``e_a + e_b + xa + xb`` (input
   exponents clamped at their format's minimum normal exponent); a zero
   product, and a zero C, take the exponent ``e_zero`` (-133), which joins
   the maximum like any other;
2. ``E`` is the largest exponent over the 32 products and C;
3. every scaled product and C is truncated toward zero onto ``2**(E - F)``
   (F = 25), the integers are summed exactly, and the sum is truncated to
   FP32 (zero results are +0); the result is the next block's C;
4. a NaN scale gives NaN.

The scalar twin is :func:`fp8sim.reference.block_scaled_dot`.

``kind::mxf4`` and ``kind::mxf4nvf4`` (MMA-Sim's GST-FDPA), E2M1 elements,
K = 64 per instruction: the products of each group of 16 consecutive k are
summed exactly (not normalised); the group term is that sum times the
significands of its block's two scales, at the exponent ``xa + xb`` of the
scales (UE8M0 scales per 32 or 16 elements, or UE4M3 per 16 with the sign
bit ignored and E4M3's subnormals); a group whose products are all zero,
or whose scale product is zero, takes ``e_zero`` = -139 (a group that
cancels to zero does not); then one truncated fused sum with F = 35 over
the four group terms and C (a zero C at ``e_zero``), truncated to FP32.
Twin: :func:`fp8sim.reference.group_scaled_dot`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .accumulate import clamped_exponents
from .formats import FloatFormat, get_format
from .rounding import quantize

__all__ = ["BlockScaledFMA", "block_scaled_chain", "GroupScaledFMA", "group_scaled_chain", "MXF8F6F4"]

FP32 = get_format("float32")
#: element formats of kind::mxf8f6f4 (every pair)
MXF8F6F4 = ("float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn")


@dataclass(frozen=True)
class BlockScaledFMA:
    """One block-scaled step (``kind::mxf8f6f4``): see the module notes.

    Parameters
    ----------
    in_format, b_format : FloatFormat or str
        Element formats of A and B (any of :data:`MXF8F6F4`).
    block : int
        Products per step and per scale (32).
    align_bits : int
        F (25).
    e_zero : int
        The exponent a zero product or a zero C brings to the maximum (-133).
    rz_overflow : str
        ``"inf"`` (fp8sim's default, MMA-Sim's, and what an H100's truncating
        units give) or ``"max"`` (IEEE toward-zero).

    Examples
    --------
    >>> import numpy as np, fp8sim
    >>> u = fp8sim.blockscale.BlockScaledFMA("e4m3")
    >>> a, b = np.ones((1, 32)), np.ones((32, 1))
    >>> fp8sim.blockscale.block_scaled_chain(a, b, np.zeros((1, 1)), np.array([[2.0**3]]), np.array([[0.5]]), u).item()
    128.0
    """

    in_format: FloatFormat
    b_format: FloatFormat | None = None
    block: int = 32
    align_bits: int = 25
    e_zero: int = -133
    rz_overflow: str = "inf"
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "in_format", get_format(self.in_format))
        object.__setattr__(self, "b_format", self.in_format if self.b_format is None else get_format(self.b_format))
        for f in (self.in_format, self.b_format):
            if f.name not in MXF8F6F4:
                raise ValueError(f"kind::mxf8f6f4 takes element formats {list(MXF8F6F4)}, got {f.name!r}")
        if self.block != 32:
            raise ValueError(f"kind::mxf8f6f4 has blocks of 32, got {self.block!r}")
        if self.rz_overflow not in ("max", "inf"):
            raise ValueError(f"rz_overflow must be 'max' or 'inf', got {self.rz_overflow!r}")


def _rz_fp32(v, unit):
    """A block-scaled step's result: exact ``v`` truncated to FP32 (overflow as ``unit.rz_overflow``
    says), zeros +0."""
    r = quantize(v, FP32, "toward_zero", "infinity") + 0.0
    if unit.rz_overflow == "inf":
        r = np.where(np.abs(v) > FP32.max, np.copysign(np.inf, v), r)
    return r


def _scale_exponents(s, what):
    """Exponents of E8M0 scale values (powers of two or NaN); ValueError for anything else."""
    s = np.asarray(s, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        m, e = np.frexp(s)
    ok = np.isnan(s) | ((m == 0.5) & (s > 0))
    if not ok.all():
        bad = s[~ok].reshape(-1)[:3].tolist()
        raise ValueError(f"{what} must be E8M0 values (positive powers of two, or NaN); got {bad}")
    return np.where(np.isnan(s), 0, e - 1).astype(np.int64), np.isnan(s)


def block_scaled_chain(a, b, c, sa, sb, unit: BlockScaledFMA, *, paired=False) -> np.ndarray:
    """Chain a :class:`BlockScaledFMA` over K: ``a`` (M, K) and ``b`` (K, N) element values, ``sa``
    (M, K/32) and ``sb`` (K/32, N) scale values, ``c`` (M, N).  ``paired``: b is (M, K), ``sb``
    (M, K/32), and row i of a meets row i of b (results (M, 1))."""
    M, K = a.shape
    nb = -(-K // unit.block)
    F = unit.align_bits
    fa, fb = unit.in_format, unit.b_format
    xa, nan_a = _scale_exponents(sa, "sa")
    xb, nan_b = _scale_exponents(sb, "sb")
    if xa.shape != (M, nb) or xb.shape != ((M, nb) if paired else (nb, b.shape[1])):
        raise ValueError(f"scales: sa must be (M, K/32) = {(M, nb)} and sb {(M, nb) if paired else (nb, b.shape[1])}; "
                         f"got {xa.shape} and {xb.shape}")
    out = np.array(c, np.float64, copy=True)
    A = a[:, None, :]
    B = b[:, None, :] if paired else b.T[None, :, :]

    ea, eb = clamped_exponents(A, fa), clamped_exponents(B, fb)
    with np.errstate(invalid="ignore", over="ignore"):
        for j in range(nb):
            kk = slice(j * unit.block, (j + 1) * unit.block)
            p = A[..., kk] * B[..., kk]
            x = xa[:, j][:, None] + (xb[:, j][:, None] if paired else xb[j][None, :])
            nan = nan_a[:, j][:, None] | (nan_b[:, j][:, None] if paired else nan_b[j][None, :])
            e = np.where(p == 0, unit.e_zero, ea[..., kk] + eb[..., kk] + x[..., None])
            _, ec = np.frexp(out)
            e_c = np.where(out == 0, unit.e_zero, ec.astype(np.int64) - 1)
            E = np.maximum(e.max(axis=-1), e_c)
            shift = F - E
            t = np.trunc(p * np.ldexp(1.0, x + shift)[..., None]).sum(axis=-1)
            t += np.trunc(out * np.ldexp(1.0, shift))
            v = np.ldexp(t, -shift)
            out = np.where(nan | np.isnan(out), np.nan, _rz_fp32(v, unit))
    return out


@dataclass(frozen=True)
class GroupScaledFMA:
    """One ``kind::mxf4`` / ``kind::mxf4nvf4`` instruction (K = 64): see the module notes.

    Parameters
    ----------
    block : int
        Elements per scale: 32 (UE8M0) or 16 (UE8M0 or UE4M3).
    scale_format : str
        ``"float8_e8m0fnu"`` (UE8M0) or ``"float8_e4m3fn"`` (UE4M3, sign ignored).

    >>> import numpy as np
    >>> u = GroupScaledFMA(block=16, scale_format="e4m3")
    >>> group_scaled_chain(np.ones((1, 64)), np.ones((64, 1)), np.zeros((1, 1)), np.full((1, 4), 1.5),
    ...                    np.full((4, 1), 2.0), u).item()
    192.0
    """

    block: int = 32
    scale_format: FloatFormat = "float8_e8m0fnu"
    group: int = 16
    align_bits: int = 35
    e_zero: int = -139
    rz_overflow: str = "inf"
    name: str = ""

    def __post_init__(self):
        object.__setattr__(self, "scale_format", get_format(self.scale_format))
        if self.scale_format.name not in ("float8_e8m0fnu", "float8_e4m3fn"):
            raise ValueError(f"scale_format must be UE8M0 (float8_e8m0fnu) or UE4M3 (float8_e4m3fn), "
                             f"got {self.scale_format.name!r}")
        if self.block not in (16, 32) or (self.scale_format.name == "float8_e4m3fn" and self.block != 16):
            raise ValueError(f"block must be 32 or 16 (UE8M0) or 16 (UE4M3), got {self.block!r}")
        if self.rz_overflow not in ("max", "inf"):
            raise ValueError(f"rz_overflow must be 'max' or 'inf', got {self.rz_overflow!r}")

    @property
    def in_format(self):
        return get_format("float4_e2m1fn")

    b_format = in_format


def _scale_parts(s, fmt, what):
    """(significand, exponent, is_nan) of scale values: E8M0 powers of two, or UE4M3 (|value|, E4M3 grid)."""
    s = np.abs(np.asarray(s, np.float64))
    if fmt.name == "float8_e8m0fnu":
        e, nan = _scale_exponents(s, what)
        return np.ones(s.shape), e, nan
    ok = np.isnan(s) | (quantize(np.where(np.isnan(s), 0, s), fmt, overflow="saturate") == s)
    if not ok.all():
        raise ValueError(f"{what} must be UE4M3 values, got {s[~ok].reshape(-1)[:3].tolist()}")
    nan = np.isnan(s)
    _, e = np.frexp(np.where(nan | (s == 0), 1.0, s))
    e = np.maximum(e.astype(np.int64) - 1, fmt.emin)
    return np.where(nan, 0.0, s * np.ldexp(1.0, -e)), e, nan


def group_scaled_chain(a, b, c, sa, sb, unit: GroupScaledFMA, *, paired=False) -> np.ndarray:
    """Chain :class:`GroupScaledFMA` instructions over K (a multiple of 64): ``a`` (M, K) and ``b``
    (K, N) E2M1 values, ``sa`` (M, K/block) and ``sb`` (K/block, N) scale values, ``c`` (M, N)."""
    M, K = a.shape
    if K % 64:
        raise ValueError(f"kind::mxf4 instructions take K = 64: K must be a multiple of 64, got {K}")
    G, F = unit.group, unit.align_bits
    nb = K // unit.block
    sa_s, sa_e, sa_n = _scale_parts(sa, unit.scale_format, "sa")
    sb_s, sb_e, sb_n = _scale_parts(sb, unit.scale_format, "sb")
    if sa_s.shape != (M, nb) or sb_s.shape != ((M, nb) if paired else (nb, b.shape[1])):
        raise ValueError(f"scales: sa must be (M, K/{unit.block}) = {(M, nb)}; got {sa_s.shape} and {sb_s.shape}")
    A = a[:, None, :]
    B = b[:, None, :] if paired else b.T[None, :, :]
    out = np.array(c, np.float64, copy=True)
    with np.errstate(invalid="ignore", over="ignore"):
        for k0 in range(0, K, 64):
            terms, exps, nan = [], [], np.isnan(out)
            for g in range(4):
                kk = slice(k0 + G * g, k0 + G * (g + 1))
                p = A[..., kk] * B[..., kk]
                j = (k0 + G * g) // unit.block
                if paired:
                    s_scale = sa_s[:, j][:, None] * sb_s[:, j][:, None]
                    e_scale = sa_e[:, j][:, None] + sb_e[:, j][:, None]
                    nan = nan | sa_n[:, j][:, None] | sb_n[:, j][:, None]
                else:
                    s_scale = sa_s[:, j][:, None] * sb_s[j][None, :]
                    e_scale = sa_e[:, j][:, None] + sb_e[j][None, :]
                    nan = nan | sa_n[:, j][:, None] | sb_n[j][None, :]
                zero = (p == 0).all(axis=-1) | (s_scale == 0)
                terms.append(p.sum(axis=-1) * s_scale)
                exps.append(np.where(zero, unit.e_zero, e_scale))
            _, ec = np.frexp(out)
            exps.append(np.where(out == 0, unit.e_zero, ec.astype(np.int64) - 1))
            E = np.maximum.reduce(exps)
            t = sum(np.trunc(v * np.ldexp(1.0, e - E + F)) for v, e in zip(terms, exps[:4]))
            t = t + np.trunc(out * np.ldexp(1.0, F - E))
            v = np.ldexp(t, E - F)
            out = np.where(nan, np.nan, _rz_fp32(v, unit))
    return out
