"""FP8 training in PyTorch with the arithmetic of a simulated GPU (optional extra: ``pip install fp8sim[torch]``).

:class:`Linear` is a drop-in ``torch.nn.Linear`` whose three GEMMs run
through :func:`fp8sim.scaled_matmul` on the CPU:

=========  =====================  ===========================  ==========================
GEMM       computes               A (M x K)                    B (K x N)
=========  =====================  ===========================  ==========================
Fprop      ``y = x W^T``          x, tokens x in-features      W^T, K = in-features
Dgrad      ``dx = dy W``          dy, tokens x out-features    W, K = out-features
Wgrad      ``dW = dy^T x``        dy^T, out-features x tokens  x, K = tokens
=========  =====================  ===========================  ==========================

A :class:`Recipe` says, per GEMM, how each operand is quantized (element
format, granularity and scale rule, as :func:`fp8sim.quantize_scaled` takes
them), which unit accumulates (GPU and instruction), whether partial sums are
promoted to FP32, and the output format.  :func:`recipe` builds the named
ones (:data:`RECIPES`): the DeepSeek-V3 recipe, Transformer Engine's current-
and delayed-scaling recipes, per-tensor scaling with fast accumulation or
with promotion, MXFP8 on B200, and a BF16 baseline.

Choices no measurement decides, each a parameter (README, "FP8 training"):

* ``saved_x``: the Wgrad GEMM's x operand is made from the FP8 operand the
  forward pass saved (``"fp8"``: dequantized, then quantized again in the
  Wgrad's own tiles, what DeepSeek-V3 describes in section 3.5.2), or from the
  layer's input (``"input"``: a second quantization of the high-precision
  input, Transformer Engine's column-wise copy).  With per-tensor scales the
  two give the same bits.
* An operand whose quantization for an earlier GEMM of the same step has the
  transposed tiles, format and rules is reused, not quantized again
  (DeepSeek-V3's 128 x 128 weight blocks serve Fprop and Dgrad; a per-tensor
  scale serves every GEMM and a :class:`fp8sim.DelayedScaling` records one
  amax per tensor per step).  Re-quantizing would give the same bits.
* The bias is added in FP32 after the GEMM's output rounding; the bias
  gradient is the FP32 sum of ``dy`` (torch).
* The BF16 baseline (``recipe("bf16")``) is not a simulated unit: inputs and
  output rounded to BF16, products summed by torch in FP32.
* Features must be multiples of the recipe's block (128 for DeepSeek-V3, 32
  for MXFP8): :class:`Linear` refuses other shapes rather than padding, so no
  GEMM ever sees a zero-padded block.  Token counts need not be multiples:
  the last tile along the tokens is partial.

Examples
--------
>>> import torch, fp8sim.torch as ft
>>> layer = ft.Linear(128, 256, recipe="deepseek-v3")
>>> y = layer(torch.randn(4, 128))
>>> y.shape, y.dtype
(torch.Size([4, 256]), torch.float32)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("fp8sim.torch needs PyTorch: pip install 'fp8sim[torch]' (CPU torch is enough)") from exc

from .formats import get_format
from .gemm import scaled_matmul
from .rounding import quantize
from .scaling import DelayedScaling, ScaledTensor, quantize_scaled, tile_shape

__all__ = ["OperandSpec", "GemmSpec", "Recipe", "RECIPES", "recipe", "Linear", "linear", "swap_linears",
           "gemm_operands"]

GEMMS = ("fprop", "dgrad", "wgrad")
#: which tensor each GEMM's A and B operands come from, and whether it is transposed
_SOURCES = {"fprop": (("x", False), ("w", True)), "dgrad": (("g", False), ("w", False)),
            "wgrad": (("g", True), ("x", False))}


@dataclass(frozen=True)
class OperandSpec:
    """How one GEMM operand is quantized: :func:`fp8sim.quantize_scaled`'s ``fmt``, ``granularity``
    and keyword arguments (``axis``, ``pow2``, ``mx_scale``, ``margin`` ...), in the GEMM's orientation."""

    fmt: str
    granularity: Any = "tensor"
    kwargs: dict = field(default_factory=dict)

    def key(self):
        return (get_format(self.fmt), str(self.granularity), tuple(sorted(self.kwargs.items())))


