//! The PTX that build.rs compiled from `kernels/*.cu` (nvcc, compute_80, ptxas-checked for
//! sm_90), embedded in the library. Absent when the library was built without nvcc.

/// `kernels/gradnorm.cu`: centre packing and the fused GradNorm kernels.
#[cfg(laic_cuda_kernels)]
pub(crate) const GRADNORM_PTX: Option<&str> =
    Some(include_str!(concat!(env!("OUT_DIR"), "/gradnorm.ptx")));

/// `kernels/gradnorm.cu`: centre packing and the fused GradNorm kernels.
#[cfg(not(laic_cuda_kernels))]
pub(crate) const GRADNORM_PTX: Option<&str> = None;

/// `kernels/gradnorm.cu` assembled for sm_90 by ptxas at build time: H100/H200 load it
/// without JIT-compiling the PTX (which costs as long as ptxas itself, minutes for this module).
#[cfg(laic_cuda_kernels)]
pub(crate) const GRADNORM_SM90: Option<&[u8]> = Some(include_bytes!(concat!(
    env!("OUT_DIR"),
    "/gradnorm.sm_90.cubin"
)));

/// `kernels/gradnorm.cu` assembled for sm_90.
#[cfg(not(laic_cuda_kernels))]
pub(crate) const GRADNORM_SM90: Option<&[u8]> = None;

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
