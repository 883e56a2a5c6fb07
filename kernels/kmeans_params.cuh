// What the two k-means assignment kernels (kmeans.cu: mma.sync, any sm_80+ device;
// kmeans_wgmma.cu: wgmma, sm_90a) share: their parameter struct.
#pragma once

namespace laic {
namespace km {

// Mirrored by `AssignParams` in src/backend/cuda/kmeans.rs.
struct AssignParams {
    const void* points;           // XPL planes of np x dp operands (packed)
    const void* centres;          // CPL planes of kp x dp operands (packed)
    const float* bias;            // kp: ||c||^2 / 2 (Euclidean) or 0 (spherical)
    const float* centres_f32;     // k x d, contiguous: the unrounded centres
    unsigned* labels;             // n
    float* dist;                  // n
    unsigned long long n;
    unsigned long long np;        // packed rows (a multiple of every block's BM)
    int k;
    int kp;                       // multiple of the kernel's BN (mma.sync 64, wgmma 128)
    int d;
    int dp;                       // multiple of BK
    int spherical;
    int reserved;
};

}  // namespace km
}  // namespace laic