@dataclass(frozen=True)
class GemmSpec:
    """One GEMM of a recipe: operand quantization, unit, promotion interval and output format.

    ``unit`` is anything :func:`fp8sim.scaled_matmul` takes (``"H100:e4m3"``,
    ``"H100:e5m2,e4m3"``, a block-scaled unit ...); ``a`` / ``b`` of ``None``
    mean a high-precision GEMM (the BF16 baseline: ``a.fmt`` rounding only).
    """

    a: OperandSpec
    b: OperandSpec
    unit: Any = None
    promote_every: int | None = None
    out_format: str = "bfloat16"
    semantics: str | None = None


@dataclass(frozen=True)
class Recipe:
    """A complete FP8 recipe for :class:`Linear`; build named ones with :func:`recipe`.

    Attributes
    ----------
    name, description : str
    fprop, dgrad, wgrad : GemmSpec
    saved_x : str
        ``"fp8"`` or ``"input"``: where the Wgrad GEMM's x operand comes from (module notes).
    block : int
        In- and out-features must be multiples of it.
    delayed : dict or None
        Per-tensor delayed scaling: :class:`fp8sim.DelayedScaling` arguments
        (``history_len``, ``algo``, ``margin``), one history per tensor (x, W, dy) and layer.
    high_precision : bool
        The GEMMs are BF16 ones computed by torch (the baseline), not simulated units.
    """

    name: str
    description: str
    fprop: GemmSpec
    dgrad: GemmSpec
    wgrad: GemmSpec
    saved_x: str = "fp8"
    block: int = 1
    delayed: dict | None = None
    high_precision: bool = False

    def __post_init__(self):
        if self.saved_x not in ("fp8", "input"):
            raise ValueError(f"saved_x must be 'fp8' or 'input', got {self.saved_x!r}")

    def gemm(self, which: str) -> GemmSpec:
        return getattr(self, which)


def _unit(gpu, a_fmt, b_fmt, instruction):
    formats = a_fmt if a_fmt == b_fmt else f"{a_fmt},{b_fmt}"
    return f"{gpu}:{formats}" + (f"@{instruction}" if instruction else "")


def _per_tensor(name, description, gpu, instruction, grad_fmt, promote, delayed=None, margin=0):
    kw = {"margin": margin} if margin else {}
    specs = {}
    for which, (fa, fb) in {"fprop": ("e4m3", "e4m3"), "dgrad": (grad_fmt, "e4m3"),
                            "wgrad": (grad_fmt, "e4m3")}.items():
        specs[which] = GemmSpec(OperandSpec(fa, "tensor", kw), OperandSpec(fb, "tensor", kw),
                                _unit(gpu, fa, fb, instruction), promote[which],
                                "float32" if which == "wgrad" else "bfloat16", "scaled_mm")
    return Recipe(name, description, saved_x="fp8", delayed=delayed, **specs)


def _deepseek(gpu, instruction):
    unit = _unit(gpu, "e4m3", "e4m3", instruction)
    row, block, col = (1, 128), (128, 128), (128, 1)
    return Recipe(
        "deepseek-v3",
        "DeepSeek-V3 (arXiv 2412.19437, section 3.3): E4M3 everywhere; activations and gradients in 1 x 128 "
        "tiles along K, weights in 128 x 128 blocks, FP32 scales; promotion to FP32 every 128 elements "
        "(the scale blocks); x saved for backward in FP8",
        fprop=GemmSpec(OperandSpec("e4m3", row), OperandSpec("e4m3", block), unit, None, "bfloat16", "deepgemm"),
        dgrad=GemmSpec(OperandSpec("e4m3", row), OperandSpec("e4m3", block), unit, None, "bfloat16", "deepgemm"),
        wgrad=GemmSpec(OperandSpec("e4m3", row), OperandSpec("e4m3", col), unit, None, "float32", "deepgemm"),
        saved_x="fp8", block=128)


