//! [`HostStages`]: the pipeline's steps on matrices in host memory, each a call of the
//! backend's primitives (the CPU backend's stages; the CUDA backend's where a step cannot run
//! on its device).

use crate::backend::{Backend, PipelineStages};
use crate::error::{Error, Result};
use crate::gradnorm::{self, GradNormOptions, GradNormScores};
use crate::kmeans::{self, KMeansOptions, KMeansResult};
use crate::matrix::MatrixRef;
use crate::pipeline::PipelineInput;
use crate::progress::{Progress, Stage};
use crate::retrieve::{self, RetrieveOptions, Retrieved};

/// Row-normalised contiguous f32 copy of `m` (each row scaled by the f32 of 1/‖row‖, the norm
/// summed in f64; the same rows as k-means' spherical normalisation).
pub(crate) fn unit_rows(m: &MatrixRef<'_>) -> Vec<f32> {
    let mut v = m.to_f32_vec();
    for row in v.chunks_exact_mut(m.cols()) {
        let s = row
            .iter()
            .map(|&a| (a as f64) * (a as f64))
            .sum::<f64>()
            .sqrt();
        let inv = (1.0 / s) as f32;
        row.iter_mut().for_each(|a| *a *= inv);
    }
    v
}

/// The f32 rows of the nouns `selected`, in that order (`selected.len()` × D).
pub(crate) fn gather_nouns(nouns: &MatrixRef<'_>, selected: &[u32]) -> Vec<f32> {
    let d = nouns.cols();
    let mut rows = vec![0f32; selected.len() * d];
    for (row, &j) in rows.chunks_exact_mut(d).zip(selected) {
        nouns.row_to_f32(j as usize, row);
    }
    rows
}

/// Checks the nouns `selected` for retrieval among `m` nouns: at least one, each below `m`.
pub(crate) fn check_selected(selected: &[u32], m: usize) -> Result<()> {
    if selected.is_empty() {
        return Err(Error::invalid("retrieval needs at least one selected noun"));
    }
    match selected.iter().find(|&&j| j as usize >= m) {
        Some(j) => Err(Error::invalid(format!(
            "selected noun {j} is not below the number of nouns {m}"
        ))),
        None => Ok(()),
    }
}

/// Retrieval on `backend` of the images' unit rows `x` (N × D) over the nouns `selected`
/// (checked) as f32 rows gathered on the host.
pub(crate) fn retrieve_selected(
    backend: &dyn Backend,
    x: &[f32],
    nouns: &MatrixRef<'_>,
    selected: &[u32],
    opts: &RetrieveOptions,
) -> Result<Retrieved> {
    check_selected(selected, nouns.rows())?;
    let d = nouns.cols();
    let n = x.len() / d;
    let t_sel = gather_nouns(nouns, selected);
    let xm = MatrixRef::from_f32(x, n, d)?;
    let tm = MatrixRef::from_f32(&t_sel, selected.len(), d)?;
    let mut r = Retrieved::zeros(n, d, opts.top_n);
    retrieve::validate_inputs(&xm, &tm, opts, &r.as_out())?;
    backend.retrieve(&xm, &tm, opts, r.as_out())?;
    Ok(r)
}

/// `[x_i, t_i]` for every row: N×2D from two N×D matrices.
pub(crate) fn join_rows(x: &[f32], t: &[f32], d: usize) -> Vec<f32> {
    let mut z = Vec::with_capacity(2 * x.len());
    for (a, b) in x.chunks_exact(d).zip(t.chunks_exact(d)) {
        z.extend_from_slice(a);
        z.extend_from_slice(b);
    }
    z
}

/// The pipeline's steps on host matrices through a backend's per-call primitives.
pub struct HostStages<'a> {
    backend: &'a dyn Backend,
    input: PipelineInput<'a>,
    /// The images' unit rows, N×D.
    x: Vec<f32>,
    /// `[x, t̃]`, N×2D, once retrieval has run.
    joined: Option<Vec<f32>>,
}

impl<'a> HostStages<'a> {
    /// The stages of a pipeline run on `input` (validated) with `backend`'s primitives.
    pub fn new(backend: &'a dyn Backend, input: &PipelineInput<'a>) -> Self {
        HostStages {
            backend,
            input: *input,
            x: unit_rows(&input.images),
            joined: None,
        }
    }

    fn nouns(&self) -> Result<MatrixRef<'a>> {
        self.input
            .nouns
            .ok_or_else(|| Error::invalid("nouns: the noun set is empty"))
    }
}

impl PipelineStages for HostStages<'_> {
    fn centres(
        &mut self,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult> {
        let train = self.input.train.unwrap_or(self.input.images);
        kmeans::run(self.backend, &train, opts, progress, stage)
    }

    fn scores(&mut self, centres: &[f32], opts: &GradNormOptions) -> Result<GradNormScores> {
        let nouns = self.nouns()?;
        let w = MatrixRef::from_f32(centres, centres.len() / nouns.cols(), nouns.cols())?;
        let mut out = GradNormScores::zeros(nouns.rows());
        gradnorm::validate_inputs(&nouns, &w, opts, &out.as_out())?;
        self.backend
            .gradnorm_scores(&nouns, &w, opts, out.as_out())?;
        Ok(out)
    }

    fn retrieve(
        &mut self,
        selected: &[u32],
        opts: &RetrieveOptions,
    ) -> Result<(Vec<u32>, Vec<f32>)> {
        let nouns = self.nouns()?;
        let r = retrieve_selected(self.backend, &self.x, &nouns, selected, opts)?;
        self.joined = Some(join_rows(&self.x, &r.features, nouns.cols()));
        Ok((r.top_indices, r.top_weights))
    }

    fn cluster(
        &mut self,
        opts: &KMeansOptions,
        progress: &Progress<'_>,
        stage: Stage,
    ) -> Result<KMeansResult> {
        let n = self.input.images.rows();
        let z = self.joined.as_deref().unwrap_or(&self.x);
        let z = MatrixRef::from_f32(z, n, z.len() / n)?;
        kmeans::run(self.backend, &z, opts, progress, stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn retrieval_over_bad_selections_is_an_error_and_joins_nothing() {
        let x = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0];
        let t = [1.0f32, 0.5, -0.5, 1.0];
        let mut input = PipelineInput::new(MatrixRef::from_f32(&x, 3, 2).unwrap());
        input.nouns = Some(MatrixRef::from_f32(&t, 2, 2).unwrap());
        let mut stages = HostStages::new(&CpuBackend, &input);
        let opts = RetrieveOptions::default();
        for bad in [&[][..], &[0, 2][..]] {
            let e = stages.retrieve(bad, &opts).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
        }
        assert!(stages.joined.is_none());
        let (idx, wts) = stages
            .retrieve(&[1, 0], &RetrieveOptions { top_n: 1, ..opts })
            .unwrap();
        assert_eq!((idx.len(), wts.len()), (3, 3));
        let z = stages.joined.as_ref().unwrap();
        assert_eq!(z.len(), 3 * 4);
        // Each joined row starts with the image's unit row.
        assert_eq!(&z[0..2], &[1.0, 0.0]);
        assert_eq!(&z[4..6], &[0.0, 1.0]);
    }
}
