// One wgmma per case on uniform operands (A in registers, B in shared memory filled with one code, C
// one FP32 value), so the result depends on no fragment or shared-memory layout: all 512 results of the
// warpgroup must agree.  Built and run by experiments/probe_mma.py (nvcc -arch=sm_90a).
//
// Input and output as experiments/probe_mma.cu: kinds 0 (m64n8k32 E4M3 x E4M3 -> FP32) and
// 1 (m64n8k16 BF16 x BF16 -> FP32); scale-d = 1 (D = A B + C).
#include <cstdint>
#include <cstdio>
#include <vector>

struct Case { int32_t kind; uint32_t a, b, c, b_hi; };

__global__ void probe(const Case* cases, uint32_t* out) {
    __shared__ __align__(1024) uint8_t sb[2048];
    const Case cs = cases[blockIdx.x];
    const bool bf16 = cs.kind == 1;
    for (int i = threadIdx.x; i < 1024; i += blockDim.x) {
        uint16_t v = bf16 ? (uint16_t)(cs.b & 0xFFFFu) : (uint16_t)((cs.b & 0xFFu) * 0x0101u);
        reinterpret_cast<uint16_t*>(sb)[i] = v;
    }
    __syncthreads();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    const uint32_t a = bf16 ? (cs.a & 0xFFFFu) * 0x00010001u : (cs.a & 0xFFu) * 0x01010101u;
    const uint64_t addr = (uint64_t)__cvta_generic_to_shared(sb);
    const uint64_t desc = ((addr & 0x3FFFFull) >> 4) | ((128ull >> 4) << 16) | ((256ull >> 4) << 32);
    float d0 = __uint_as_float(cs.c), d1 = d0, d2 = d0, d3 = d0;
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    if (bf16) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0,%1,%2,%3}, {%4,%5,%6,%7}, %8, p, 1, 1, 0;\n}\n"
                     : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                     : "r"(a), "r"(a), "r"(a), "r"(a), "l"(desc), "r"(1));
    } else {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n8k32.f32.e4m3.e4m3 {%0,%1,%2,%3}, {%4,%5,%6,%7}, %8, p, 1, 1;\n}\n"
                     : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
                     : "r"(a), "r"(a), "r"(a), "r"(a), "l"(desc), "r"(1));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    uint32_t* o = out + blockIdx.x * 512 + threadIdx.x * 4;
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
    cudaMalloc(&dout, n * 512 * 4);
    cudaMemcpy(dc, cases.data(), n * sizeof(Case), cudaMemcpyHostToDevice);
    probe<<<n, 128>>>(dc, dout);
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) { fprintf(stderr, "CUDA: %s\n", cudaGetErrorString(err)); return 1; }
    std::vector<uint32_t> res(n * 512);
    cudaMemcpy(res.data(), dout, n * 512 * 4, cudaMemcpyDeviceToHost);
    FILE* g = fopen(argv[2], "wb");
    for (int i = 0; i < n; ++i) {
        uint32_t first = res[i * 512], same = 1;
        for (int j = 1; j < 512; ++j) same &= (res[i * 512 + j] == first);
        fwrite(&first, 4, 1, g);
        fwrite(&same, 4, 1, g);
    }
    fclose(g);
    return 0;
}
