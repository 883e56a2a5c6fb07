//! The CPU backend: blocked, fused, multi-threaded kernels over the `gemm` crate.

mod gemm;
mod gradnorm;
mod kmeans;
mod packed_gemm;
mod retrieve;
pub(crate) mod vecmath;

use super::{Backend, BackendKind, HostSteps, KMeansSteps, PipelineStages};
use crate::error::Result;
use crate::gradnorm::{GradNormOptions, GradNormOut};
use crate::kmeans::{AssignOut, Metric};
use crate::matrix::{MatrixData, MatrixRef};
use crate::pipeline::{HostStages, PipelineInput};
use crate::retrieve::{RetrieveOptions, RetrieveOut};

/// The CPU backend. Always available; the reference every other backend is tested against.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

/// Rows `start..start + rows` of `m` as a contiguous f32 slice: borrowed when `m` already is
/// contiguous f32, else converted into `scratch`.
pub(crate) fn rows_f32<'a>(
    m: &MatrixRef<'a>,
    start: usize,
    rows: usize,
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    let d = m.cols();
    if let MatrixData::F32(s) = m.data()
        && m.row_stride() == d
    {
        return &s[start * d..(start + rows) * d];
    }
    scratch.resize(rows * d, 0.0);
    m.rows_to_f32(start, scratch);
    scratch
}

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

    fn kmeans_assign(
        &self,
        x: &MatrixRef<'_>,
        centres: &[f32],
        metric: Metric,
        out: AssignOut<'_>,
    ) -> Result<()> {
        kmeans::assign(x, centres, metric, out);
        Ok(())
    }

    fn distances(
        &self,
        x: &MatrixRef<'_>,
        centres: &[f32],
        metric: Metric,
        out: &mut [f32],
    ) -> Result<()> {
        kmeans::distances(x, centres, metric, out);
        Ok(())
    }

    fn cluster_sums(
        &self,
        x: &MatrixRef<'_>,
        labels: &[u32],
        sums: &mut [f64],
        counts: &mut [u64],
    ) -> Result<()> {
        kmeans::cluster_sums(x, labels, sums, counts);
        Ok(())
    }

    fn kmeans_steps<'a>(&'a self, x: MatrixRef<'a>) -> Result<Box<dyn KMeansSteps + 'a>> {
        Ok(Box::new(HostSteps { backend: self, x }))
    }

    fn pipeline_stages<'a>(
        &'a self,
        input: &PipelineInput<'a>,
    ) -> Result<Box<dyn PipelineStages + 'a>> {
        Ok(Box::new(HostStages::new(self, input)))
    }

    fn retrieve(
        &self,
        images: &MatrixRef<'_>,
        nouns: &MatrixRef<'_>,
        opts: &RetrieveOptions,
        out: RetrieveOut<'_>,
    ) -> Result<()> {
        retrieve::retrieve(images, nouns, opts, out);
        Ok(())
    }
}
