"""Scaling recipes: per-tensor, per-row/column, tiles and blocks, MX, NVFP4.

A scaled tensor stores element values ``q`` in a low-precision format and
one scale ``s`` per block; it stands for ``x ~= q * s`` (times a global
FP32 scale for NVFP4).  :func:`quantize_scaled` computes the scales from
the data and rounds ``x / s`` onto the element format with saturation;
:class:`ScaledTensor` holds the result, and :class:`DelayedScaling` keeps
the amax history of delayed per-tensor scaling.

Scale rules
-----------
FP32 scales ("tensor", "row", "col", tiles)
    ``s = amax * 2**margin / fmt.max`` over the block (``amax`` at least
    ``amax_epsilon``), optionally a power of two (``pow2="ceil"`` rounds
    ``s`` up, so nothing saturates; ``"floor"`` rounds it down), then
    rounded to nearest-even FP32.  An all-zero block gets ``s = 1``.  This is
    the current-scaling rule of NVIDIA Transformer Engine and the 1x128 /
    128x128 recipe of DeepSeek-V3 (arXiv 2412.19437, section 3.3.2).
"mx32" (OCP Microscaling Formats v1.0, section 6.3)
    32 consecutive elements along the last axis share an E8M0 scale
    ``2**(floor(log2(amax)) - emax_elem)``, clipped to ``2**[-127, 127]``;
    an all-zero block gets ``2**-127``.  Elements are rounded to nearest-even
    with saturation.  ``mx_scale="ceil"`` is the rounding-up variant some
    libraries offer: ``2**ceil(log2(amax / max_elem))``, which never
    saturates but can waste one binade (it differs from OCP exactly when the
    block's scaled amax would exceed ``max_elem``... or be below half of it).
"nvfp4"
    E2M1 elements, 16-element blocks along the last axis with an E4M3
    scale, and one FP32 per-tensor scale ``g = amax / (448 * 6)``: block
    scale ``s_b = e4m3(amax_b / (6 * g))`` (nearest-even, saturating),
    elements ``e2m1(x / (s_b * g))``; ``x ~= q * s_b * g``.

Shapes not divisible by the tile: the last tile along an axis is partial;
its scale is computed from the elements it has (the same as zero padding,
since zeros do not change an amax).

Non-finite inputs: ``nonfinite="raise"`` (default for FP32-scaled recipes)
raises ``ValueError``; ``"propagate"`` (default for MX, as OCP MX section
5.2 does with a NaN scale) gives the block a NaN scale, and the whole block
dequantizes to NaN.  Nothing non-finite becomes a finite number.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


import numpy as np
from numpy.typing import ArrayLike

from .accumulate import round_pair
from .codec import encode
from .formats import FloatFormat, FormatLike, get_format
from .rounding import as_float64, quantize, rounding_mode

#: what a ``granularity`` accepts: a name ("tensor", "row", "col", "mx32", "nvfp4" or an alias) or a tile shape
Granularity = str | tuple

__all__ = ["Granularity", "ScaledTensor", "quantize_scaled", "DelayedScaling", "tile_shape"]

FP32 = get_format("float32")
E8M0 = get_format("float8_e8m0fnu")
E4M3 = get_format("float8_e4m3fn")
E2M1 = get_format("float4_e2m1fn")
MX_ELEMENTS = ("float8_e4m3fn", "float8_e5m2", "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn")


@dataclass(frozen=True)
class ScaledTensor:
    """Element values and block scales; ``dequantize()`` gives ``values * scales``.

    Attributes
    ----------
    values : numpy.ndarray
        Element values (float64, representable in ``fmt``), the input's shape.
    scales : numpy.ndarray
        One scale per tile, shape ``ceil(shape / tile)`` (float64 values
        representable in ``scale_format``).
    fmt, scale_format : FloatFormat
    tile : tuple of int
        Tile shape in elements (the whole tensor for "tensor").
    granularity : str or tuple
        As requested.
    global_scale : float
        Per-tensor FP32 factor (NVFP4; 1.0 otherwise).
    saturated : int
        How many elements were clipped to ``+-fmt.max``.

    Examples
    --------
    >>> import numpy as np, fp8sim
    >>> st = fp8sim.quantize_scaled(np.array([[1.0, -2.0], [300.0, 4.0]]), "e4m3", "row")
    >>> st.scales.ravel().tolist()
    [0.004464285913854837, 0.6696428656578064]
    >>> st.values.tolist()                      # x / scale, rounded to E4M3
    [[224.0, -448.0], [448.0, 6.0]]
    """

    values: np.ndarray
    scales: np.ndarray
    fmt: FloatFormat
    scale_format: FloatFormat
    tile: tuple
    granularity: object
    global_scale: float = 1.0
    saturated: int = 0
    shape: tuple = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(self.values.shape))

    def expanded_scales(self) -> np.ndarray:
        """The scales broadcast to the values' shape."""
        return _expand(self.scales, self.tile, self.shape)

    def dequantize(self) -> np.ndarray:
        """``values * scales * global_scale`` in float64 (exact products)."""
        with np.errstate(invalid="ignore"):
            return self.values * self.expanded_scales() * self.global_scale

    def codes(self):
        """(element codes, scale codes): bit patterns for interop."""
        return encode(self.values, self.fmt), encode(self.scales, self.scale_format)


