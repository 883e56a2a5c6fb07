//! The PTX that build.rs compiled from `kernels/*.cu` (nvcc, compute_80, ptxas-checked for
//! sm_90), embedded in the library. Absent when the library was built without nvcc.

/// `kernels/gradnorm.cu`: centre packing and the fused GradNorm kernels.
#[cfg(laic_cuda_kernels)]
pub(crate) const GRADNORM_PTX: Option<&str> =
    Some(include_str!(concat!(env!("OUT_DIR"), "/gradnorm.ptx")));

/// `kernels/gradnorm.cu`: centre packing and the fused GradNorm kernels.
#[cfg(not(laic_cuda_kernels))]
pub(crate) const GRADNORM_PTX: Option<&str> = None;

/// Whether this build of the library carries compiled CUDA kernels.
pub fn kernels_built() -> bool {
    GRADNORM_PTX.is_some()
}
