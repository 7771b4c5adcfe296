"""fp8sim: a bit-exact NumPy simulator of low-precision arithmetic for ML.

>>> import fp8sim
>>> fp8sim.quantize([0.1, 1000.0], "e4m3", overflow="saturate").tolist()
[0.1015625, 448.0]
"""

from . import (  # noqa: F401
    accumulate, blockscale, bounds, cdna, codec, formats, gemm, hardware, recipes, reference, rounding, scaling, testing,
)
from .accumulate import BlockFMA, ExactUnit, FMAUnit, SplitFP16Unit
from .codec import decode, encode
from .formats import FloatFormat, get_format, like_input
from .gemm import matmul, scaled_matmul
from .rounding import Overflow, RoundingMode, quantize
from .scaling import DelayedScaling, ScaledTensor, quantize_scaled

__version__ = "0.1.0"

__all__ = [
    "FloatFormat",
    "get_format",
    "like_input",
    "quantize",
    "encode",
    "decode",
    "RoundingMode",
    "Overflow",
    "BlockFMA",
    "ExactUnit",
    "FMAUnit",
    "SplitFP16Unit",
    "matmul",
    "quantize_scaled",
    "scaled_matmul",
    "ScaledTensor",
    "DelayedScaling",
    "hardware",
    "testing",
    "bounds",
    "__version__",
]
