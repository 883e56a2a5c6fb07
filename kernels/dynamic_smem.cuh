// LAIC_DYNAMIC_SMEM(T, name): declares the block's dynamic shared memory as `name`, a 16-byte
// aligned array of T; LAIC_DYNAMIC_SMEM_ALIGNED(T, name, A) with alignment A. The CPU emulation
// of tests/kernel_emu defines its own (each block's buffer) before including the kernels.
#pragma once

#ifndef LAIC_DYNAMIC_SMEM
#define LAIC_DYNAMIC_SMEM(T, name) extern __shared__ __align__(16) T name[]
#endif
#ifndef LAIC_DYNAMIC_SMEM_ALIGNED
#define LAIC_DYNAMIC_SMEM_ALIGNED(T, name, A) extern __shared__ __align__(A) T name[]
#endif