def _mxfp8(gpu):
    from .hardware import block_scaled_unit

    unit = block_scaled_unit(gpu, "e4m3")
    a = OperandSpec("e4m3", "mx32", {"mx_scale": "ceil"})
    b = OperandSpec("e4m3", "mx32", {"mx_scale": "ceil", "axis": 0})
    return Recipe(
        "mxfp8",
        "Transformer Engine's MXFP8BlockScaling on the block-scaled MMA (tcgen05.mma kind::mxf8f6f4): E4M3 "
        "in blocks of 32 along K with UE8M0 scales rounded up, the scales applied inside the fused sum; every "
        "operand quantized from high precision in the orientation its GEMM needs",
        fprop=GemmSpec(a, b, unit, None, "bfloat16", "block_scale"),
        dgrad=GemmSpec(a, b, unit, None, "bfloat16", "block_scale"),
        wgrad=GemmSpec(a, b, unit, None, "float32", "block_scale"),
        saved_x="input", block=32)


def _bf16():
    spec = OperandSpec("bfloat16")
    return Recipe(
        "bf16", "BF16 baseline: GEMM inputs and outputs rounded to BF16 (Wgrad output FP32), products summed "
        "in FP32 by torch; not a simulated unit",
        fprop=GemmSpec(spec, spec), dgrad=GemmSpec(spec, spec), wgrad=GemmSpec(spec, spec, out_format="float32"),
        saved_x="input", high_precision=True)


_TE_PROMOTE = {"fprop": None, "dgrad": 128, "wgrad": 128}

#: recipe name -> (what it is, builder(gpu, instruction))
RECIPES: dict[str, tuple[str, Any]] = {
    "bf16": ("BF16 baseline (torch, FP32 accumulation)", lambda gpu, instr: _bf16()),
    "deepseek-v3": ("DeepSeek-V3: 1 x 128 / 128 x 128 tiles, E4M3, promotion every 128", _deepseek),
    "te-current": ("Transformer Engine Float8CurrentScaling, HYBRID (E5M2 gradients); fast accumulation in "
                   "Fprop, promotion every 128 in Dgrad and Wgrad",
                   lambda gpu, instr: _per_tensor("te-current", RECIPES["te-current"][0], gpu, instr, "e5m2",
                                                  _TE_PROMOTE)),
    "te-delayed": ("Transformer Engine DelayedScaling (amax history 1024, max), HYBRID; accumulation as te-current",
                   lambda gpu, instr: _per_tensor("te-delayed", RECIPES["te-delayed"][0], gpu, instr, "e5m2",
                                                  _TE_PROMOTE, delayed={"history_len": 1024, "algo": "max"})),
    "tensor-fast": ("per-tensor current scaling, E4M3 everywhere, fast accumulation in all three GEMMs",
                    lambda gpu, instr: _per_tensor("tensor-fast", RECIPES["tensor-fast"][0], gpu, instr, "e4m3",
                                                   dict.fromkeys(GEMMS))),
    "tensor-promote": ("per-tensor current scaling, E4M3 everywhere, promotion to FP32 every 128 in all three",
                       lambda gpu, instr: _per_tensor("tensor-promote", RECIPES["tensor-promote"][0], gpu, instr,
                                                      "e4m3", dict.fromkeys(GEMMS, 128))),
    "mxfp8": ("MXFP8 (Transformer Engine MXFP8BlockScaling) on the B200 block-scaled MMA",
              lambda gpu, instr: _mxfp8(gpu)),
}
_DEFAULT_GPU = {"mxfp8": "B200"}


