// Tile helpers shared by laic's CUDA kernels: asynchronous copies, ldmatrix, tensor-core mma,
// fast exp2, element conversion and warp/quad reductions.
//
// Compiled to PTX for compute_80 (PTX ISA <= 9.0) by build.rs; everything here is sm_80 PTX,
// which the driver JIT-compiles for sm_90 (H100/H200) at module load.
//
// On the CPU (tests/kernel_emu, no __CUDACC__) the emulation supplies the half types and the
// functions below that are inline PTX (cp.async, ldmatrix, mma.sync, ex2) before including this.
#pragma once

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#include <stdint.h>

#include "dynamic_smem.cuh"

namespace laic {

// ---------------------------------------------------------------------------------------------
// Element types: loading any input dtype as f32, splitting f32 into tensor-core operands.
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ __half from_f32<__half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// An input element from f32 (for zero fills of any input type).
template <typename T> __device__ __forceinline__ T from_f32_in(float v);
template <> __device__ __forceinline__ float from_f32_in<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32_in<__half>(float v) {
    return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_f32_in<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

// Writes `v` as PLANES operands: PLANES == 1 stores round(v); PLANES == 2 stores hi = round(v)
// and lo = round(v - hi) (the "split" that carries f32 inputs through 16-bit tensor cores with
// ~16 significant bits: hi*hi + hi*lo + lo*hi).
template <typename T, int PLANES>
__device__ __forceinline__ void store_split(T* plane0, size_t plane_stride, float v) {
    T hi = from_f32<T>(v);
    plane0[0] = hi;
    if constexpr (PLANES == 2) {
        plane0[plane_stride] = from_f32<T>(v - to_f32(hi));
    }
}

#ifdef __CUDACC__  // inline PTX; on the CPU, tests/kernel_emu supplies these

// ---------------------------------------------------------------------------------------------
// Asynchronous global -> shared copies (sm_80 cp.async).
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes; both addresses 16-byte aligned. Bypasses L1 (.cg): streamed tiles are
// reused from shared memory, not from L1.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)),
                 "l"(gmem));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most N committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---------------------------------------------------------------------------------------------
// ldmatrix and mma.sync m16n8k16 (f32 accumulation).
// ---------------------------------------------------------------------------------------------

// Four 8x8 b16 matrices; lane l supplies the row address of matrix l/8, row l%8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem)));
}

// D = A*B + D for one m16n8k16 tile: A row-major 16x16, B "col" (stored n-major, k inner).
template <typename T> struct Mma;

template <> struct Mma<__half> {
    static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4],
                                               uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

template <> struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float (&d)[4], const uint32_t (&a)[4],
                                               uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

// ---------------------------------------------------------------------------------------------
// Math and reductions.
// ---------------------------------------------------------------------------------------------

// 2^x with the MUFU unit (relative error ~2^-22); 2^-inf = 0, flushes subnormal results to 0.
__device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

#endif  // __CUDACC__

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the 4 lanes of a quad (the lanes that share an mma accumulator row).
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v;
}

__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
    return v;
}

// Max with its index over a quad; equal values go to the lower index.
__device__ __forceinline__ void quad_argmax(float& v, int& i) {
#pragma unroll
    for (int o = 1; o <= 2; o <<= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
}

}  // namespace laic
