"""AMD CDNA units (fp8sim.cdna): the vectorized engine against its exact scalar twins (issue 10)."""

import dataclasses

import numpy as np
import pytest

import fp8sim
from fp8sim.hardware import tensor_core
from fp8sim.reference import block_fma_dot, exact_block_dot, floor_sum_dot, ftz_dot

from .test_accumulate import check_bound_cases, exact_tier_operands, random_inputs, same

TWIN = {"ExactBlockUnit": exact_block_dot, "FTZUnit": ftz_dot, "FloorSumUnit": floor_sum_dot}

UNITS = [("MI100", "float16", None, "mfma"), ("MI100", "bfloat16", None, "mfma"),
         ("MI250X", "float16", None, "mfma"), ("MI250X", "bfloat16", None, "mfma"),
         ("MI250X", "bfloat16", None, "mfma.legacy"),
         ("MI300X", "float16", None, "mfma"), ("MI300X", "bfloat16", None, "mfma"), ("MI300X", "tf32", None, "mfma"),
         ("MI300X", "e4m3fnuz", None, "mfma"), ("MI300X", "e5m2fnuz", "e4m3fnuz", "mfma")]


@pytest.mark.parametrize("gpu, fa, fb, instr", UNITS, ids=[f"{g}-{a}-{b}-{i}" for g, a, b, i in UNITS])
@pytest.mark.parametrize("K", [3, 16, 40, 130])
def test_engine_equals_twin(gpu, fa, fb, instr, K, rng):
    unit = tensor_core(gpu, fa, b_format=fb, instruction=instr)
    twin = TWIN[type(unit).__name__]
    a = random_inputs(rng, (4, K), unit.in_format, spread=10)
    b = random_inputs(rng, (K, 3), unit.b_format, spread=10)
    c = fp8sim.quantize(rng.standard_normal((4, 3)) * 8, "float32")
    c[0, 0], c[1, 1], c[2, 2] = -0.0, 3 * 2.0**-149, 0.0
    if unit.in_format.has_inf:
        a[3, 1] = np.inf
    if unit.in_format.has_nan:
        b[min(2, K - 1), 2] = np.nan
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[twin(a[i], b[:, j], c[i, j], unit) for j in range(3)] for i in range(4)])
    assert same(got, want).all(), (got, want)


def test_cdna3_floor_details_change_results():
    """The floors are real: rounding C to nearest instead of flooring it changes the result."""
    u = tensor_core("MI300X", "bfloat16")
    got = fp8sim.matmul([[1.0]], [[1.0]], [[-2.0**-30]], unit=u).item()
    assert got == 1 - 2.0**-24 and got != float(np.float32(1 - 2.0**-30))
    assert floor_sum_dot([1.0], [1.0], -2.0**-30, dataclasses.replace(u, align_bits=40)) == 1.0


def test_amd_errors_list_what_the_gpu_has():
    with pytest.raises(ValueError, match="MI300X has no instruction 'wgmma'; it has \\['mfma'\\]"):
        tensor_core("MI300X", "float16", instruction="wgmma")
    with pytest.raises(ValueError, match="MI300X mfma takes"):
        tensor_core("MI300X", "e4m3")        # OCP E4M3 is CDNA4's, not CDNA3's (FNUZ)
    with pytest.raises(ValueError, match="only FP32 output"):
        tensor_core("MI300X", "float16", out_format="float16")
    assert tensor_core("gfx942", "e4m3fnuz") == tensor_core("MI325X", "e4m3fnuz")


@pytest.mark.parametrize("gpu, fa, fb, instr", [("MI300X", "e4m3fnuz", None, "mfma"), ("MI250X", "float16", None, "mfma"),
                                                ("MI100", "bfloat16", None, "mfma"), ("B200", "e2m1", "e4m3", None),
                                                ("RTX50", "e5m2", None, None), ("H100", "e4m3", None, "wgmma")])
def test_new_paths_equal_twin_at_k4096(gpu, fa, fb, instr, rng):
    """Every new path's engine equals its twin over a long chain (issue 10: up to K = 4096)."""
    from .test_accumulate import reference_matmul

    unit = tensor_core(gpu, fa, b_format=fb, instruction=instr)
    a = random_inputs(rng, (2, 4096), unit.in_format, spread=3)
    b = random_inputs(rng, (4096, 2), unit.b_format, spread=3)
    c = fp8sim.quantize(rng.standard_normal((2, 2)), "float32")
    got = fp8sim.matmul(a, b, c, unit=unit)
    twin = TWIN.get(type(unit).__name__)
    want = (np.array([[twin(a[i], b[:, j], c[i, j], unit) for j in range(2)] for i in range(2)]) if twin
            else reference_matmul(a, b, c, unit))
    assert same(got, want).all()