def recipe(name: str | Recipe, gpu: str | None = None, instruction: str | None = None) -> Recipe:
    """A named recipe (see :data:`RECIPES`) on a GPU's unit (default H100, ``wgmma``; B200 for MXFP8).

    >>> recipe("te-current").dgrad.unit
    'H100:e5m2,e4m3'
    >>> recipe("deepseek-v3", "H800").fprop.unit
    'H800:e4m3'
    """
    if isinstance(name, Recipe):
        if gpu is not None or instruction is not None:
            raise ValueError("gpu= and instruction= apply to a recipe given by name")
        if not name.high_precision:
            _check_units(name)
        return name
    if not isinstance(name, str):
        raise TypeError(f"recipe must be a name or a Recipe, got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    key = {"deepseek": "deepseek-v3", "deepseekv3": "deepseek-v3", "float8currentscaling": "te-current",
           "delayedscaling": "te-delayed", "mxfp8blockscaling": "mxfp8", "bfloat16": "bf16"}.get(key, key)
    if key not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    r = RECIPES[key][1](gpu or _DEFAULT_GPU.get(key, "H100"), instruction)
    if not r.high_precision:
        _check_units(r)
    return r


_get_recipe = recipe  # the name ``recipe`` is also a keyword argument below


def _check_units(r: Recipe):
    """Resolve every GEMM's unit now, so that a format the unit cannot take fails before any GEMM runs."""
    from .gemm import resolve_unit

    for which in GEMMS:
        spec = r.gemm(which)
        try:
            unit = resolve_unit(spec.unit)
        except ValueError as exc:
            raise ValueError(f"recipe {r.name!r}, {which}: {exc}") from None
        for side, op in (("A", spec.a), ("B", spec.b)):
            want = unit.in_format if side == "A" else unit.b_format
            if get_format(op.fmt) != want:
                raise ValueError(f"recipe {r.name!r}, {which}: operand {side} is {get_format(op.fmt).name}, "
                                 f"the unit {unit.name} takes {want.name}")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _transposed(st: ScaledTensor) -> ScaledTensor:
    """The same quantized tensor seen transposed (its tiles and scales transposed with it)."""
    return ScaledTensor(st.values.T, st.scales.T, st.fmt, st.scale_format, tuple(st.tile[::-1]), st.granularity,
                        st.global_scale, st.saturated)


class _Step:
    """The quantized operands of one layer's forward and backward: reuse, delayed scaling, saved FP8 x."""

    def __init__(self, recipe: Recipe, delayed: dict | None):
        self.recipe = recipe
        self.delayed = delayed
        self.done: dict[str, list] = {"x": [], "w": [], "g": []}   # tensor -> [(spec key, ScaledTensor)]

    def operand(self, which, side, source):
        """GEMM ``which``'s operand ``side`` ("a"/"b") quantized from ``source`` (its tensor, untransposed;
        a :class:`fp8sim.ScaledTensor` source is dequantized only if no earlier quantization fits)."""
        gemm = self.recipe.gemm(which)
        spec = gemm.a if side == "a" else gemm.b
        tensor, transpose = _SOURCES[which][0 if side == "a" else 1]
        shape = tuple(source.shape[::-1]) if transpose else tuple(source.shape)
        key = spec.key()
        need = tile_shape(spec.granularity, shape, spec.kwargs.get("axis", -1))
        for k, st in self.done[tensor]:
            have = _transposed(st) if transpose else st
            if k == key and have.tile == need and have.shape == shape:
                return have
        if isinstance(source, ScaledTensor):
            source = source.dequantize()
        arr = source.T if transpose else source
        kwargs = dict(spec.kwargs)
        if self.delayed is not None:
            kwargs["delayed"] = self.delayed[tensor]
        st = quantize_scaled(arr, spec.fmt, spec.granularity, **kwargs)
        self.done[tensor].append((key, _transposed(st) if transpose else st))
        return st


def gemm_operands(r: Recipe, which: str, a_source: np.ndarray, b_source: np.ndarray):
    """The two :class:`fp8sim.ScaledTensor` operands GEMM ``which`` of recipe ``r`` multiplies, quantized
    from its tensors untransposed (``x``, ``W``, ``dy`` as the table in the module notes names them).
    For checking :class:`Linear` against :func:`fp8sim.scaled_matmul`; no reuse, no delayed state."""
    if which not in GEMMS:
        raise ValueError(f"which must be one of {GEMMS}, got {which!r}")
    step = _Step(r, None)
    return step.operand(which, "a", np.asarray(a_source, float)), step.operand(which, "b", np.asarray(b_source, float))