def _expand(scales, tile, shape):
    """One scale per tile repeated over its tile, cut to ``shape`` (partial edge tiles)."""
    for axis, t in enumerate(tile):
        scales = np.repeat(scales, t, axis=axis)
    return scales[tuple(slice(0, n) for n in shape)]


#: other names of the granularities (any case): cuBLASLt / torch / torchao / Transformer Engine vocabulary
GRANULARITY_ALIASES = {
    "rowwise": "row", "per_row": "row", "axiswise": "row", "per_token": "row",
    "colwise": "col", "columnwise": "col", "per_col": "col", "per_channel": "col",
    "tensorwise": "tensor", "per_tensor": "tensor", "tensor_wise": "tensor",
    "mx": "mx32", "mxfp8": "mx32", "mxfp6": "mx32", "mxfp4": "mx32",
}


def _granularity_name(g):
    if isinstance(g, str):
        key = g.strip().lower()
        return GRANULARITY_ALIASES.get(key, key)
    return g


def tile_shape(granularity: Granularity, shape: tuple, axis: int = -1) -> tuple:
    """Tile shape in elements for a granularity and a tensor shape (``axis``: MX/NVFP4 blocks).

    >>> tile_shape((1, 128), (4, 256)), tile_shape("row", (4, 256)), tile_shape("mx32", (4, 64))
    ((1, 128), (1, 256), (1, 32))
    >>> tile_shape((128, 128), (4, 256))          # clamped to the tensor, never padded
    (4, 128)
    """
    nd = len(shape)
    if isinstance(granularity, str):
        g = _granularity_name(granularity)
        if g == "tensor":
            return tuple(max(1, n) for n in shape)
        if g in ("row", "col"):
            if nd != 2:
                raise ValueError(f"granularity {granularity!r} needs a 2-D tensor, got shape {shape}")
            return (1, shape[1]) if g == "row" else (shape[0], 1)
        if g in ("mx32", "nvfp4"):
            if not -nd <= axis < nd:
                raise ValueError(f"axis {axis} out of range for a tensor of shape {shape}")
            tile = [1] * nd
            tile[axis] = 32 if g == "mx32" else 16
            return tuple(tile)
        raise ValueError(
            f"granularity must be 'tensor', 'row', 'col', 'mx32', 'nvfp4' or a tile shape tuple, got {granularity!r}"
        )
    try:
        sizes = tuple(granularity)
    except TypeError:
        raise ValueError(f"granularity must be a string or a tuple of tile sizes, got {granularity!r}") from None
    if len(sizes) != nd or any(isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or t < 1
                               for t in sizes):
        raise ValueError(f"tile {granularity!r} must have {nd} positive integer sizes for a tensor of shape {shape}")
    # a tile larger than the tensor is clamped to it (the scale covers what exists; nothing is padded)
    return tuple(min(int(t), max(1, n)) for t, n in zip(sizes, shape))


