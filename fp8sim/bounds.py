"""Error bounds for dot products through a simulated unit.

For a dot product ``s = c + sum_i a_i b_i`` computed by a block-FMA unit
chained over ``n = ceil(K / block)`` steps, let ``T = |c| + sum_i m_i``
with ``m_i = max(|a_i|, 2**emin) * max(|b_i|, 2**emin)`` (``|a_i b_i|``
for normal inputs; the clamp covers subnormals, whose exponent the unit
clamps at ``emin``).  One step truncates at most ``b' = block (+1 when C
joins the alignment)`` terms, each by less than ``2**(E - F)`` with
``2**E <= max(|C|, m_i)``, then rounds with unit roundoff ``u`` (``2**-p``
toward zero, ``2**-(p+1)`` to nearest, ``p = out_frac_bits``), and, when
C is added after the products, rounds once more.  Per step the error
relative to ``T`` is at most

    beta = (1 + b' 2**-F) (1 + u) (1 + u_C) - 1,

and by induction over the chain (the argument of Higham, *Accuracy and
Stability of Numerical Algorithms*, 2nd ed., SIAM 2002, section 3.1, with
``beta`` in the place of ``u``):

    deterministic:   |s_hat - s| <= ((1 + beta)**n - 1) * T.

With promotion every ``P`` elements, each chain of ``n_P = P / block``
steps obeys the same bound on its own terms, and the FP32 accumulation of
the ``K / P`` partial results adds ``gamma_{K/P}(2**-24)`` (Higham, Lemma
3.1, ``gamma_k(u) = k u / (1 - k u)``) times their magnitudes:

    |s_hat - s| <= (((1 + beta)**n_P - 1) + gamma_{K/P} (1 + beta)**n_P) * T.

Probabilistic (Higham & Mary, "A new approach to probabilistic rounding
error analysis", SIAM J. Sci. Comput. 41(5), A2815-A2835, 2019, Theorem
2.4): if the per-step relative errors are independent random variables
of mean zero, then with probability at least
``1 - 2 n exp(-lam**2 (1 - beta)**2 / 2)``

    |s_hat - s| <= (exp(lam sqrt(n) beta + n beta**2 / (1 - beta)) - 1) * T.

Truncation toward zero is *not* mean-zero when the partial sums keep one
sign: for all-positive data the errors add up like ``n`` rather than
``sqrt(n)``, the theorem's assumption does not hold, and only the
deterministic bound is guaranteed; the probabilistic one is meant for
data whose terms have random signs.  The comparison units: ``"exact"`` is one rounding,
``2**-24 |s|``; ``"fp32_fma"`` is recursive summation, ``gamma_K(2**-24) T``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from .accumulate import BlockFMA, ExactUnit, FMAUnit
from .gemm import Unit, resolve_unit
from .rounding import as_float64

__all__ = ["step_beta", "bound_factor", "dot_error_bound"]

U32 = 2.0**-24


def _gamma(k, u):
    if k * u >= 1:
        return math.inf
    return k * u / (1 - k * u)


def _positive_int(value, arg):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    return int(value)


def _expm1_safe(x):
    """``exp(x) - 1``, Inf where it overflows (the bound is then vacuous, never negative or an error)."""
    return math.inf if x > 709 else math.expm1(x)


def step_beta(unit: BlockFMA) -> float:
    """The per-step relative error bound ``beta`` of a block-FMA unit (see the module notes).

    >>> from fp8sim.hardware import tensor_core
    >>> round(step_beta(tensor_core("H100", "e4m3")) * 2**13, 3)   # 33 terms at 2**-13, plus 2**-13
    34.004
    """
    terms = unit.block + (1 if unit.c_in_alignment else 0)
    alpha = terms * 2.0**-unit.align_bits

    def u_of(mode):
        return 2.0**-unit.out_frac_bits if mode == "toward_zero" else 2.0 ** -(unit.out_frac_bits + 1)

    u_c = 0.0 if unit.c_in_alignment else u_of(unit.c_rounding)
    return (1 + alpha) * (1 + u_of(unit.out_rounding)) * (1 + u_c) - 1


def bound_factor(K: int, unit: Unit, *, promote_every: int | None = None, kind: str = "deterministic",
                 lam: float = 5.0) -> float:
    """The factor ``f`` with ``|s_hat - s| <= f * T`` for dot products of length ``K``.

    ``kind``: ``"deterministic"`` or ``"probabilistic"`` (with ``lam``).
    For ``"exact"`` the factor multiplies ``|s|`` instead of ``T``.

    >>> round(bound_factor(4096, "H100:e4m3"), 4), round(bound_factor(4096, "H100:e4m3", promote_every=128), 5)
    (0.6993, 0.01671)
    """
    unit = resolve_unit(unit)
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind not in ("deterministic", "probabilistic"):
        raise ValueError(f"kind must be 'deterministic' or 'probabilistic', got {kind!r}")
    K = _positive_int(K, "K")
    if K > 2**62:
        raise ValueError(f"K must be at most 2**62 (a dot product that long has no meaningful bound), got {K}")
    if promote_every is not None:
        promote_every = _positive_int(promote_every, "promote_every")
        if isinstance(unit, BlockFMA) and promote_every % unit.block:
            raise ValueError(f"promote_every must be a positive multiple of the unit's block ({unit.block}), "
                             f"got {promote_every}")
        if not isinstance(unit, BlockFMA):
            raise ValueError("promote_every applies to a BlockFMA unit")
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, (int, float, np.integer, np.floating)) \
            or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam must be a positive finite number, got {lam!r}")
    if isinstance(unit, ExactUnit):
        return U32
    if isinstance(unit, FMAUnit):
        if kind == "deterministic":
            return _gamma(K, U32)
        return _expm1_safe(lam * math.sqrt(K) * U32 + K * U32**2 / (1 - U32))
    beta = step_beta(unit)
    chain = K if promote_every is None else min(K, promote_every)
    n = math.ceil(chain / unit.block)
    if kind == "deterministic":
        chain_f = _expm1_safe(n * math.log1p(beta))
    else:
        chain_f = _expm1_safe(lam * math.sqrt(n) * beta + n * beta**2 / (1 - beta))
    if promote_every is None or promote_every >= K:
        return chain_f
    n_parts = math.ceil(K / promote_every)
    if kind == "deterministic":
        acc = _gamma(n_parts, U32)
    else:
        acc = _expm1_safe(lam * math.sqrt(n_parts) * U32 + n_parts * U32**2 / (1 - U32))
    return chain_f + acc * (1 + chain_f)


def dot_error_bound(a: ArrayLike, b: ArrayLike, unit: Unit, *, c: ArrayLike | None = None,
                    promote_every: int | None = None, kind: str = "deterministic", lam: float = 5.0) -> np.ndarray:
    """Elementwise bound on ``|matmul(a, b, c, unit=...) - (a @ b + c)|`` (exact ``a @ b + c``).

    Parameters as for :func:`fp8sim.matmul`; ``kind`` and ``lam`` as for
    :func:`bound_factor`.

    >>> import numpy as np
    >>> a = np.full((1, 4096), 0.5); b = np.full((4096, 1), 1.125)
    >>> bool(abs(2162.0 - 2304.0) <= dot_error_bound(a, b, "H100:e4m3")[0, 0])
    True
    """
    unit = resolve_unit(unit)
    a, _ = as_float64(a, "a")
    b, _ = as_float64(b, "b")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a and b must be 2-D with matching K, (M, K) and (K, N); got shapes {a.shape} and {b.shape}")
    K = a.shape[1]
    c_abs = 0.0 if c is None else np.abs(as_float64(c, "c")[0])
    f = bound_factor(K, unit, promote_every=promote_every, kind=kind, lam=lam)  # kind checked (any case) there
    if isinstance(unit, ExactUnit):
        return f * np.abs(a @ b + (0.0 if c is None else c)) * (1 + 2.0**-40)
    ea, eb = (unit.in_format.emin, unit.b_format.emin) if isinstance(unit, BlockFMA) else (-126, -126)
    pa = np.where(a != 0, np.maximum(np.abs(a), 2.0**ea), 0.0)
    pb = np.where(b != 0, np.maximum(np.abs(b), 2.0**eb), 0.0)
    T = (pa @ pb + c_abs) * (1 + 2.0**-40)  # float64 rounding of T itself, covered
    return f * T
