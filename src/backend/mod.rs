//! The backend seam: every compute backend (CPU, CUDA) implements the same few primitives.
//!
//! Inputs reach a backend already validated (shapes agree, values finite, outputs long enough),
//! so a backend only computes. The pipeline and the C ABI speak to backends only through
//! [`Backend`].

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use crate::gradnorm::{GradNormOptions, GradNormOut};
use crate::matrix::{DeviceGradNormOut, DeviceMatrix, MatrixRef};

/// Which backend a [`crate::Context`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// CUDA when a usable device is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA; creating a context errors with [`crate::Error::NoDevice`] when none is usable.
    Cuda,
}

/// The primitives a compute backend provides.
pub trait Backend: Send + Sync {
    /// Short name ("cpu", "cuda").
    fn name(&self) -> &'static str;

    /// Which kind of backend this is (never [`BackendKind::Auto`]).
    fn kind(&self) -> BackendKind;

    /// GradNorm scores of every noun against the centres (DESIGN.md §1.3), one streaming pass
    /// over the centres (two for the uniform target), into `out` (first `nouns.rows()`
    /// elements of each buffer).
    fn gradnorm_scores(
        &self,
        nouns: &MatrixRef<'_>,
        centres: &MatrixRef<'_>,
        opts: &GradNormOptions,
        out: GradNormOut<'_>,
    ) -> Result<()>;

    /// GradNorm scores of matrices that already live in this backend's device memory, into
    /// device buffers. Only device backends implement it; the default says there is no device.
    ///
    /// The caller has checked the options, the shapes and the output length; the backend checks
    /// what it can only check on the device (finite values, non-zero rows when normalising,
    /// logits that cannot overflow) before any output is written.
    ///
    /// # Safety
    /// Every address in `nouns`, `centres` and `out` is device memory of this backend's device,
    /// valid for the span it describes, and the outputs do not overlap the inputs.
    unsafe fn gradnorm_scores_device(
        &self,
        nouns: &DeviceMatrix,
        centres: &DeviceMatrix,
        opts: &GradNormOptions,
        out: &DeviceGradNormOut,
    ) -> Result<()> {
        let _ = (nouns, centres, opts, out);
        Err(Error::NoDevice(format!(
            "the {} backend has no device memory: device-pointer scoring needs a CUDA context",
            self.name()
        )))
    }
}