def _block_view(x, tile, fill):
    """x padded (with ``fill``) to whole tiles and reshaped to (blocks..., tile...)."""
    pad = [(0, (-n) % t) for n, t in zip(x.shape, tile)]
    if any(p for _, p in pad):
        x = np.pad(x, pad, constant_values=fill)
    shape = []
    for n, t in zip(x.shape, tile):
        shape += [n // t, t]
    nd = x.ndim
    order = list(range(0, 2 * nd, 2)) + list(range(1, 2 * nd, 2))
    return x.reshape(shape).transpose(order)


def _block_amax(x, tile):
    v = _block_view(np.abs(x), tile, 0.0)
    axes = tuple(range(x.ndim, 2 * x.ndim))
    with np.errstate(invalid="ignore"):
        return v.max(axis=axes)


def _fp32_scales(amax, fmt, margin, amax_epsilon, pow2, what="x"):
    """FP32 scales; ``ValueError`` when a block's scale falls outside FP32's normal range."""
    raw_amax = amax
    amax = np.maximum(amax, amax_epsilon)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = amax * 2.0**margin / fmt.max
        if pow2 == "ceil":
            s = np.exp2(np.ceil(np.log2(s)))
        elif pow2 == "floor":
            s = np.exp2(np.floor(np.log2(s)))
        elif pow2 is not None:
            raise ValueError(f"pow2 must be None, 'ceil' or 'floor', got {pow2!r}")
    s = np.where(amax == 0, 1.0, s)
    low, high = (s < FP32.smallest_normal) & (amax > 0), s > FP32.max
    if low.any() or high.any():
        bad = low | high
        first = float(np.asarray(raw_amax)[bad].reshape(-1)[0])
        kind = "underflows" if low.any() else "overflows"
        raise ValueError(
            f"the FP32 scale amax * 2**margin / {fmt.name}.max {kind} FP32's normal range for "
            f"{int(bad.sum())} block(s) of {what} (first amax {first!r}, margin {margin}); "
            "raise amax_epsilon or change margin"
        )
    return quantize(s, FP32)


def _mx_scales(amax, fmt, mode):
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "floor":
            _, e = np.frexp(amax)
            x = (e - 1).astype(np.float64) - fmt.emax
        elif mode == "ceil":
            x = np.ceil(np.log2(amax / fmt.max))
            # exactness: log2 of a ratio may land a hair off an integer
            x = np.where(np.exp2(x - 1) * fmt.max >= amax, x - 1, x)
            x = np.where(np.exp2(x) * fmt.max < amax, x + 1, x)
        else:
            raise ValueError(f"mx_scale must be 'floor' (OCP) or 'ceil', got {mode!r}")
    x = np.clip(x, -127, 127)
    x = np.where(amax == 0, -127, x)
    return np.where(np.isfinite(amax), np.exp2(np.where(np.isfinite(amax), x, 0)), np.nan)


def _real_param(value, arg):
    """A finite real parameter; ``TypeError`` for a non-number, ``ValueError`` for NaN or Inf."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{arg} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{arg} must be finite, got {value!r}")
    return value


def _split(a):
    c = 134217729.0 * a  # 2**27 + 1 (Dekker)
    hi = c - (c - a)
    return hi, a - hi


def _quotient_residual(x, s, y):
    """Sign-correct ``x - y * s`` (exact product by Dekker's two-product)."""
    p = y * s
    yh, yl = _split(y)
    sh, sl = _split(s)
    err = ((yh * sh - p) + yh * sl + yl * sh) + yl * sl
    return (x - p) - err


def _elements(x, scales_full, fmt, rounding, rng=None, sr_bits=None):
    """Round x / s (the exact quotient) onto fmt with saturation; (values, saturated count).

    Power-of-two scales make the float64 quotient exact, and any rounding
    mode applies to it directly.  Other scales give an inexact float64
    quotient; its exact remainder (Dekker's two-product) then decides the
    cases float64 alone cannot, for nearest-even and toward-zero.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        safe_s = np.where((scales_full == 0) | ~np.isfinite(scales_full), 1.0, scales_full)
        y = np.where(scales_full == 0, 0.0, x / safe_s)
        finite = np.isfinite(y)
        y = np.where(finite, y, 0.0)
        mant, _ = np.frexp(safe_s)
        if np.all(np.abs(mant) == 0.5):  # every scale a power of two: the quotient is exact
            # (a quotient below float64's range keeps a non-zero sign for the directed modes)
            y = np.where((y == 0) & (x != 0) & finite, np.copysign(2.0**-1074, x), y)
            q = quantize(y, fmt, rounding, "saturate", rng=rng, sr_bits=sr_bits)
        else:
            if rounding not in ("nearest_even", "toward_zero"):
                raise ValueError(
                    f"rounding={rounding!r} needs power-of-two scales (MX, or pow2='ceil'/'floor'); "
                    "with other scales use 'nearest_even' or 'toward_zero'"
                )
            q = quantize(y, fmt, rounding, "saturate")
            # only a quotient on a rounding boundary of fmt can need the exact remainder's sign, and
            # such a float64 has a short significand (see round_pair): the remainder for those alone
            low = np.uint64((1 << max(0, 52 - fmt.mantissa_bits - 1)) - 1)
            cand = finite & ((y.view(np.uint64) & low) == 0) & (y != 0)
            if cand.any():
                xc, sc, yc = x[cand], safe_s[cand], y[cand]
                lo = _quotient_residual(xc, sc, yc) / sc
                q[cand] = round_pair(yc, lo, fmt, rounding, "saturate")
    saturated = int(np.sum(np.abs(y) > fmt.max))
    if not finite.all():
        q = np.where(finite, q, np.nan if fmt.has_nan else 0.0)  # the block's NaN scale carries the NaN
    return q, saturated


def quantize_scaled(
    x: ArrayLike,
    fmt: FormatLike = "e4m3",
    granularity: Granularity = "tensor",
    *,
    amax_epsilon: float = 0.0,
    margin: float = 0,
    pow2: str | None = None,
    mx_scale: str = "floor",
    rounding: str = "nearest_even",
    nonfinite: str | None = None,
    delayed: DelayedScaling | None = None,
    axis: int = -1,
    rng: np.random.Generator | int | None = None,
    sr_bits: int | None = None,
) -> ScaledTensor:
    """Quantize with block scales; see the module notes for every rule.

    Parameters
    ----------
    x : array_like
        Real values; 2-D for "row", "col" and tile shapes.
    fmt : str or FloatFormat
        Element format (MX: one of e4m3, e5m2, e2m3, e3m2, e2m1; NVFP4:
        e2m1).
    granularity : str or tuple
        ``"tensor"``, ``"row"``, ``"col"``, a tile shape such as ``(1, 128)``
        or ``(128, 128)``, ``"mx32"`` or ``"nvfp4"``.
    amax_epsilon, margin, pow2
        FP32-scale rules: amax floor, extra headroom in powers of two,
        power-of-two scales (``None``, ``"ceil"``, ``"floor"``).
    mx_scale : str
        ``"floor"`` (OCP MX) or ``"ceil"`` (the rounding-up variant).
    rounding : str
        Rounding of the elements: nearest-even (default) or toward zero
        with any scales; every :class:`fp8sim.RoundingMode`, stochastic
        included, with power-of-two scales (MX, or ``pow2``).
    rng, sr_bits
        Stochastic rounding, as for :func:`fp8sim.quantize` (one draw per
        element in C order).
    nonfinite : str, optional
        ``"raise"`` or ``"propagate"``; default ``"propagate"`` for MX and
        ``"raise"`` otherwise.
    delayed : DelayedScaling, optional
        Per-tensor delayed scaling: use its current scale, then record this
        tensor's amax (only with ``granularity="tensor"``).
    axis : int
        The axis along which "mx32" and "nvfp4" blocks run (default the
        last; for the right operand of a product, along K, use 0).

    Returns
    -------
    ScaledTensor

    Examples
    --------
    >>> import numpy as np, fp8sim
    >>> x = np.array([[0.5, 1.0, 56.0, 2.0]])
    >>> st = fp8sim.quantize_scaled(x, "e2m1", "mx32")     # OCP: 2**(5 - 2); 56 / 8 = 7 saturates
    >>> st.scales.item(), st.values.tolist(), st.saturated
    (8.0, [[0.0, 0.0, 6.0, 0.0]], 1)
    >>> st = fp8sim.quantize_scaled(x, "e2m1", "mx32", mx_scale="ceil")
    >>> st.scales.item(), st.values.tolist(), st.saturated
    (16.0, [[0.0, 0.0, 4.0, 0.0]], 0)
    """
    fmt = get_format(fmt)
    if not fmt.signed or not fmt.has_zero:
        raise ValueError(f"fmt {fmt.name or fmt!r} cannot be an element format: elements need a sign and a zero "
                         "(E8M0 is a scale format)")
    rounding = rounding_mode(rounding).value
    pow2, mx_scale, nonfinite = (v.strip().lower() if isinstance(v, str) else v for v in (pow2, mx_scale, nonfinite))
    margin = _real_param(margin, "margin")
    amax_epsilon = _real_param(amax_epsilon, "amax_epsilon")
    if amax_epsilon < 0:
        raise ValueError(f"amax_epsilon must be >= 0, got {amax_epsilon!r}")
    v, inexact = as_float64(x)
    if inexact is not None:
        raise ValueError("x holds values float64 cannot hold exactly")
    if v.ndim == 0:
        v = v.reshape(1)
    g = _granularity_name(granularity)
    tile = tile_shape(g, v.shape, axis)
    is_mx = g == "mx32"
    if is_mx and fmt.name not in MX_ELEMENTS:
        raise ValueError(f"mx32 elements must be one of {MX_ELEMENTS}, got {fmt.name!r}")
    if g == "nvfp4" and fmt != E2M1:
        raise ValueError(f"nvfp4 elements are float4_e2m1fn, got {fmt.name!r}")
    if nonfinite is None:
        nonfinite = "propagate" if is_mx else "raise"
    if nonfinite not in ("raise", "propagate"):
        raise ValueError(f"nonfinite must be 'raise' or 'propagate', got {nonfinite!r}")
    bad = ~np.isfinite(v)
    if bad.any() and nonfinite == "raise":
        raise ValueError(f"x holds {int(bad.sum())} non-finite value(s); pass nonfinite='propagate' "
                         "to give their blocks a NaN scale")
    if delayed is not None and g != "tensor":
        raise ValueError("delayed scaling applies to granularity='tensor'")
    if delayed is not None and delayed.fmt != fmt:
        raise ValueError(f"this DelayedScaling was built for {delayed.fmt.name}, not {fmt.name}: "
                         "its amax history and scale belong to that format")

    amax = _block_amax(v, tile)
    global_scale = 1.0
    if is_mx:
        scales, scale_format = _mx_scales(amax, fmt, mx_scale), E8M0
    elif g == "nvfp4":
        tensor_amax = float(np.max(np.abs(v))) if v.size else 0.0
        if not math.isfinite(tensor_amax):
            tensor_amax = 0.0
        global_scale = 1.0
        if tensor_amax > 0:
            g_exact = tensor_amax / (E4M3.max * fmt.max)
            if not FP32.smallest_normal <= g_exact <= FP32.max:
                raise ValueError(f"nvfp4: the FP32 tensor scale amax / (448 * 6) = {g_exact!r} falls outside FP32's "
                                 f"normal range (amax {tensor_amax!r})")
            global_scale = float(quantize(g_exact, FP32))
        with np.errstate(invalid="ignore"):
            scales = quantize(np.where(np.isfinite(amax), amax, 0.0) / (fmt.max * global_scale), E4M3,
                              overflow="saturate")
        scales = np.where(np.isfinite(amax), scales, np.nan)
        scale_format = E4M3
    else:
        if delayed is not None:
            scales = np.full(amax.shape, delayed.scale)
        else:
            with np.errstate(invalid="ignore"):
                scales = _fp32_scales(np.where(np.isfinite(amax), amax, 0.0), fmt, margin, amax_epsilon, pow2)
            scales = np.where(np.isfinite(amax), scales, np.nan)
        scale_format = FP32
    full = _expand(scales, tile, v.shape) * global_scale
    values, saturated = _elements(v, full, fmt, rounding, rng, sr_bits)
    if delayed is not None:
        delayed.record(float(amax.max()) if amax.size else 0.0)  # checks the next scale before keeping it
    return ScaledTensor(values, scales, fmt, scale_format, tile, granularity, global_scale, saturated)


class DelayedScaling:
    """Per-tensor delayed scaling with an amax history (NVIDIA Transformer Engine's
    ``DelayedScaling`` recipe; TE's argument names ``amax_history_len``, ``amax_compute_algo``
    and ``fp8_format`` work too, HYBRID meaning E4M3 for this tensor).  ``scale`` here is the
    dequantization factor (TE's ``scale_inv``), not TE's ``scale``.

    Each call of :func:`quantize_scaled` with ``delayed=self`` quantizes with
    the current scale, then appends the tensor's amax to the history (the
    last ``history_len`` values) and recomputes the scale for the next call:
    ``amax_h`` is the history's maximum (``algo="max"``) or its newest entry
    (``"most_recent"``), and ``scale = amax_h * 2**margin / fmt.max`` (1.0
    while ``amax_h`` is 0).  The first call uses ``scale = 1.0``.  Values
    beyond ``fmt.max`` after a stale scale saturate, and
    :attr:`ScaledTensor.saturated` counts them.

    >>> import numpy as np, fp8sim
    >>> ds = fp8sim.DelayedScaling("e4m3", history_len=2)
    >>> [fp8sim.quantize_scaled(np.array([a]), "e4m3", delayed=ds).scales.item() for a in (448.0, 896.0, 1.0, 1.0)]
    [1.0, 1.0, 2.0, 2.0]
    >>> ds.scale, list(ds.history)
    (0.0022321429569274187, [1.0, 1.0])
    """

    def __init__(self, fmt: FormatLike = "e4m3", history_len: int = 1024, algo: str = "max", margin: float = 0,
                 **te_names):
        # Transformer Engine's argument names: amax_history_len, amax_compute_algo, fp8_format
        for te, ours in (("amax_history_len", "history_len"), ("amax_compute_algo", "algo"), ("fp8_format", "fmt")):
            if te in te_names:
                value = te_names.pop(te)
                if te == "fp8_format":
                    value = {"E4M3": "e4m3", "E5M2": "e5m2", "HYBRID": "e4m3"}.get(
                        str(getattr(value, "name", value)).upper(), value)
                fmt, history_len, algo = (value if ours == "fmt" else fmt, value if ours == "history_len" else
                                          history_len, value if ours == "algo" else algo)
        if te_names:
            raise TypeError(f"unexpected arguments {sorted(te_names)}; fp8sim's names: fmt, history_len, algo, margin "
                            "(or Transformer Engine's amax_history_len, amax_compute_algo, fp8_format)")
        self.fmt = get_format(fmt)
        if isinstance(history_len, bool) or not isinstance(history_len, int) or history_len < 1:
            raise ValueError(f"history_len must be a positive int, got {history_len!r}")
        algo = algo.strip().lower() if isinstance(algo, str) else algo
        if algo not in ("max", "most_recent"):
            raise ValueError(f"algo must be 'max' or 'most_recent', got {algo!r}")
        self.algo = algo
        self.margin = _real_param(margin, "margin")
        self.history = deque(maxlen=history_len)
        self.scale = 1.0

    def record(self, amax: float) -> None:
        """Append an amax and update the scale for the next tensor."""
        if isinstance(amax, (bool, np.bool_)) or not isinstance(amax, (int, float, np.integer, np.floating)):
            raise TypeError(f"amax must be a real number, got {amax!r}")
        if not math.isfinite(amax) or amax < 0:
            raise ValueError(f"amax must be finite and >= 0, got {amax!r}")
        history = deque(self.history, maxlen=self.history.maxlen)
        history.append(float(amax))
        amax_h = max(history) if self.algo == "max" else history[-1]
        # computed before anything changes: a scale that would underflow leaves the state as it was
        self.scale = float(_fp32_scales(np.array(amax_h), self.fmt, self.margin, 0.0, None, "the amax history"))
        self.history = history
