// Independent 16 x 8 tiles through FP8 mma.sync.m16n8k32 (FP32 accumulate), K = 32 * steps per tile,
// the steps chained through D (D of one step is C of the next), with the operands loaded in the
// fragment layout of the PTX ISA (8-bit types, m16n8k32):
//   groupID = lane >> 2, tig = lane % 4
//   A: a_i (i = 0..15, four per register, lowest byte first): row groupID (+8 for i in 4..7, 12..15),
//      column tig * 4 + (i & 3) (+16 for i >= 8)
//   B: b_i (i = 0..7): row (k) tig * 4 + (i & 3) (+16 for i >= 4), column groupID
//   C, D: c_i (i = 0..3): row groupID (+8 for i >= 2), column tig * 2 + (i & 1)
// Built and run by experiments/probe_mma.py; exact small-integer tiles check the layout.
//
// Input (binary, little-endian): int32 kind (0: E4M3 x E4M3, 2: E5M2 x E4M3), int32 tiles, int32 steps;
// A codes [tiles][16][K]; B codes [tiles][8][K] (B transposed: column n, then k); C [tiles][16][8] FP32.
// Output: D [tiles][16][8] FP32 bits.
#include <cstdint>
#include <cstdio>
#include <vector>

__global__ void tiles(int kind, int steps, const uint8_t* A, const uint8_t* Bt, const float* C, float* D) {
    const int t = blockIdx.x, lane = threadIdx.x, g = lane >> 2, tig = lane & 3, K = 32 * steps;
    const uint8_t* a = A + (size_t)t * 16 * K;
    const uint8_t* bt = Bt + (size_t)t * 8 * K;
    float d[4];
    for (int i = 0; i < 4; ++i) d[i] = C[(size_t)t * 128 + (g + 8 * (i >> 1)) * 8 + tig * 2 + (i & 1)];
    for (int s = 0; s < steps; ++s) {
        const int k0 = 32 * s;
        uint32_t ar[4], br[2];
        for (int r = 0; r < 4; ++r) {
            uint32_t v = 0;
            for (int j = 0; j < 4; ++j) {
                const int i = 4 * r + j;
                const int row = g + ((i & 4) ? 8 : 0);
                const int col = tig * 4 + (i & 3) + ((i >= 8) ? 16 : 0);
                v |= (uint32_t)a[row * K + k0 + col] << (8 * j);
            }
            ar[r] = v;
        }
        for (int r = 0; r < 2; ++r) {
            uint32_t v = 0;
            for (int j = 0; j < 4; ++j) {
                const int i = 4 * r + j;
                const int k = tig * 4 + (i & 3) + ((i >= 4) ? 16 : 0);
                v |= (uint32_t)bt[g * K + k0 + k] << (8 * j);
            }
            br[r] = v;
        }
        if (kind == 0) {
            asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                         : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]));
        } else {
            asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e4m3.f32 "
                         "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                         : "r"(ar[0]), "r"(ar[1]), "r"(ar[2]), "r"(ar[3]), "r"(br[0]), "r"(br[1]));
        }
    }
    for (int i = 0; i < 4; ++i) D[(size_t)t * 128 + (g + 8 * (i >> 1)) * 8 + tig * 2 + (i & 1)] = d[i];
}

int main(int argc, char** argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IN OUT\n", argv[0]); return 2; }
    FILE* f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    int32_t hdr[3];
    if (fread(hdr, 4, 3, f) != 3) { fprintf(stderr, "bad input\n"); return 2; }
    const int kind = hdr[0], n = hdr[1], steps = hdr[2], K = 32 * steps;
    std::vector<uint8_t> A((size_t)n * 16 * K), Bt((size_t)n * 8 * K);
    std::vector<float> C((size_t)n * 128), Dh((size_t)n * 128);
    if (fread(A.data(), 1, A.size(), f) != A.size() || fread(Bt.data(), 1, Bt.size(), f) != Bt.size()
        || fread(C.data(), 4, C.size(), f) != C.size()) { fprintf(stderr, "short input\n"); return 2; }
    fclose(f);
    uint8_t *dA, *dB; float *dC, *dD;
    cudaMalloc(&dA, A.size()); cudaMalloc(&dB, Bt.size());
    cudaMalloc(&dC, C.size() * 4); cudaMalloc(&dD, C.size() * 4);
    cudaMemcpy(dA, A.data(), A.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(dB, Bt.data(), Bt.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice);
    tiles<<<n, 32>>>(kind, steps, dA, dB, dC, dD);
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) { fprintf(stderr, "CUDA: %s\n", cudaGetErrorString(err)); return 1; }
    cudaMemcpy(Dh.data(), dD, C.size() * 4, cudaMemcpyDeviceToHost);
    FILE* g = fopen(argv[2], "wb");
    fwrite(Dh.data(), 4, Dh.size(), g);
    fclose(g);
    return 0;
}
