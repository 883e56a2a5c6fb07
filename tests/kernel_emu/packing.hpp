// Operand packing for the emulated tensor-core kernels' drivers: runs one of operands.cuh's
// packing kernels (`LAIC_PACK_ALL`'s entry points, plain functions on the CPU) as the Rust host
// code launches them (src/backend/cuda/operands.rs `pack_host` / `pack_f32`).
#pragma once

#include <cmath>
#include <vector>

#include "cuda_emu_mma.hpp"
#include "operands.cuh"

namespace emu {

// A packed matrix: planes of rows_padded x dp 16-bit operands and the row values.
struct Packed {
    std::vector<uint16_t> data;
    std::vector<float> row_value;
    size_t rows_padded;
};

// Packs `rows` rows of `d` elements of `src` (contiguous) with `kernel` into `planes` planes of
// rows padded to a multiple of `row_multiple` and `dp` columns; row values of `kind` times
// `scale`. Every output starts as NaN bytes, so that what the kernel leaves unwritten shows.
template <class TIn>
Packed pack(void (*kernel)(const laic::PackParams), const std::vector<TIn>& src, size_t rows, int d,
            int dp, int planes, size_t row_multiple, int kind, float scale) {
    Packed p;
    p.rows_padded = round_up(rows, row_multiple);
    p.data.assign((size_t)planes * p.rows_padded * dp, 0xffff);
    p.row_value.assign(p.rows_padded, NAN);
    const laic::PackParams params{src.data(), p.data.data(), p.row_value.data(), (unsigned long long)d,
                                  rows, p.rows_padded, (unsigned long long)(p.rows_padded * dp), d, dp,
                                  kind, scale};
    launch({(unsigned)((p.rows_padded + 7) / 8)}, {256}, [&] { kernel(params); });
    return p;
}

}  // namespace emu
