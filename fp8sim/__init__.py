"""fp8sim: a bit-exact NumPy simulator of low-precision arithmetic for ML.

>>> import fp8sim
>>> fp8sim.quantize([0.1, 1000.0], "e4m3", overflow="saturate")
array([1.015625e-01, 4.480000e+02])
"""

from . import codec, formats, reference, rounding
from .codec import decode, encode
from .formats import FloatFormat, get_format
from .rounding import Overflow, RoundingMode, quantize

__version__ = "0.1.0"

__all__ = [
    "FloatFormat",
    "get_format",
    "quantize",
    "encode",
    "decode",
    "RoundingMode",
    "Overflow",
    "__version__",
]