@pytest.mark.parametrize("gpu, fa", [("MI300X", "bfloat16"), ("MI300X", "e4m3fnuz"), ("MI300X", "tf32"),
                                     ("MI250X", "float16")])
def test_whole_array_engines_row_tiles_and_overflow_mid_chunk(gpu, fa, rng, monkeypatch):
    """Several row tiles and chunks, a partial last block, and a chain that overflows to Inf inside a
    chunk (the later blocks of that chunk then take the per-block path): engine equals twin."""
    import fp8sim.cdna as cdna

    monkeypatch.setattr(cdna, "FLOOR_TILE", 2 * 3 * 128)
    unit = tensor_core(gpu, fa)
    twin = TWIN[type(unit).__name__]
    M, K, N = 7, 2 * 128 + 5, 3
    a = random_inputs(rng, (M, K), unit.in_format, spread=3)
    b = random_inputs(rng, (K, N), unit.b_format, spread=3)
    if unit.in_format.emax >= 63:
        a[0, :40] = b[:40, 0] = 1.5 * 2.0**63       # products below 2**128, their sum beyond FP32's max
    c = fp8sim.quantize(rng.standard_normal((M, N)), "float32")
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[twin(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    if unit.in_format.emax >= 63:
        assert np.isinf(got[0, 0])


@pytest.mark.parametrize("instr", ["mfma", "mfma.legacy"])
def test_ftz_flushes_skipped_only_where_no_subnormal_can_arise(instr, rng, monkeypatch):
    """CDNA2: where every non-zero product and C is at least 2**-103, the engine skips the flushes (every
    value of the chain is then a multiple of 2**-126, never subnormal).  Products of 2**-120 that cancel
    to 2**-127 must still be flushed to 0 (not skipped); products at 2**-103 that cancel leave multiples
    of 2**-126, where the skip is exact: engine equals twin in both, and the skip happened only there."""
    import fp8sim.cdna as cdna

    unit = tensor_core("MI250X", "bfloat16", instruction=instr)
    calls = []
    flush = cdna._ftz_inplace
    monkeypatch.setattr(cdna, "_ftz_inplace", lambda x: calls.append(1) or flush(x))
    m = 1 + 2.0**-7
    for e, skipped in ((-120, False), (-103, True)):
        K = 4 * unit.block
        a = fp8sim.quantize(rng.uniform(1, 2, (3, K)), "bfloat16") * 2.0 ** (e // 2)
        b = fp8sim.quantize(rng.uniform(1, 2, (K, 2)), "bfloat16") * 2.0 ** (e - e // 2)
        a[0, :2], b[:2, 0] = [m * 2.0 ** (e // 2), -(2.0 ** (e // 2))], 2.0 ** (e - e // 2)   # p0 + p1 = 2**(e - 7)
        a[0, 2:] = 0.0
        c = np.zeros((3, 2))
        calls.clear()
        got = fp8sim.matmul(a, b, c, unit=unit)
        want = np.array([[ftz_dot(a[i], b[:, j], c[i, j], unit) for j in range(2)] for i in range(3)])
        assert same(got, want).all()
        assert got[0, 0] == (0.0 if e - 7 < -126 else 2.0 ** (e - 7))
        assert (len(calls) <= 1) == skipped


@pytest.mark.parametrize("fa", ["bfloat16", "float16", "tf32", "e4m3fnuz", "e5m2fnuz"])
@pytest.mark.parametrize("band", [(-3, 3), (-28, 27), (-40, 30), (-60, 62), (-110, 10)])
def test_floor_sum_fast_sums_equal_twin(fa, band, rng):
    """CDNA3's truncated sums on float32 products / int8 or int16 exponents where the data allow
    (ordinary data, and bands at the edges of the conditions): engine equals twin, zeros and C included."""
    from fp8sim.cdna import _FastSums

    from .test_accumulate import _addends, _exponent_band

    unit = tensor_core("MI300X", fa)
    lo, hi = band
    fmt = unit.in_format
    if fmt.emin > lo // 2 or fmt.emax < hi - hi // 2:
        pytest.skip("band outside the format")
    M, K, N = 5, 3 * unit.block + 3, 4
    a = _exponent_band(rng, (M, K), fmt, lo // 2, hi // 2)
    b = _exponent_band(rng, (K, N), fmt, lo - lo // 2, hi - hi // 2)
    a[1, :unit.block] = 0.0                     # an all-zero block
    c = _addends(rng, (M, N))
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    if band in ((-3, 3), (-110, 10)):   # ordinary data takes the fast sums; 2**(F - E) beyond float32 does not
        assert _FastSums(unit, a, b).ok == (band == (-3, 3))


@pytest.mark.parametrize("fa", ["e4m3fnuz", "e5m2fnuz"])
def test_floor_sum_parity_sums_far_apart(fa, rng):
    """CDNA3 FP8 (split_parity): the even-k and odd-k sums with largest exponents 0 to 40 binades
    apart, the smaller one of either sign (floored onto the larger one's grid: a negative one that
    falls below it gives -1 unit, a positive one 0; the join shifts int32 sums, past 31 places here
    for E5M2); engine equals twin."""
    unit = tensor_core("MI300X", fa)
    f = unit.in_format
    M, N = 41, 2
    a = np.zeros((M, unit.block))
    b = np.zeros((unit.block, N))
    top = min(f.emax, 15)
    for i in range(M):
        gap = min(i, top - f.emin)                  # binades between the two sums' largest products
        a[i, 0::2] = fp8sim.quantize(rng.uniform(1, 2, unit.block // 2) * 2.0**top, f)
        a[i, 1::2] = fp8sim.quantize(rng.uniform(1, 2, unit.block // 2) * 2.0 ** (top - gap), f)
        a[i, 1::2] *= rng.choice([-1.0, 1.0], unit.block // 2)
    b[:] = fp8sim.quantize(rng.uniform(1, 2, (unit.block, N)), f)
    b[1::2, 1] *= -1.0
    c = np.zeros((M, N))
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    # where the floor shows in FP32: an even-k sum X = 2**t * (1 + 2**-23) (an odd significand) and one
    # negative odd-k product far below X's grid 2**(t - 24): its floor, -1 unit, puts the sum on the
    # midpoint below X, which rounds to even (2**t); truncation would keep X.  t = 14, 28 binades
    # apart (E4M3); t = 20, 40 apart (E5M2: a shift past 31)
    t, lo = (14, -14) if f.emax < 10 else (20, -20)
    a1 = np.zeros((1, unit.block))
    b1 = np.zeros((unit.block, 1))
    a1[0, :3] = [2.0 ** (t // 2), -(2.0 ** (lo // 2)), 2.0 ** ((t - 23) // 2)]
    b1[:3, 0] = [2.0 ** (t - t // 2), 2.0 ** (lo - lo // 2), 2.0 ** (t - 23 - (t - 23) // 2)]
    got = fp8sim.matmul(a1, b1, unit=unit).item()
    assert got == 2.0**t == floor_sum_dot(a1[0], b1[:, 0], 0.0, unit)


@pytest.mark.parametrize("fa", ["bfloat16", "e4m3fnuz"])
def test_floor_sum_join_corner_cases(fa, rng):
    """The fast join's corners, each against the twin: a negative sum that loses bits below frac_bits
    + 1 significant bits (its floor, not truncation, lands on an FP32 midpoint: -2, where truncation
    would keep C), and a block without products beside rows with products, with a C far below them
    (its own exponent aligns it, not the other rows' products)."""
    unit = tensor_core("MI300X", fa)
    fmt = unit.in_format
    if fmt.name == "bfloat16":
        # C's part -(2**33 - 512), the product's -255, in units of 2**-32: -(2**33 - 257) floors to
        # the midpoint -(2**33 - 256), which rounds to even
        a, b, c = np.array([[-1.9921875]]), np.array([[2.0**-25]]), np.array([[-(2 - 2.0**-23)]])
        got = fp8sim.matmul(a, b, c, unit=unit)
        assert got.item() == -2.0 == floor_sum_dot(a[0], b[:, 0], c[0, 0], unit)
    a = np.zeros((3, unit.block))
    a[1:] = fp8sim.quantize(rng.uniform(1, 2, (2, unit.block)), fmt)
    b = fp8sim.quantize(rng.uniform(1, 2, (unit.block, 2)), fmt)
    c = np.array([[1.5 * 2.0**-40, -1.5 * 2.0**-40], [2.0**-40, 0.0], [-3.0, 0.0]])
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, j], c[i, j], unit) for j in range(2)] for i in range(3)])
    assert same(got, want).all()
    assert got[0, 0] == 1.5 * 2.0**-40


@pytest.mark.parametrize("fa", ["float16", "bfloat16"])
def test_exact_block_unit_zero_sums_are_positive(fa, rng):
    """CDNA1: a block whose exact sum is zero gives +0 (the twin's rule), whatever the signs of the zero
    terms and of C, beside rows of ordinary values; the engine sends every zero sum to its exact path,
    since a float64 sum of signed zeros could give -0."""
    unit = tensor_core("MI100", fa)
    K = 3 * unit.block
    a = fp8sim.quantize(rng.standard_normal((4, K)), unit.in_format)
    b = fp8sim.quantize(rng.standard_normal((K, 3)), unit.b_format)
    a[0] = -0.0                                     # products -0 * b: -0 for b > 0, +0 for b < 0
    b[:, 0] = 1.0
    a[1, :unit.block] = [1.0, -1.0] * (unit.block // 2)  # a sum cancelling to +0 in the first block
    c = fp8sim.quantize(rng.standard_normal((4, 3)), "float32")
    c[0] = c[1] = -0.0
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[exact_block_dot(a[i], b[:, j], c[i, j], unit) for j in range(3)] for i in range(4)])
    assert same(got, want).all()
    assert got[0, 0] == 0 and not np.signbit(got[0, 0])


@pytest.mark.parametrize("fa", ["float16", "bfloat16"])
def test_exact_block_unit_decided_sums_equal_twin(fa, rng, monkeypatch):
    """CDNA1's float64 block sums decided against their error bound: ties on an FP32 midpoint, a hair
    above and below it, cancellation to zero, overflow, non-finite C, several chunks and row tiles,
    a partial last block: engine equals twin."""
    import fp8sim.cdna as cdna

    monkeypatch.setattr(cdna, "FLOOR_TILE", 3 * 4 * 16)
    unit = tensor_core("MI100", fa)
    M, K, N = 9, 2 * 64 + 3, 5
    a = random_inputs(rng, (M, K), unit.in_format, spread=10)
    b = random_inputs(rng, (K, N), unit.b_format, spread=10)
    c = fp8sim.quantize(rng.standard_normal((M, N)) * 8, "float32")
    blk = unit.block
    # C = 2**20 (FP32 spacing 2**-3) and products 2**-4 (the midpoint) plus or minus 2**-48: float64 loses
    # the 2**-48 (a 69-bit span) and sees a tie, the exact sum lies a hair above / below it
    # (and C = 2**20 with products -2**-5 - 2**-48: the midpoint below a power of two, half as far)
    cases = [(2.0**20, 2.0**-2, 1.0), (2.0**20 + 2.0**-3, 2.0**-2, -1.0), (2.0**20, 2.0**-2, 0.0),
             (2.0**20, -(2.0**-3), -1.0)]
    for i, (c0, b0, sign) in enumerate(cases):
        row = 6 if i == 3 else i
        a[row, :], b[:blk, i], c[row, i] = 0.0, 0.0, c0     # only the first block of these rows counts
        a[row, 0], b[0, i] = 2.0**-2, b0
        a[row, 1], b[1, i] = 2.0**-24, sign * 2.0**-24
    # row 3 x column 4: products that cancel C exactly (a zero result); row 5: beyond FP32's range; row 4: Inf and NaN C
    a[3, :blk], b[:blk, 4], c[3, 4] = 0.0, 0.0, -3.0
    a[3, 0], b[0, 4] = 1.5, 2.0
    if unit.in_format.emax > 64:
        a[5, :] = 2.0**63
        b[:, 0] = 2.0**63
    c[4, 0], c[4, 1], c[4, 2] = np.inf, -np.inf, np.nan
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[exact_block_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    # the exact sums' roundings
    assert got[0, 0] > 2.0**20 + 2.0**-4 and got[1, 1] < 2.0**20 + 2.0**-3 + 2.0**-4 and got[6, 3] < 2.0**20


@pytest.mark.parametrize("fa", ["float16", "bfloat16"])
def test_exact_block_unit_tiers_equal_twin(fa, rng, monkeypatch):
    """CDNA1's engine tiers (cdna._exact_chain_fast).  On ordinary data (normal inputs, C of either sign
    and -0) every chunk is certified exact in float64 and takes the plain run (an addition and a float32
    cast per block).  A row scaled by 2**-30 (FP16: 2**-12) beside C = 2**20 needs more than 53 bits,
    and a column holding a 2**-24 makes its lowest-bit bound too small to certify: the chunk with them
    takes the checked run, where an exact midpoint (C = 2**24, products summing to 1, which FP32 cannot hold) is a tie
    broken to even.  The engine equals the twin throughout."""
    import fp8sim.cdna as cdna

    calls = {"plain": 0, "checked": 0}

    def counting(name, key):
        f = getattr(cdna, name)

        def run(*args):
            calls[key] += 1
            return f(*args)
        monkeypatch.setattr(cdna, name, run)

    counting("_exact_plain_run", "plain")
    counting("_exact_checked_steps", "checked")
    unit = tensor_core("MI100", fa)
    M, K, N = 6, 3 * cdna.EXACT_CHUNK, 5
    a = fp8sim.quantize(rng.standard_normal((M, K)), unit.in_format)
    b = fp8sim.quantize(rng.standard_normal((K, N)), unit.b_format)
    c = fp8sim.quantize(rng.standard_normal((M, N)) * 8, "float32")
    c[0, 0], c[1, 1] = -0.0, -abs(c[1, 1])

    def check():
        got = fp8sim.matmul(a, b, c, unit=unit)
        want = np.array([[exact_block_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
        assert same(got, want).all()
        return got

    check()
    assert calls == {"plain": 3, "checked": 0}
    chunk = slice(0, cdna.EXACT_CHUNK)                # the first chunk only
    a[2, chunk] = fp8sim.quantize(a[2, chunk] * (2.0**-12 if fa == "float16" else 2.0**-30), unit.in_format)
    c[2] = 2.0**20
    a[3], b[:, 4], c[3, 4] = 0.0, 0.0, 2.0**24
    a[3, :2], b[:2, 4] = [1.0, 0.5], [0.5, 1.0]     # 2**24 + 1: a tie, even is 2**24
    b[5, 4] = 2.0**-24                                # (a[3, 5] is 0: no product, but a tiny lowest bit)
    calls.update(plain=0, checked=0)
    got = check()
    # the first chunk checked; the later ones plain where C = 2**20 and the products fit 53 bits (BF16)
    assert calls["checked"] >= 1 and calls["plain"] + calls["checked"] == 3 and got[3, 4] == 2.0**24
    if fa == "bfloat16":
        assert calls["plain"] == 2


@pytest.mark.parametrize("fmt, instr", [("bfloat16", "mfma"), ("bfloat16", "mfma.legacy"), ("float16", "mfma")])
@pytest.mark.parametrize("negative_zero", ["flush", "keep"])
def test_ftz_zero_signs_equal_twin(fmt, instr, negative_zero):
    """CDNA2 adds in IEEE FP32, so the sign of a zero shows: -0 + -0 is -0, +0 + -0 is +0.  Every pair
    of inputs from {+0, -0, +-1, +- the format's smallest subnormal (read as +0)} against every such
    pair, K = 2 and 4, C = +0 and -0, -0 inputs and C read as +0 (``negative_zero="flush"``, MMA-Sim's)
    or kept: engine and twin agree bit for bit.  (The engine once formed its products by einsum, which
    computes 0 + x * y and so made every zero product +0; found by experiments/fuzz_engines.py.)"""
    import itertools

    unit = dataclasses.replace(tensor_core("MI250X", fmt, instruction=instr), negative_zero=negative_zero)
    s = unit.in_format.smallest_subnormal
    pairs = np.array(list(itertools.product([0.0, -0.0, 1.0, -1.0, s, -s], repeat=2)))
    for a, b in ((pairs, pairs.T), (np.hstack([pairs, pairs[::-1]]), np.vstack([pairs.T, pairs.T]))):
        for c0 in (0.0, -0.0):
            c = np.full((len(a), b.shape[1]), c0)
            got = fp8sim.matmul(a, b, c, unit=unit)
            want = np.array([[ftz_dot(a[i], b[:, j], c0, unit) for j in range(b.shape[1])] for i in range(len(a))])
            assert same(got, want).all()
    got = fp8sim.matmul([[0.0, -0.0]], [[-1.0], [2.0]], [[-0.0]], unit=unit)[0, 0]
    assert got == 0 and np.signbit(got) == (negative_zero == "keep")   # -0 + (-0 + -0), or +0 + (-0 + +0)


@pytest.mark.parametrize("K", [1, 17, 33])
def test_cdna3_parity_sums_of_a_one_element_block(K, rng):
    """MI300X FP8 sums the even-k and odd-k products of a block apart; a last block of one element has
    no odd-k half.  With a NaN in that block (which takes the general path) the engine once failed on
    the empty half (found by experiments/fuzz_engines.py); engine and twin agree."""
    unit = tensor_core("MI300X", "e4m3fnuz")
    assert unit.split_parity
    a = random_inputs(rng, (3, K), unit.in_format)
    b = random_inputs(rng, (K, 2), unit.b_format)
    a[0, K - 1] = np.nan
    c = fp8sim.quantize(rng.standard_normal((3, 2)), "float32")
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, j], c[i, j], unit) for j in range(2)] for i in range(3)])
    assert same(got, want).all()
    assert np.isnan(got[0]).all() and np.isfinite(got[1:]).all()


@pytest.mark.parametrize("fmt, instr", [("bfloat16", "mfma"), ("bfloat16", "mfma.legacy"), ("float16", "mfma")])
def test_ftz_products_by_either_kernel_equal_twin(fmt, instr, rng, monkeypatch):
    """The CDNA2 matrix engine forms its products by einsum where no product can be zero (the faster
    kernel, exact there) and by a broadcast multiply where one can (einsum's 0 + x * y loses the sign
    of a zero product): data without zeros takes einsum, data with a zero or with products below
    float32's range the multiply; both equal the twin, and the kernel chosen is the one expected."""
    from fp8sim import cdna

    unit = tensor_core("MI250X", fmt, instruction=instr)
    used = []
    einsum = np.einsum
    monkeypatch.setattr(cdna.np, "einsum", lambda *args, **kw: used.append("einsum") or einsum(*args, **kw))
    f = unit.in_format
    a = fp8sim.quantize(rng.standard_normal((5, 64)), f)
    b = fp8sim.quantize(rng.standard_normal((64, 4)), f)
    c = fp8sim.quantize(rng.standard_normal((5, 4)), "float32")
    tiny = a.copy()
    tiny[0, 3] = 2.0**-14 if fmt == "float16" else 2.0**-120    # a product below float32's range (bf16)
    zero = a.copy()
    zero[1, 5] = 0.0
    for x, kernel in ((a, "einsum"), (zero, "multiply")) + (((tiny, "multiply"),) if fmt == "bfloat16" else ()):
        used.clear()
        bb = b.copy()
        if x is tiny:
            bb[3] = -(2.0**-40)
        got = fp8sim.matmul(x, bb, c, unit=unit)
        want = np.array([[ftz_dot(x[i], bb[:, j], c[i, j], unit) for j in range(4)] for i in range(5)])
        assert same(got, want).all()
        assert (used == ["einsum"]) == (kernel == "einsum")


def _exact_tier_calls(monkeypatch):
    """Record what each CDNA3 exact-tier step returned (True: the tier computed the tile-step)."""
    import fp8sim.cdna as cdna

    calls = []
    step = cdna._ExactSums.step

    def spy(self, *args):
        calls.append(step(self, *args))
        return calls[-1]

    monkeypatch.setattr(cdna._ExactSums, "step", spy)
    return calls


@pytest.mark.parametrize("fa, fb", [("e4m3fnuz", None), ("e5m2fnuz", "e4m3fnuz"), ("bfloat16", None)])
def test_floor_sum_exact_tier_equals_twin(fa, fb, rng, monkeypatch):
    """CDNA3's exact tier (a step as the float32 cast of S + C, S the block's exact product sum by a
    float64 matrix product) on data where it runs: ordinary values (BF16 over few binades, where its
    products stay on the grid), C from zero and tiny to huge against the products (the elements that
    fail the bounds on |C| take the join), zero rows and -0, K not a multiple of the block; engine equals
    twin, and the tier computed tile-steps."""
    calls = _exact_tier_calls(monkeypatch)
    unit = tensor_core("MI300X", fa, b_format=fb)
    M, N, K = 24, 16, 5 * unit.block + 3
    a, b = exact_tier_operands(rng, unit, M, K, N)
    c = fp8sim.quantize(rng.standard_normal((M, N)) * 2.0 ** rng.integers(-30, 30, (M, N)), "float32")
    c[rng.random((M, N)) < 0.2] = 0.0
    c[3, :4] = -0.0
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
    assert same(got, want).all()
    assert any(calls)


def test_floor_sum_exact_tier_bounds(rng, monkeypatch):
    """Each of the exact tier's conditions at its edge, one element past it among ordinary ones (so
    the tier runs and sends that element to the join or the general sums): where the tier's bound were one binade
    looser, the cast of S + C would round a value the unit floors onto an FP32 midpoint first, and
    the result would differ from the twin's by one unit in the last place.

    - C 2 binades below the products (``e_C = e_dot - 2``): C's floor onto ``2**(e_dot - 24)`` drops
      its last bit (S = 1, C = (2**21 + 2.75) * 2**-23: 1.25 + 2.5 units of 2**-23, a tie, to even);
    - C far above the products' grid (``e_C = Lb + 31``): the sum carries into the next binade, where
      the floor to 31 fraction bits drops S's last bit (C = 2**12 - 2**-12, S = 513 * 2**-20);
    - a block whose products span 25 binades of grid (``e_dot - Lb = 25``): the odd-k product 81 *
      2**-20 floored onto the even-k sum's grid 2**-19 (C = 384, S = 32 + 81 * 2**-20), and the same with
      C = 0 (which needs no bound on |C|, only the grid: S = 32 + 81 * 2**-19 + 81 * 2**-20)."""
    calls = _exact_tier_calls(monkeypatch)
    unit = tensor_core("MI300X", "e4m3fnuz")
    cases = [([1.0], [1.0], (2.0**21 + 2.75) * 2.0**-23, 1.25 + 2.0**-22),
             ([1.125 * 2.0**-6, 1.125 * 2.0**-7], [1.5 * 2.0**-6, 1.125 * 2.0**-7], 2.0**12 - 2.0**-12, 2.0**12),
             ([8.0, 1.125 * 2.0**-7], [4.0, 1.125 * 2.0**-7], 384.0, 416.0 + 2.0**-14),
             ([8.0, 1.125 * 2.0**-7, 1.125 * 2.0**-7], [4.0, 1.125 * 2.0**-7, 1.125 * 2.0**-6], 0.0, 32 + 60 * 2.0**-18)]
    check_bound_cases(rng, unit, floor_sum_dot, cases)
    assert calls == [True]


@pytest.mark.parametrize("gpu, fa", [("MI300X", "e4m3fnuz"), ("B200", "e4m3")])
def test_exact_tiers_equal_twin_at_k4096(gpu, fa, rng, monkeypatch):
    """The exact tiers (CDNA3's and NVIDIA's) over a long chain (issue 10: up to K = 4096), computing
    most of its steps (C grows beside the products): engine equals twin."""
    import fp8sim.accumulate as acc
    import fp8sim.cdna as cdna

    ran = []
    check = acc.ExactBlocks.check

    def spy(self, *args):
        res = check(self, *args)
        ran.append(res is not None)
        return res

    monkeypatch.setattr(acc.ExactBlocks, "check", spy)
    unit = tensor_core(gpu, fa)
    twin = floor_sum_dot if isinstance(unit, cdna.FloorSumUnit) else block_fma_dot
    a = fp8sim.quantize(rng.standard_normal((8, 4096)), unit.in_format, overflow="saturate")
    b = fp8sim.quantize(rng.standard_normal((4096, 8)), unit.b_format, overflow="saturate")
    got = fp8sim.matmul(a, b, unit=unit)
    want = np.array([[twin(a[i], b[:, j], 0.0, unit) for j in range(8)] for i in range(8)])
    assert same(got, want).all()
    assert sum(ran) > 4096 // unit.block // 2


@pytest.mark.parametrize("path", ["run", "run_int8_maxima", "join_into"])
@pytest.mark.parametrize("fa", ["bfloat16", "float16", "tf32"])
def test_floor_sum_join_into_equals_twin(fa, path, rng, monkeypatch):
    """The single-sum join on the chain state against the twin, in the run of whole blocks
    (_FastSums.run) and block by block (_FastSums.join_into; run made to stop at once), C from 2**-40
    to 2**25 times the products (both signs, random FP32 significands): C far below the sum's grid
    (floored, a negative one by one unit), near it, up to and past join_bits - F binades above it (the
    sum floored onto C's grid); blocks without products (a zero row of a) with a tiny C or -0; a
    midpoint that only the floor onto C's grid shows; and C 2**60 above the products, beyond 2**52
    on their grid (the run stops there, join_into declines, and the tile takes join).  The fast
    path named is the path taken; the run finds its exponent maxima from matrix products
    (``block_exponents23``; TF32's blocks of 4 made to) or, ``run_int8_maxima``, from int8 sums."""
    from fp8sim import cdna

    unit = tensor_core("MI300X", fa)
    fmt = unit.in_format
    M, N, K = 101, 6, 3 * unit.block
    a = fp8sim.quantize(rng.uniform(1, 2, (M, K)) * rng.choice([-1.0, 1.0], (M, K)), fmt)
    b = fp8sim.quantize(rng.uniform(1, 2, (K, N)) * rng.choice([-1.0, 1.0], (K, N)), fmt)
    a[rng.random((M, K)) < 0.05] = 0.0
    a[::7] = 0.0                                       # rows without products: the result is C
    shift = np.arange(M * N).reshape(M, N) % 66 - 40   # C's binade relative to the products'
    c = (rng.uniform(1, 2, (M, N)) * 2.0**shift * rng.choice([-1.0, 1.0], (M, N))).astype(np.float32)
    c = c.astype(np.float64)
    c[0, 0], c[7, 1] = -0.0, 2.0**-40
    monkeypatch.setattr(cdna._ExactSums, "for_unit", classmethod(lambda cls, unit, fast: None))  # (BF16's)
    calls, runs = [], []
    join_into, run = cdna._FastSums.join_into, cdna._FastSums.run
    monkeypatch.setattr(cdna._FastSums, "join_into",
                        lambda self, *args: calls.append(1) or join_into(self, *args))
    monkeypatch.setattr(cdna._FastSums, "run", (lambda self, *args: runs.append(1) or run(self, *args))
                        if path.startswith("run") else (lambda self, *args: 0))
    coded, maxima = cdna.block_exponents23, []
    monkeypatch.setattr(cdna, "block_exponents23", lambda *args: maxima.append(1) or coded(*args))
    monkeypatch.setattr(cdna, "CODED_EXP_BLOCK", 10**9 if path == "run_int8_maxima" else 4)
    for rows in (M, 9):                                 # one row tile, and several
        monkeypatch.setattr(cdna, "FLOOR_PLANE", rows * N)
        got = fp8sim.matmul(a, b, c, unit=unit)
        want = np.array([[floor_sum_dot(a[i], b[:, j], c[i, j], unit) for j in range(N)] for i in range(M)])
        assert same(got, want).all()
    assert cdna._FastSums(unit, a, b).run_ok
    if path.startswith("run"):
        assert len(calls) == 0 and len(runs) == 1 + 12  # one run per row tile, none stopped
        assert bool(maxima) == (path == "run")
    else:
        assert len(calls) == 3 + 3 * 12
    calls.clear()
    # C = +-2**24 and the products 1 and 2**-16 (24 binades below C): x = C + 1 + 2**-16 has bits below
    # C's 2**-8 grid; floored there (the join) it is the midpoint C + 1, which rounds to even (C);
    # unfloored it would round away.  Negative: the floor gives -(C + 1 + 2**-8), rounding to -(C + 2)
    a1 = np.zeros((2, unit.block))
    a1[:, :2] = [[1.0, 2.0**-8], [-1.0, -(2.0**-8)]]
    b1 = np.zeros((unit.block, 1))
    b1[:2, 0] = [1.0, 2.0**-8]
    for c1, want1 in (([2.0**24, -(2.0**24)], [2.0**24, -(2.0**24 + 2)]),
                      ([2.0**60, -(2.0**60)], [2.0**60, -(2.0**60)])):
        got = fp8sim.matmul(a1, b1, np.array(c1)[:, None], unit=unit)[:, 0]
        assert got.tolist() == want1 == [floor_sum_dot(a1[i], b1[:, 0], c1[i], unit) for i in range(2)]
    # join_into: both cases (2**60 declined, then join); run: only the 2**60 block, where the run stops
    assert len(calls) == (1 if path.startswith("run") else 2)


def test_floor_sum_run_stops_where_t_may_reach_2_52(monkeypatch):
    """_FastSums.run bounds |C| through the run instead of measuring t: after a block of products
    near 2**21 (C grows from 0 to about 2**24), a block of products near 2**-20 puts t = C * 2**(F - Ez)
    near 2**68, and the run must hand that block to join_into / join (which decline and take it,
    exactly) rather than trust its first measurement of C.  Same bits as the twin, and the hand-over
    is the path taken (for these units the rounded sum would give the same bits: the bound is the
    proof, not the result)."""
    from fp8sim import cdna

    unit = tensor_core("MI300X", "bfloat16")
    k = unit.block
    a = np.zeros((2, 3 * k))
    a[:, :k] = [[2.0**21], [-(2.0**21)]]         # block 1: products 1.25 * 2**21, C to 1.25 * 2**24
    a[:, k:2 * k] = 1.5 * 2.0**-10               # block 2: products near 2**-20
    a[:, 2 * k:] = 1.0                           # block 3: products near 1
    b = np.full((3 * k, 1), 1.25)
    b[k:2 * k] = 1.75 * 2.0**-10
    monkeypatch.setattr(cdna._ExactSums, "for_unit", classmethod(lambda cls, unit, fast: None))
    calls = []
    join_into = cdna._FastSums.join_into
    monkeypatch.setattr(cdna._FastSums, "join_into", lambda self, *args: calls.append(1) or join_into(self, *args))
    got = fp8sim.matmul(a, b, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, 0], 0.0, unit)] for i in range(2)])
    assert same(got, want).all()
    assert cdna._FastSums(unit, a, b).run_ok and len(calls) == 1


@pytest.mark.parametrize("top", [12, 13])
def test_floor_sum_run_floors_a_subnormal_c(top, monkeypatch):
    """The run's float32 ``t = C * 2**(F - Ez)`` for the smallest C: with a product of 2**(2 top) alone
    in its block (its sum 2**24 units), C = -2**-149 floors to -1 unit, so the step is 2**24 - 1 units
    (+2**-149: 2**24).  With top = 12 (products below 2**(F + 1)) t is the subnormal -2**-149 itself
    and the run takes the block; with top = 13, t would fall below 2**-149 and round to -0 in float32,
    so the run is not used (``run_ok``) and join_into takes it."""
    from fp8sim import cdna

    unit = tensor_core("MI300X", "bfloat16")
    monkeypatch.setattr(cdna._ExactSums, "for_unit", classmethod(lambda cls, unit, fast: None))
    a = np.zeros((3, unit.block))
    a[:, 0] = 2.0**top
    b = np.zeros((unit.block, 1))
    b[0, 0] = 2.0**top
    c = np.array([[-(2.0**-149)], [2.0**-149], [-(2.0**-140)]])
    got = fp8sim.matmul(a, b, c, unit=unit)
    want = np.array([[floor_sum_dot(a[i], b[:, 0], c[i, 0], unit)] for i in range(3)])
    assert same(got, want).all()
    units = 2.0 ** (2 * top - 24)
    assert got[:, 0].tolist() == [(2**24 - 1) * units, 2**24 * units, (2**24 - 1) * units]
    assert cdna._FastSums(unit, a, b).run_ok == (top == 12)
