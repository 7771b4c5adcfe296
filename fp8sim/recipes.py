"""Scale conventions by the names libraries give them: cuBLASLt's scale modes and Transformer Engine's recipes.

Each name maps to one granularity, scale rule and element format of
:func:`fp8sim.quantize_scaled` (table in the README, with sources).  A note
on words: fp8sim's ``ScaledTensor.scales`` multiply the stored elements back
(``x ~= values * scales``), which is what Transformer Engine calls
``scale_inv``; TE's ``scale`` is its reciprocal, the factor applied before
the cast.  cuBLASLt's ``A_SCALE`` / ``B_SCALE`` pointers hold the same
dequantization factors as fp8sim's ``scales``.

Sources: NVIDIA cuBLAS documentation, ``cublasLtMatmulMatrixScale_t``
(``CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F``, ``OUTER_VEC_32F``,
``VEC128_32F``, ``BLK128x128_32F``, ``VEC32_UE8M0``, ``VEC16_UE4M3``);
Transformer Engine ``transformer_engine.common.recipe`` (``DelayedScaling``,
``Float8CurrentScaling``, ``Float8BlockScaling``, ``MXFP8BlockScaling``,
``NVFP4BlockScaling``); DeepSeek-V3 (arXiv 2412.19437, section 3.3.2) for
the 1 x 128 / 128 x 128 tiles.
"""

from __future__ import annotations

from typing import Any

from .scaling import DelayedScaling, ScaledTensor, quantize_scaled

__all__ = ["SCALE_CONVENTIONS", "scale_convention", "quantize_by_convention"]

#: name -> (what it is, {role: (element format, granularity, quantize_scaled keyword arguments)});
#: roles: "input" (activations, A), "weight" (B, blocks along K), "grad" (gradients)
SCALE_CONVENTIONS: dict[str, tuple[str, dict[str, tuple[str, Any, dict]]]] = {
    "SCALAR_32F": ("cuBLASLt: one FP32 scale per matrix",
                   {r: ("e4m3", "tensor", {}) for r in ("input", "weight", "grad")}),
    "OUTER_VEC_32F": ("cuBLASLt: one FP32 scale per row of A / per column of B",
                      {"input": ("e4m3", "row", {}), "weight": ("e4m3", "col", {}), "grad": ("e4m3", "row", {})}),
    "VEC128_32F": ("cuBLASLt: FP32 scales per 1 x 128 along K",
                   {"input": ("e4m3", (1, 128), {}), "weight": ("e4m3", (128, 1), {}), "grad": ("e4m3", (1, 128), {})}),
    "BLK128x128_32F": ("cuBLASLt: FP32 scales per 128 x 128 block",
                       {r: ("e4m3", (128, 128), {}) for r in ("input", "weight", "grad")}),
    "VEC32_UE8M0": ("cuBLASLt: UE8M0 scales per 32 along K (MXFP8)",
                    {"input": ("e4m3", "mx32", {}), "weight": ("e4m3", "mx32", {"axis": 0}),
                     "grad": ("e4m3", "mx32", {})}),
    "VEC16_UE4M3": ("cuBLASLt: UE4M3 scales per 16 along K, with an FP32 tensor scale (NVFP4)",
                    {"input": ("e2m1", "nvfp4", {}), "weight": ("e2m1", "nvfp4", {"axis": 0}),
                     "grad": ("e2m1", "nvfp4", {})}),
    "Float8CurrentScaling": ("Transformer Engine: per-tensor FP32 scale from this tensor's amax; HYBRID format "
                             "(E4M3 forward, E5M2 gradients)",
                             {"input": ("e4m3", "tensor", {}), "weight": ("e4m3", "tensor", {}),
                              "grad": ("e5m2", "tensor", {})}),
    "DelayedScaling": ("Transformer Engine: per-tensor FP32 scale from an amax history (pass delayed=); HYBRID",
                       {"input": ("e4m3", "tensor", {}), "weight": ("e4m3", "tensor", {}),
                        "grad": ("e5m2", "tensor", {})}),
    "Float8BlockScaling": ("Transformer Engine: 1 x 128 tiles for activations and gradients, 128 x 128 blocks "
                           "for weights, power-of-two scales",
                           {"input": ("e4m3", (1, 128), {"pow2": "ceil"}),
                            "weight": ("e4m3", (128, 128), {"pow2": "ceil"}),
                            "grad": ("e4m3", (1, 128), {"pow2": "ceil"})}),
    "MXFP8BlockScaling": ("Transformer Engine: MXFP8, UE8M0 scales per 32 rounded up (nothing saturates)",
                          {"input": ("e4m3", "mx32", {"mx_scale": "ceil"}),
                           "weight": ("e4m3", "mx32", {"mx_scale": "ceil", "axis": 0}),
                           "grad": ("e4m3", "mx32", {"mx_scale": "ceil"})}),
    "NVFP4BlockScaling": ("Transformer Engine: NVFP4, E2M1 with UE4M3 scales per 16 and an FP32 tensor scale",
                          {"input": ("e2m1", "nvfp4", {}), "weight": ("e2m1", "nvfp4", {"axis": 0}),
                           "grad": ("e2m1", "nvfp4", {})}),
}

_ROLES = ("input", "weight", "grad")


def scale_convention(name: str, role: str = "input") -> tuple[str, Any, dict]:
    """(element format, granularity, keyword arguments) of a named scale convention for a role.

    Names are matched without regard to case, ``_`` or the ``CUBLASLT_MATMUL_MATRIX_SCALE_`` prefix.

    >>> scale_convention("mxfp8blockscaling", "weight")
    ('e4m3', 'mx32', {'mx_scale': 'ceil', 'axis': 0})
    >>> scale_convention("CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3")[:2]
    ('e2m1', 'nvfp4')
    """
    key = str(name).strip().upper().replace("CUBLASLT_MATMUL_MATRIX_SCALE_", "").replace("_", "")
    for known, (_, roles) in SCALE_CONVENTIONS.items():
        if known.upper().replace("_", "") == key:
            if role not in _ROLES:
                raise ValueError(f"role must be one of {list(_ROLES)}, got {role!r}")
            fmt, gran, kwargs = roles[role]
            return fmt, gran, dict(kwargs)
    raise ValueError(f"unknown scale convention {name!r}; known: {sorted(SCALE_CONVENTIONS)}")


def quantize_by_convention(x, name: str, role: str = "input", *, delayed: DelayedScaling | None = None,
                           **overrides) -> ScaledTensor:
    """:func:`fp8sim.quantize_scaled` with a named convention's format, granularity and rules.

    ``DelayedScaling`` needs ``delayed=`` (an :class:`fp8sim.DelayedScaling` built for the role's
    format); other keyword arguments override the convention's.

    >>> import numpy as np
    >>> quantize_by_convention(np.ones((2, 64)), "VEC32_UE8M0").tile
    (1, 32)
    """
    fmt, gran, kwargs = scale_convention(name, role)
    if name.strip().upper().replace("_", "") == "DELAYEDSCALING":
        if delayed is None:
            raise ValueError("the DelayedScaling convention needs delayed=fp8sim.DelayedScaling(fmt, ...)")
        kwargs["delayed"] = delayed
    elif delayed is not None:
        raise ValueError(f"delayed= applies to the DelayedScaling convention, not {name!r}")
    kwargs.update(overrides)
    return quantize_scaled(x, fmt, gran, **kwargs)
