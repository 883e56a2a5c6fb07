//! The backend seam: every compute backend (CPU, CUDA) implements the same few primitives.
//!
//! Inputs reach a backend already validated (shapes agree, values finite, outputs long enough),
//! so a backend only computes. The pipeline and the C ABI speak to backends only through
//! [`Backend`].

pub mod cpu;

use crate::error::Result;
use crate::gradnorm::{GradNormOptions, GradNormOut};
use crate::matrix::MatrixRef;

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
}
