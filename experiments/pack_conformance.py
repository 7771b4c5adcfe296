"""Pack the measured tensor-core outputs into one compressed file the test suite ships.

    python experiments/pack_conformance.py --vectors ../shared/hw-vectors --out tests/data

Reads every set of the text layout (``fp8sim.hardware.load_vectors``) and
writes ``hw_vectors.npz``: per set ``GPU/FMT``, the inputs as codes of their
input format (``a``, ``b``), the addend and the FP32 output as FP32 bit
patterns (``c``, ``d_fp32``), and the FP16-output results where measured
(``d_fp16``, FP32 bit patterns of their values, as in the text files).
``load_vectors`` reads the packed file as it reads the folder, and the
script checks that every array comes back bit for bit.  The data's source
and licence (BSD 2-Clause, F. A. Khattak and M. Mikaitis) are copied beside
it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import fp8sim
from fp8sim.hardware import VECTOR_SETS, has_vectors, load_vectors

try:
    from ._common import out_dir
except ImportError:  # run as a script
    from _common import out_dir


def pack(root, out):
    root, out = Path(root), out_dir(out)
    arrays = {}
    for gpu, fmt_dir in VECTOR_SETS:
        v = load_vectors(root, gpu, fmt_dir)
        key = f"{gpu}/{fmt_dir}"
        arrays[f"{key}/a"] = fp8sim.encode(v["a"], v["in_format"])
        arrays[f"{key}/b"] = fp8sim.encode(v["b"], v["in_format"])
        arrays[f"{key}/c"] = v["c"].astype(np.float32).view(np.uint32)
        arrays[f"{key}/d_fp32"] = v["d_bits"]
        if has_vectors(root, gpu, fmt_dir, "fp16"):
            arrays[f"{key}/d_fp16"] = load_vectors(root, gpu, fmt_dir, output="fp16")["d_bits"]
    path = out / "hw_vectors.npz"
    np.savez_compressed(path, **arrays)
    for gpu, fmt_dir in VECTOR_SETS:  # the packed file reads back exactly
        for output in ("fp32", "fp16"):
            if f"{gpu}/{fmt_dir}/d_{output}" not in arrays:
                continue
            want, got = load_vectors(root, gpu, fmt_dir, output), load_vectors(path, gpu, fmt_dir, output)
            for name in ("a", "b", "c", "d", "d_bits"):
                assert np.array_equal(np.asarray(want[name]).view(np.uint8), np.asarray(got[name]).view(np.uint8)), \
                    (gpu, fmt_dir, output, name)
    for name, dest in (("LICENCE", "HW_VECTORS_LICENCE"), ("README.md", "HW_VECTORS_README.md")):
        (out / dest).write_bytes((root / name).read_bytes())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB, {len(VECTOR_SETS)} sets), checked bit for bit")
    return path


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", required=True, help="the hw-vectors folder (text layout)")
    ap.add_argument("--out", default="tests/data")
    args = ap.parse_args(argv)
    return pack(args.vectors, args.out)


if __name__ == "__main__":
    main()
