//! The CPU backend: blocked, fused, multi-threaded kernels over the `gemm` crate.

mod gradnorm;
pub(crate) mod vecmath;

use super::{Backend, BackendKind};
use crate::error::Result;
use crate::gradnorm::{GradNormOptions, GradNormOut};
use crate::matrix::MatrixRef;

/// The CPU backend. Always available; the reference every other backend is tested against.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn gradnorm_scores(
        &self,
        nouns: &MatrixRef<'_>,
        centres: &MatrixRef<'_>,
        opts: &GradNormOptions,
        out: GradNormOut<'_>,
    ) -> Result<()> {
        gradnorm::gradnorm_scores(nouns, centres, opts, out)
    }
}