def _gemm(r: Recipe, which: str, A, B) -> np.ndarray:
    spec = r.gemm(which)
    if r.high_precision:
        a = torch.from_numpy(quantize(A, spec.a.fmt)).to(torch.float32)
        b = torch.from_numpy(quantize(B, spec.b.fmt)).to(torch.float32)
        return quantize((a @ b).to(torch.float64).numpy(), spec.out_format)
    return scaled_matmul(A, B, unit=spec.unit, promote_every=spec.promote_every, out_format=spec.out_format,
                         semantics=spec.semantics)


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer_state):
        r, delayed, channel_scale = layer_state
        shape = x.shape
        x2 = _np(x.reshape(-1, shape[-1]))
        w = _np(weight)
        if channel_scale is not None:
            x2, w = x2 * channel_scale, w / channel_scale
        step = _Step(r, delayed)
        if r.high_precision:
            A, B = x2, w.T
        else:
            A, B = step.operand("fprop", "a", x2), step.operand("fprop", "b", w)
        y = _gemm(r, "fprop", A, B)
        if r.high_precision or r.saved_x == "input":
            saved = x2
        else:  # the FP8 operand itself; Wgrad dequantizes it if its tiles differ
            saved = A
        ctx.state = (step, saved, w, channel_scale, shape, bias is not None)
        out = torch.from_numpy(y).to(device=x.device, dtype=x.dtype).reshape(*shape[:-1], -1)
        if bias is not None:
            out = out + bias.to(out.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        step, saved, w, channel_scale, shape, has_bias = ctx.state
        r = step.recipe
        g = _np(grad_out.reshape(-1, grad_out.shape[-1]))
        grad_x = grad_w = grad_b = None
        if r.high_precision:
            dx = _gemm(r, "dgrad", g, w)
            dw = _gemm(r, "wgrad", g.T, saved)
        else:
            dx = _gemm(r, "dgrad", step.operand("dgrad", "a", g), step.operand("dgrad", "b", w))
            # the saved FP8 operand is reused as it is where its tiles fit, else dequantized and quantized again
            dw = _gemm(r, "wgrad", step.operand("wgrad", "a", g), step.operand("wgrad", "b", saved))
        if channel_scale is not None:
            dx, dw = dx * channel_scale, dw / channel_scale
        if ctx.needs_input_grad[0]:
            grad_x = torch.from_numpy(dx).to(device=grad_out.device, dtype=grad_out.dtype).reshape(shape)
        if ctx.needs_input_grad[1]:
            grad_w = torch.from_numpy(dw).to(device=grad_out.device, dtype=grad_out.dtype)
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        return grad_x, grad_w, grad_b, None


def _check_features(r: Recipe, in_features: int, out_features: int):
    for what, n in (("in_features", in_features), ("out_features", out_features)):
        if n % r.block:
            raise ValueError(f"recipe {r.name!r} scales in blocks of {r.block} along K: {what}={n} is not a "
                             f"multiple of {r.block} (fp8sim refuses rather than pads; pad the layer yourself "
                             "or choose a per-tensor recipe)")


def _delayed_state(r: Recipe):
    if r.delayed is None:
        return None
    fmts = {"x": r.fprop.a.fmt, "w": r.fprop.b.fmt, "g": r.dgrad.a.fmt}
    return {t: DelayedScaling(f, **r.delayed) for t, f in fmts.items()}


def _channel_scale(channel_scale, in_features):
    if channel_scale is None:
        return None
    d = _np(torch.as_tensor(channel_scale))
    if d.shape != (in_features,):
        raise ValueError(f"channel_scale must have shape ({in_features},), got {d.shape}")
    m, _ = np.frexp(d)
    if not (np.isfinite(d).all() and (d > 0).all() and (np.abs(m) == 0.5).all()):
        raise ValueError("channel_scale must hold positive powers of two (so that scaling is exact)")
    return d


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
           recipe: str | Recipe = "deepseek-v3", channel_scale=None, _delayed=None) -> torch.Tensor:
    """``torch.nn.functional.linear`` with its Fprop, Dgrad and Wgrad GEMMs run by fp8sim under ``recipe``.

    ``channel_scale`` (optional, powers of two, one per input feature): the GEMMs multiply ``x`` by it
    and divide the weight's columns by it, exactly, so the layer's function is unchanged in exact
    arithmetic and only quantization sees the scaled channels (the outlier stress of
    ``experiments/fp8_training.py``).  Delayed-scaling recipes need state across calls: use
    :class:`Linear`.
    """
    r = _get_recipe(recipe)
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x's last dimension ({x.shape[-1]}) must equal weight's in-features "
                         f"(weight shape {tuple(weight.shape)})")
    _check_features(r, weight.shape[1], weight.shape[0])
    if r.delayed is not None and _delayed is None:
        raise ValueError(f"recipe {r.name!r} keeps an amax history per tensor: use fp8sim.torch.Linear")
    return _LinearFunction.apply(x, weight, bias, (r, _delayed, _channel_scale(channel_scale, weight.shape[1])))


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` whose GEMMs run through fp8sim under a :class:`Recipe` (see the module notes).

    Parameters
    ----------
    in_features, out_features, bias, device, dtype
        As ``torch.nn.Linear`` (parameters are the FP32 master weights).
    recipe : str or Recipe
        A name from :data:`RECIPES` or a :class:`Recipe`; default ``"deepseek-v3"``.
    gpu, instruction : str, optional
        The unit a named recipe runs on (default H100 ``wgmma``; B200 for ``"mxfp8"``).
    channel_scale : array_like, optional
        Powers of two per input feature (see :func:`linear`).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *,
                 recipe: str | Recipe = "deepseek-v3", gpu: str | None = None, instruction: str | None = None,
                 channel_scale=None):
        r = _get_recipe(recipe, gpu, instruction)
        _check_features(r, in_features, out_features)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.recipe = r
        self.delayed = _delayed_state(r)
        self.channel_scale = _channel_scale(channel_scale, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x's last dimension is {x.shape[-1]}, the layer takes {self.in_features}")
        return _LinearFunction.apply(x, self.weight, self.bias, (self.recipe, self.delayed, self.channel_scale))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", recipe={self.recipe.name!r}"


def swap_linears(model: torch.nn.Module, recipe: str | Recipe = "deepseek-v3", *, gpu: str | None = None,
                 instruction: str | None = None, skip=(), channel_scale=None) -> torch.nn.Module:
    """Replace every ``torch.nn.Linear`` of ``model`` (in place) by a :class:`Linear` with the same weights.

    ``skip``: names (as ``model.named_modules()`` gives them) to leave alone, e.g. the output head, which
    DeepSeek-V3 keeps in high precision.  ``channel_scale``: a function ``(name, layer) -> scale or None``.
    Every layer to swap is checked before any is replaced, so a refused shape changes nothing.

    >>> import torch, fp8sim.torch as ft
    >>> net = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    >>> _ = ft.swap_linears(net, "te-current", skip={"2"})
    >>> [type(m).__name__ for m in net]
    ['Linear', 'ReLU', 'Linear']
    >>> net[0].recipe.name, hasattr(net[2], "recipe")
    ('te-current', False)
    """
    r = _get_recipe(recipe, gpu, instruction)
    skip = set(skip)
    todo = [(name, m) for name, m in model.named_modules()
            if type(m) is torch.nn.Linear and name not in skip]
    unknown = skip - {name for name, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"skip names no module of the model: {sorted(unknown)}")
    for name, m in todo:
        try:
            _check_features(r, m.in_features, m.out_features)
        except ValueError as exc:
            raise ValueError(f"layer {name!r}: {exc}") from None
    for name, m in todo:
        new = Linear(m.in_features, m.out_features, m.bias is not None, device=m.weight.device,
                     dtype=m.weight.dtype, recipe=r,
                     channel_scale=channel_scale(name, m) if channel_scale is not None else None)
        with torch.no_grad():
            new.weight.copy_(m.weight)
            if m.bias is not None:
                new.bias.copy_(m.bias)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model
