//! The PTX that build.rs compiled from `kernels/*.cu` (nvcc, compute_80, ptxas-checked for
//! sm_90), embedded in the library, and the sm_90 cubins ptxas made from it (H100/H200 load
//! those without JIT-compiling the PTX). Absent when the library was built without nvcc.

/// Declares the PTX and sm_90 cubin constants of one kernel file.
macro_rules! kernel_file {
    ($ptx:ident, $cubin:ident, $stem:literal, $doc:literal) => {
        #[doc = $doc]
        #[cfg(laic_cuda_kernels)]
        pub(crate) const $ptx: Option<&str> =
            Some(include_str!(concat!(env!("OUT_DIR"), "/", $stem, ".ptx")));

        #[doc = $doc]
        #[cfg(not(laic_cuda_kernels))]
        pub(crate) const $ptx: Option<&str> = None;

        #[doc = $doc]
        #[doc = "(sm_90 cubin)"]
        #[cfg(laic_cuda_kernels)]
        pub(crate) const $cubin: Option<&[u8]> = Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/",
            $stem,
            ".sm_90.cubin"
        )));

        #[doc = $doc]
        #[doc = "(sm_90 cubin)"]
        #[cfg(not(laic_cuda_kernels))]
        pub(crate) const $cubin: Option<&[u8]> = None;
    };
}

kernel_file!(
    GRADNORM_PTX,
    GRADNORM_SM90,
    "gradnorm",
    "`kernels/gradnorm.cu`: centre packing and the fused GradNorm kernels."
);
kernel_file!(
    KMEANS_PTX,
    KMEANS_SM90,
    "kmeans",
    "`kernels/kmeans.cu`: packing, fused assignment, distances and per-cluster sums."
);
kernel_file!(
    RETRIEVE_PTX,
    RETRIEVE_SM90,
    "retrieve",
    "`kernels/retrieve.cu`: packing and the fused retrieval kernels."
);

/// Declares the sm_90a cubin constant of one Hopper-only kernel file (no PTX is embedded for
/// those: sm_90a code runs on compute capability 9.0 only).
macro_rules! hopper_cubin {
    ($cubin:ident, $stem:literal, $doc:literal) => {
        #[doc = $doc]
        #[cfg(laic_cuda_kernels)]
        pub(crate) const $cubin: Option<&[u8]> = Some(include_bytes!(concat!(
            env!("OUT_DIR"),
            "/",
            $stem,
            ".sm_90.cubin"
        )));

        #[doc = $doc]
        #[cfg(not(laic_cuda_kernels))]
        pub(crate) const $cubin: Option<&[u8]> = None;
    };
}

hopper_cubin!(
    GRADNORM_WGMMA_SM90A,
    "gradnorm_wgmma",
    "`kernels/gradnorm_wgmma.cu` assembled for sm_90a: the Hopper (wgmma) GradNorm kernels."
);
hopper_cubin!(
    KMEANS_WGMMA_SM90A,
    "kmeans_wgmma",
    "`kernels/kmeans_wgmma.cu` assembled for sm_90a: the Hopper (wgmma) k-means assignment \
     kernels."
);
hopper_cubin!(
    RETRIEVE_WGMMA_SM90A,
    "retrieve_wgmma",
    "`kernels/retrieve_wgmma.cu` assembled for sm_90a: the Hopper (wgmma) retrieval kernels."
);

/// Whether this build of the library carries compiled CUDA kernels.
pub fn kernels_built() -> bool {
    GRADNORM_PTX.is_some()
}

/// `kernels/clip.cu`: the passes of the CLIP encoders between their cuBLAS GEMMs.
#[cfg(laic_cuda_kernels)]
pub(crate) const CLIP_PTX: Option<&str> = Some(include_str!(concat!(env!("OUT_DIR"), "/clip.ptx")));

/// `kernels/clip.cu`: the passes of the CLIP encoders between their cuBLAS GEMMs.
#[cfg(not(laic_cuda_kernels))]
pub(crate) const CLIP_PTX: Option<&str> = None;

/// `kernels/clip.cu` assembled for sm_90.
#[cfg(laic_cuda_kernels)]
pub(crate) const CLIP_SM90: Option<&[u8]> = Some(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/clip.sm_90.cubin"
)));

/// `kernels/clip.cu` assembled for sm_90.
#[cfg(not(laic_cuda_kernels))]
pub(crate) const CLIP_SM90: Option<&[u8]> = None;
