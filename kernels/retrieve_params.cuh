// The parameters of the fused retrieval kernels (retrieve.cu on mma.sync, retrieve_wgmma.cu on
// Hopper's wgmma): both read the same packed operands and write the same features.
#pragma once

namespace laic {
namespace rt {

// Mirrored by `RetrieveParams` in src/backend/cuda/retrieve.rs.
struct RetrieveParams {
    const void* images;           // XPL planes of np x dp operands (packed)
    const float* image_scale;     // np: (1/||x|| or 1) * log2(e) / tau
    const void* nouns;            // XPL planes of mp x dp operands (packed)
    const float* noun_scale;      // mp: 1/||t|| or 1
    float* features;              // n x d
    unsigned long long n;
    unsigned long long np;        // multiple of every block's BM
    unsigned long long mp;        // multiple of BN
    int m;
    int d;
    int dp;                       // multiple of 64
    int reserved;
};

}  // namespace rt
}  // namespace laic
