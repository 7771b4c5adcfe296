"""Number formats: one frozen dataclass per format, and the named formats.

A :class:`FloatFormat` holds only base parameters (exponent bits, mantissa
bits, bias, signedness and the scheme that encodes special values).  Every
limit (``max``, ``smallest_normal``, ``eps`` ...) is derived from them, with
the names numpy's ``finfo`` uses.

References
----------
- OCP 8-bit Floating Point Specification (OFP8), rev. 1.0, 2023: E4M3 and
  E5M2 (table 1), saturation and NaN conventions (section 5).
- OCP Microscaling Formats (MX) Specification v1.0, 2023: E8M0 (section
  5.4.1), FP6 E2M3/E3M2 and FP4 E2M1 (section 5.3).
- IEEE 754-2019 for the IEEE scheme; ml_dtypes for the names.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

#: what a ``fmt`` argument accepts: a name or alias, a FloatFormat, a NumPy / ml_dtypes / torch dtype
FormatLike = Union[str, "FloatFormat", np.dtype, type, Any]  # noqa: UP007 (a forward reference)

__all__ = ["Specials", "FloatFormat", "FormatLike", "get_format", "check_bool", "as_numpy", "like_input", "NAMED_FORMATS", "ALIASES"]

#: torch dtypes whose bits are an ml_dtypes dtype of the same name (viewed through an integer type)
_TORCH_VIEWS = {
    "bfloat16": ("int16", "bfloat16"),
    "float8_e4m3fn": ("uint8", "float8_e4m3fn"),
    "float8_e5m2": ("uint8", "float8_e5m2"),
    "float8_e4m3fnuz": ("uint8", "float8_e4m3fnuz"),
    "float8_e5m2fnuz": ("uint8", "float8_e5m2fnuz"),
    "float8_e8m0fnu": ("uint8", "float8_e8m0fnu"),
}


def as_numpy(x: Any, arg: str = "x") -> Any:
    """A NumPy array of another library's array, bit for bit; anything else is returned as it is.

    PyTorch tensors of every dtype, on any device, with or without grad:
    detached, moved to the CPU, and bfloat16 / FP8 tensors reinterpreted
    as the ml_dtypes dtype of the same name (their bits, never a copy
    through float32).  JAX arrays convert through ``numpy.asarray`` (JAX's
    low-precision dtypes are ml_dtypes'); a traced array inside
    ``jax.jit`` has no values, which is a ``TypeError``.

    >>> as_numpy([1.0, 2.0])
    [1.0, 2.0]
    """
    module = type(x).__module__ or ""
    if module.startswith("torch") and hasattr(x, "detach"):
        import ml_dtypes

        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.resolve_conj().resolve_neg()
        name = str(t.dtype).removeprefix("torch.")
        if name in _TORCH_VIEWS:
            import torch

            via, target = _TORCH_VIEWS[name]
            return t.view(getattr(torch, via)).numpy().view(getattr(ml_dtypes, target))
        if name.startswith("float4") or name.startswith("complex") or name.startswith("q"):
            raise TypeError(f"{arg}: torch dtype {t.dtype} has no NumPy equivalent fp8sim reads "
                            "(unpack packed FP4 to one value per element first)")
        return t.numpy()
    if module.startswith("jax"):
        if "Tracer" in type(x).__name__:
            raise TypeError(f"{arg} is a traced JAX array (inside jax.jit): fp8sim computes on concrete values; "
                            "call it outside jit, or through jax.pure_callback")
        return np.asarray(x)
    return x


def like_input(result: np.ndarray, like: Any) -> Any:
    """``result`` (a NumPy array from fp8sim) in the array type of ``like``, the caller's input.

    A torch tensor gives a float64 tensor on ``like``'s device (values
    exact: fp8sim's results are float64 values or integer codes); a JAX
    array gives a ``jax.numpy`` array; anything else gives ``result``.

    >>> import numpy as np
    >>> like_input(np.array([1.5]), [1.0]).tolist()
    [1.5]
    """
    module = type(like).__module__ or ""
    if module.startswith("torch") and hasattr(like, "device"):
        import torch

        return torch.from_numpy(np.ascontiguousarray(result)).to(like.device)
    if module.startswith("jax"):
        import jax.numpy as jnp

        return jnp.asarray(result)
    return result


def check_bool(value: Any, arg: str) -> bool:
    """``value`` if it is a real boolean (Python or NumPy); ``TypeError`` otherwise.

    Strings such as ``"false"`` are refused rather than read as true.

    >>> check_bool(True, "signed")
    True
    >>> check_bool("false", "signed")
    Traceback (most recent call last):
    ...
    TypeError: signed must be True or False, got 'false'
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{arg} must be True or False, got {value!r}")


class Specials(str, enum.Enum):
    """How a format encodes its special values.

    IEEE
        Inf at the all-ones exponent with zero mantissa, NaN at the all-ones
        exponent with any other mantissa (IEEE 754, E5M2, float16 ...).
    FN
        Finite: no Inf; NaN only where exponent and mantissa are all ones
        (OCP E4M3, ml_dtypes ``float8_e4m3fn``, FP6/FP4 have none: see NONE).
    FNUZ
        Finite, unsigned zero: no Inf, no negative zero; the single NaN sits
        at the negative-zero code (ml_dtypes ``*fnuz``).
    NONE
        Every code is a finite number (OCP FP6 and FP4).
    E8M0
        Exponent only, unsigned, no zero and no subnormals; the all-ones code
        is NaN (OCP MX scale format, section 5.4.1).
    """

    IEEE = "ieee"
    FN = "fn"
    FNUZ = "fnuz"
    NONE = "none"
    E8M0 = "e8m0"


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format, described by its base parameters.

    Parameters
    ----------
    exponent_bits : int
        Width of the exponent field, at least 1.
    mantissa_bits : int
        Width of the stored fraction field (without the implicit bit).
    bias : int, optional
        Exponent bias; ``None`` means the IEEE default ``2**(exponent_bits-1) - 1``.
    signed : bool
        Whether the format has a sign bit.
    specials : Specials or str
        The special-value scheme, see :class:`Specials`.
    name : str, optional
        A label used in ``repr`` and error messages.

    Attributes
    ----------
    bits, emin, emax, max, min, smallest_normal, smallest_subnormal, eps,
    epsneg, has_inf, has_nan, has_negative_zero, has_zero, code_dtype
        Derived limits, named as :class:`numpy.finfo` names them; also
        ``numpy.finfo``'s own names: ``tiny``, ``nmant``, ``nexp``,
        ``iexp``, ``machep``, ``minexp``, ``maxexp``, ``precision``,
        ``resolution``, ``dtype``.

    Notes
    -----
    Values are held in float64, so a format must fit inside it: at most 52
    mantissa bits, and its range within float64's.

    Examples
    --------
    >>> from fp8sim.formats import FloatFormat
    >>> e4m3 = FloatFormat(4, 3, specials="fn", name="float8_e4m3fn")
    >>> e4m3.bits, e4m3.max, e4m3.smallest_subnormal
    (8, 448.0, 0.001953125)
    """

    exponent_bits: int
    mantissa_bits: int
    bias: int | None = None
    signed: bool = True
    specials: Specials = Specials.IEEE
    name: str | None = field(default=None, compare=False)

    def __post_init__(self):
        for param in ("exponent_bits", "mantissa_bits"):
            value = getattr(self, param)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{param} must be an int, got {value!r}")
            object.__setattr__(self, param, int(value))
        if self.exponent_bits < 1:
            raise ValueError(f"exponent_bits must be >= 1, got {self.exponent_bits}")
        if self.exponent_bits > 11:
            raise ValueError(f"exponent_bits must be <= 11 (values are float64), got {self.exponent_bits}")
        if not 0 <= self.mantissa_bits <= 52:
            raise ValueError(f"mantissa_bits must be in 0..52, got {self.mantissa_bits}")
        try:
            specials = Specials(self.specials)
        except ValueError:
            raise ValueError(
                f"specials must be one of {[s.value for s in Specials]}, got {self.specials!r}"
            ) from None
        object.__setattr__(self, "specials", specials)
        object.__setattr__(self, "signed", check_bool(self.signed, "signed"))
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (self.exponent_bits - 1) - 1)
        elif isinstance(self.bias, bool) or not isinstance(self.bias, (int, np.integer)):
            raise TypeError(f"bias must be an int or None, got {self.bias!r}")
        object.__setattr__(self, "bias", int(self.bias))
        if specials is Specials.E8M0 and (self.mantissa_bits != 0 or self.signed):
            raise ValueError("specials='e8m0' needs mantissa_bits=0 and signed=False")
        if specials is Specials.FNUZ and not self.signed:
            raise ValueError("specials='fnuz' puts NaN at the negative-zero code: it needs signed=True")
        if specials is Specials.IEEE and (self.exponent_bits < 2 or self.mantissa_bits < 1):
            raise ValueError(
                "specials='ieee' needs exponent_bits >= 2 and mantissa_bits >= 1 (Inf and NaN share an exponent code)"
            )
        if specials is Specials.FN and self.exponent_bits + self.mantissa_bits < 2:
            raise ValueError("specials='fn' needs at least two codes besides the sign")
        if self.emax < self.emin:
            raise ValueError(f"bias={self.bias}: the format has no normal exponent left")
        if self.emax > 1023 or self.emin - self.mantissa_bits < -1074:
            raise ValueError(
                f"bias={self.bias}: the format's range [2**{self.emin - self.mantissa_bits}, "
                f"2**{self.emax + 1}) does not fit in float64"
            )

    # --- derived limits -------------------------------------------------
    @property
    def bits(self) -> int:
        """Total width in bits."""
        return int(self.signed) + self.exponent_bits + self.mantissa_bits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        if self.specials is Specials.E8M0:
            return -self.bias
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        top = 2**self.exponent_bits - 1
        if self.specials is Specials.IEEE:
            top -= 1
        elif self.specials in (Specials.FN, Specials.E8M0) and self.mantissa_bits == 0:
            top -= 1  # the whole all-ones exponent is the NaN code
        return top - self.bias

    @property
    def max(self) -> float:
        """Largest finite value."""
        m = self.mantissa_bits
        top_mantissa = 2**m - 1
        if self.specials is Specials.FN and m > 0:
            top_mantissa -= 1  # all-ones mantissa at the top exponent is NaN
        return float(np.ldexp(float(2**m + top_mantissa), self.emax - m))

    @property
    def smallest_normal(self) -> float:
        """Smallest positive normal value, ``2**emin``."""
        return float(np.ldexp(1.0, self.emin))

    @property
    def smallest_subnormal(self) -> float:
        """Smallest positive value (a subnormal if the format has them)."""
        if self.specials is Specials.E8M0:
            return self.smallest_normal
        return float(np.ldexp(1.0, self.emin - self.mantissa_bits))

    @property
    def eps(self) -> float:
        """Distance from 1 to the next larger value, ``2**-mantissa_bits``."""
        return float(np.ldexp(1.0, -self.mantissa_bits))

    # --- numpy.finfo's names ------------------------------------------
    @property
    def tiny(self) -> float:
        """``numpy.finfo`` name of :attr:`smallest_normal`."""
        return self.smallest_normal

    @property
    def nmant(self) -> int:
        """``numpy.finfo`` name of :attr:`mantissa_bits`."""
        return self.mantissa_bits

    @property
    def nexp(self) -> int:
        """``numpy.finfo`` name of :attr:`exponent_bits`."""
        return self.exponent_bits

    iexp = nexp

    @property
    def machep(self) -> int:
        """Exponent of :attr:`eps` (``numpy.finfo``)."""
        return -self.mantissa_bits

    @property
    def minexp(self) -> int:
        """``numpy.finfo``: the exponent of the smallest normal, :attr:`emin`."""
        return self.emin

    @property
    def maxexp(self) -> int:
        """``numpy.finfo``: the smallest power of two that overflows the exponent, ``emax + 1``."""
        return self.emax + 1

    @property
    def min(self) -> float:
        """Most negative finite value (``-max``; the smallest value for unsigned formats)."""
        return -self.max if self.signed else (0.0 if self.has_zero else self.smallest_subnormal)

    @property
    def epsneg(self) -> float:
        """Distance from 1 to the next smaller value (``numpy.finfo``)."""
        return float(np.ldexp(1.0, -self.mantissa_bits - 1)) if self.emin <= -1 else self.eps

    @property
    def precision(self) -> int:
        """Approximate decimal digits, ``int(-log10(eps))`` (``numpy.finfo``)."""
        return int(-np.log10(self.eps))

    @property
    def resolution(self) -> float:
        """``10**-precision`` (``numpy.finfo``)."""
        return float(10.0 ** -self.precision)

    @property
    def dtype(self):
        """The matching NumPy / ml_dtypes dtype, or ``None`` (``numpy.finfo.dtype``)."""
        return self.ml_dtype

    @property
    def has_inf(self) -> bool:
        return self.specials is Specials.IEEE

    @property
    def has_nan(self) -> bool:
        return self.specials is not Specials.NONE

    @property
    def has_zero(self) -> bool:
        return self.specials is not Specials.E8M0

    @property
    def has_negative_zero(self) -> bool:
        return self.signed and self.specials not in (Specials.FNUZ, Specials.E8M0)

    @property
    def has_subnormals(self) -> bool:
        return self.specials is not Specials.E8M0 and self.mantissa_bits > 0

    @property
    def code_dtype(self) -> np.dtype:
        """Smallest unsigned integer dtype holding one code."""
        if self.bits <= 8:
            return np.dtype(np.uint8)
        return np.dtype(np.uint16 if self.bits <= 16 else np.uint32 if self.bits <= 32 else np.uint64)

    @property
    def ml_dtype(self):
        """The matching ml_dtypes / numpy dtype, or ``None`` if there is none."""
        return _ml_dtype_for(self)

    def values(self) -> np.ndarray:
        """Every finite value of the format, ascending, zero once.

        >>> from fp8sim import get_format
        >>> get_format("e2m1").values()
        array([-6. , -4. , -3. , -2. , -1.5, -1. , -0.5,  0. ,  0.5,  1. ,  1.5,
                2. ,  3. ,  4. ,  6. ])
        """
        if self.bits > 20:
            raise ValueError(f"values() enumerates every code; {self.bits}-bit formats are too large")
        from .codec import decode  # codec builds on formats; imported lazily

        v = decode(np.arange(2**self.bits, dtype=self.code_dtype), self)
        return np.unique(v[np.isfinite(v)] + 0.0)

    def __repr__(self) -> str:
        label = f"{self.name}: " if self.name else ""
        sign = "" if self.signed else ", unsigned"
        return (
            f"FloatFormat({label}e{self.exponent_bits}m{self.mantissa_bits}, bias={self.bias}"
            f"{sign}, specials={self.specials.value}, max={self.max:g})"
        )


def _named(name, e, m, bias=None, signed=True, specials=Specials.IEEE):
    return FloatFormat(e, m, bias, signed, specials, name)


NAMED_FORMATS: dict[str, FloatFormat] = {
    f.name: f
    for f in [
        _named("float8_e4m3fn", 4, 3, specials=Specials.FN),
        _named("float8_e5m2", 5, 2),
        _named("float8_e4m3fnuz", 4, 3, bias=8, specials=Specials.FNUZ),
        _named("float8_e5m2fnuz", 5, 2, bias=16, specials=Specials.FNUZ),
        _named("float8_e4m3b11fnuz", 4, 3, bias=11, specials=Specials.FNUZ),
        _named("float8_e4m3", 4, 3),
        _named("float8_e3m4", 3, 4),
        _named("float8_e8m0fnu", 8, 0, signed=False, specials=Specials.E8M0),
        _named("float6_e2m3fn", 2, 3, specials=Specials.NONE),
        _named("float6_e3m2fn", 3, 2, specials=Specials.NONE),
        _named("float4_e2m1fn", 2, 1, specials=Specials.NONE),
        _named("bfloat16", 8, 7),
        _named("float16", 5, 10),
        _named("tf32", 8, 10),
        _named("float32", 8, 23),
    ]
}

_NAMED_BY_VALUE = {}
for _f in NAMED_FORMATS.values():
    _NAMED_BY_VALUE.setdefault(_f, _f)

#: Short names.  Note ``e4m3`` is the OCP format ``float8_e4m3fn``, not
#: ml_dtypes' IEEE-style ``float8_e4m3``.
ALIASES: dict[str, str] = {
    "e4m3": "float8_e4m3fn",
    "e5m2": "float8_e5m2",
    "e8m0": "float8_e8m0fnu",
    "e2m1": "float4_e2m1fn",
    "e2m3": "float6_e2m3fn",
    "e3m2": "float6_e3m2fn",
    "e4m3fnuz": "float8_e4m3fnuz",
    "e5m2fnuz": "float8_e5m2fnuz",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "fp32": "float32",
    "single": "float32",
    # the names other libraries use (ml_dtypes' suffixes, torch's fp8_ prefixes, OCP MX's ue8m0)
    "e4m3fn": "float8_e4m3fn",
    "fp8_e4m3fn": "float8_e4m3fn",
    "fp8_e4m3": "float8_e4m3fn",
    "fp8e4m3": "float8_e4m3fn",
    "fp8_e5m2": "float8_e5m2",
    "fp8e5m2": "float8_e5m2",
    "fp8_e4m3fnuz": "float8_e4m3fnuz",
    "fp8_e5m2fnuz": "float8_e5m2fnuz",
    "e8m0fnu": "float8_e8m0fnu",
    "ue8m0": "float8_e8m0fnu",
    "fp8_e8m0fnu": "float8_e8m0fnu",
    "e2m1fn": "float4_e2m1fn",
    "fp4_e2m1": "float4_e2m1fn",
    "fp4": "float4_e2m1fn",
    "e2m3fn": "float6_e2m3fn",
    "fp6_e2m3": "float6_e2m3fn",
    "e3m2fn": "float6_e3m2fn",
    "fp6_e3m2": "float6_e3m2fn",
    "e3m4": "float8_e3m4",
    "bfloat": "bfloat16",
    "float": "float32",
    "tensorfloat32": "tf32",
}


def get_format(fmt: FormatLike) -> FloatFormat:
    """Resolve a format name, alias, dtype or :class:`FloatFormat`.

    Parameters
    ----------
    fmt : str, FloatFormat or numpy / ml_dtypes dtype
        ``"float8_e4m3fn"``, ``"e4m3"``, ``ml_dtypes.float8_e5m2``,
        ``numpy.float16`` ... (names are case-insensitive).

    Examples
    --------
    >>> from fp8sim import get_format
    >>> get_format("e5m2").max
    57344.0
    """
    if isinstance(fmt, FloatFormat):
        if fmt.name is None:  # an unnamed format equal to a named one is that format (presets find it)
            return _NAMED_BY_VALUE.get(fmt, fmt)
        return fmt
    if fmt is None:
        raise TypeError("a format is required (a name such as 'e4m3', a FloatFormat or a dtype), got None")
    if (type(fmt).__module__ or "").startswith("torch"):  # a torch dtype: its name
        name = str(fmt).removeprefix("torch.")
        if name in NAMED_FORMATS:
            return NAMED_FORMATS[name]
        raise ValueError(f"torch dtype {fmt} is not a floating-point format fp8sim knows")
    if isinstance(fmt, str):
        key = fmt.strip().lower()
        key = ALIASES.get(key, key)
        if key in NAMED_FORMATS:
            return NAMED_FORMATS[key]
        raise ValueError(
            f"unknown format {fmt!r}; accepted: {sorted(NAMED_FORMATS)} "
            f"or aliases {sorted(ALIASES)}, or a FloatFormat"
        )
    try:
        dt = np.dtype(fmt)
    except TypeError:
        raise TypeError(f"fmt must be a format name, a FloatFormat or a dtype, got {fmt!r}") from None
    if dt.name in NAMED_FORMATS:
        return NAMED_FORMATS[dt.name]
    raise ValueError(f"dtype {dt.name!r} is not a floating-point format fp8sim knows")


@functools.cache
def _ml_dtype_for(fmt: FloatFormat):
    import ml_dtypes

    candidates = {"float16": np.dtype(np.float16), "float32": np.dtype(np.float32)}
    for name in NAMED_FORMATS:
        if hasattr(ml_dtypes, name):
            candidates[name] = np.dtype(getattr(ml_dtypes, name))
    for name, dt in candidates.items():
        if NAMED_FORMATS[name] == fmt:
            return dt
    return None
