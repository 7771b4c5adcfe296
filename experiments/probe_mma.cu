// One mma.sync per case on uniform operands: every element of A is one code, every element of B
// another, every element of C one FP32 value, so the result does not depend on the fragment layout.
// Built and run by experiments/probe_mma.py (nvcc -arch=sm_90a); needs sm_89 or newer for FP8.
//
// Input (binary, little-endian): int32 n, then n records of
//   int32 kind (0: m16n8k32 E4M3 x E4M3 -> FP32, 1: m16n8k16 BF16 x BF16 -> FP32,
//               2: m16n8k32 E5M2 x E4M3 -> FP32, 3: as 0 with B's two registers given),
//   uint32 a_code, uint32 b_code, uint32 c_bits, uint32 b_hi.
// Kind 3 loads b_code and b_hi as B's two registers (eight E4M3 codes) in every thread: in the
// m16n8k32 layout a thread's eight B elements lie in one column, so every column holds each of the
// eight values four times and every output is the same sum (all_equal checks it).
// Output (binary): for each case, uint32 d_bits (lane 0, register 0) and uint32 all_equal (1 when all
// 128 results of the warp carry the same bits).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

struct Case { int32_t kind; uint32_t a, b, c, b_hi; };

__global__ void probe(const Case* cases, uint32_t* out) {
    const Case cs = cases[blockIdx.x];
    uint32_t a, b, b1;
    if (cs.kind == 1) {  // two BF16 per register
        a = (cs.a & 0xFFFFu) * 0x00010001u;
        b = (cs.b & 0xFFFFu) * 0x00010001u;
        b1 = b;
    } else if (cs.kind == 3) {
        a = (cs.a & 0xFFu) * 0x01010101u;
        b = cs.b;
        b1 = cs.b_hi;
    } else {             // four FP8 per register
        a = (cs.a & 0xFFu) * 0x01010101u;
        b = (cs.b & 0xFFu) * 0x01010101u;
        b1 = b;
    }
    float c = __uint_as_float(cs.c);
    float d0, d1, d2, d3;
    if (cs.kind == 0 || cs.kind == 3) {
        asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a), "r"(a), "r"(a), "r"(a), "r"(b), "r"(b1), "f"(c), "f"(c), "f"(c), "f"(c));
    } else if (cs.kind == 2) {
        asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e4m3.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a), "r"(a), "r"(a), "r"(a), "r"(b), "r"(b1), "f"(c), "f"(c), "f"(c), "f"(c));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a), "r"(a), "r"(a), "r"(a), "r"(b), "r"(b1), "f"(c), "f"(c), "f"(c), "f"(c));
    }
    uint32_t* o = out + blockIdx.x * 128 + threadIdx.x * 4;
    o[0] = __float_as_uint(d0); o[1] = __float_as_uint(d1); o[2] = __float_as_uint(d2); o[3] = __float_as_uint(d3);
}

int main(int argc, char** argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IN OUT\n", argv[0]); return 2; }
    FILE* f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    int32_t n = 0;
    if (fread(&n, 4, 1, f) != 1 || n <= 0) { fprintf(stderr, "bad input\n"); return 2; }
    std::vector<Case> cases(n);
    if (fread(cases.data(), sizeof(Case), n, f) != (size_t)n) { fprintf(stderr, "short input\n"); return 2; }
    fclose(f);
    Case* dc; uint32_t* dout;
    cudaMalloc(&dc, n * sizeof(Case));
    cudaMalloc(&dout, n * 128 * 4);
    cudaMemcpy(dc, cases.data(), n * sizeof(Case), cudaMemcpyHostToDevice);
    probe<<<n, 32>>>(dc, dout);
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) { fprintf(stderr, "CUDA: %s\n", cudaGetErrorString(err)); return 1; }
    std::vector<uint32_t> res(n * 128);
    cudaMemcpy(res.data(), dout, n * 128 * 4, cudaMemcpyDeviceToHost);
    FILE* g = fopen(argv[2], "wb");
    for (int i = 0; i < n; ++i) {
        uint32_t first = res[i * 128], same = 1;
        for (int j = 1; j < 128; ++j) same &= (res[i * 128 + j] == first);
        fwrite(&first, 4, 1, g);
        fwrite(&same, 4, 1, g);
    }
    fclose(g);
    return 0;
}
