//! GradNorm: options, validation, output buffers, and the selection of positive nouns.
//!
//! The score of a noun `t` against image centres `W` (DESIGN.md §1.3): with `z_k = ⟨t, w_k⟩/τ`,
//! `p = softmax(z)` and `ĉ = argmax z` (lowest index on ties),
//! `S_q(t) = ‖p − e_ĉ‖_q · ‖t‖_q` (one-hot target) or `‖p − u‖_q · ‖t‖_q` (uniform target).
//! The kernels that compute it live in the backends; this module holds what is common to them.

use crate::error::{Error, Result};
use crate::matrix::MatrixRef;

/// The target distribution of the cross-entropy whose gradient norm is the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One-hot on the assigned centre (the paper's choice): small score = positive noun.
    OneHot,
    /// Uniform over the centres (GradNorm of Huang et al. 2021): large score = positive noun.
    Uniform,
}

/// Options of [`crate::Context::gradnorm_scores`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradNormOptions {
    /// Softmax temperature τ > 0 (default 0.02).
    pub tau: f32,
    /// Norm order q ≥ 1; `f32::INFINITY` for the max norm (default 2).
    pub q: f32,
    /// Target distribution (default one-hot).
    pub target: Target,
    /// L2-normalise noun and centre rows before scoring (default true).
    pub normalize: bool,
}

impl Default for GradNormOptions {
    fn default() -> Self {
        GradNormOptions {
            tau: 0.02,
            q: 2.0,
            target: Target::OneHot,
            normalize: true,
        }
    }
}

impl GradNormOptions {
    /// Errors unless τ is finite and positive and q is in [1, ∞].
    pub fn validate(&self) -> Result<()> {
        if !(self.tau.is_finite() && self.tau > 0.0) {
            return Err(Error::invalid(format!(
                "tau must be finite and > 0, got {}",
                self.tau
            )));
        }
        if self.q.is_nan() || self.q < 1.0 {
            return Err(Error::invalid(format!(
                "q must be in [1, inf], got {}",
                self.q
            )));
        }
        Ok(())
    }

    /// The ranking that marks positive nouns under this target.
    pub fn positive_order(&self) -> Order {
        match self.target {
            Target::OneHot => Order::Smallest,
            Target::Uniform => Order::Largest,
        }
    }
}

/// Caller-owned outputs of a GradNorm scoring, one element per noun.
#[derive(Debug)]
pub struct GradNormOut<'a> {
    /// Score S per noun.
    pub scores: &'a mut [f32],
    /// Assigned centre ĉ per noun.
    pub assignment: &'a mut [u32],
    /// Confidence p_ĉ per noun.
    pub confidence: &'a mut [f32],
}

/// Owned outputs of a GradNorm scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct GradNormScores {
    /// Score S per noun.
    pub scores: Vec<f32>,
    /// Assigned centre ĉ per noun.
    pub assignment: Vec<u32>,
    /// Confidence p_ĉ per noun.
    pub confidence: Vec<f32>,
}

impl GradNormScores {
    /// Zeroed outputs for `m` nouns.
    pub fn zeros(m: usize) -> Self {
        GradNormScores {
            scores: vec![0.0; m],
            assignment: vec![0; m],
            confidence: vec![0.0; m],
        }
    }

    /// Mutable views for a backend to fill.
    pub fn as_out(&mut self) -> GradNormOut<'_> {
        GradNormOut {
            scores: &mut self.scores,
            assignment: &mut self.assignment,
            confidence: &mut self.confidence,
        }
    }
}

/// Largest `‖t‖·‖w‖/τ` accepted: keeps every logit and its exponentials finite in f32.
pub(crate) const MAX_LOGIT: f64 = 1e30;

/// Checks everything a backend relies on before any output is written: options, shapes,
/// output lengths, finite inputs, non-zero rows when normalising, logits that cannot overflow.
pub fn validate_inputs(
    nouns: &MatrixRef<'_>,
    centres: &MatrixRef<'_>,
    opts: &GradNormOptions,
    out: &GradNormOut<'_>,
) -> Result<()> {
    opts.validate()?;
    if nouns.cols() != centres.cols() {
        return Err(Error::invalid(format!(
            "nouns have {} columns but centres have {}",
            nouns.cols(),
            centres.cols()
        )));
    }
    if centres.rows() > u32::MAX as usize {
        return Err(Error::invalid("more than 2^32 - 1 centres"));
    }
    let m = nouns.rows();
    for (what, got) in [
        ("scores", out.scores.len()),
        ("assignment", out.assignment.len()),
        ("confidence", out.confidence.len()),
    ] {
        if got < m {
            return Err(Error::BufferTooSmall {
                what,
                needed: m,
                got,
            });
        }
    }
    let tn = nouns.check_rows("nouns", opts.normalize)?;
    let wn = centres.check_rows("centres", opts.normalize)?;
    let bound = if opts.normalize { 1.0 } else { tn * wn } / opts.tau as f64;
    if bound > MAX_LOGIT {
        return Err(Error::invalid(format!(
            "logits up to {bound:e} would overflow: reduce the input norms or raise tau"
        )));
    }
    Ok(())
}

/// Which end of a ranking is kept by [`select_nouns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Keep the smallest values (GradNorm, one-hot target).
    Smallest,
    /// Keep the largest values (uniform target, TAC confidence).
    Largest,
}

/// Per centre, the `top_k` nouns assigned to it with the smallest (or largest) value, ties to
/// the lower noun index; returns the union sorted by noun index. A centre with fewer assigned
/// nouns keeps them all.
pub fn select_nouns(
    values: &[f32],
    assignment: &[u32],
    n_centres: usize,
    top_k: usize,
    order: Order,
) -> Result<Vec<u32>> {
    if values.len() != assignment.len() {
        return Err(Error::invalid(format!(
            "{} values but {} assignments",
            values.len(),
            assignment.len()
        )));
    }
    if values.is_empty() {
        return Err(Error::invalid("no nouns to select from"));
    }
    if values.len() > u32::MAX as usize {
        return Err(Error::invalid("more than 2^32 - 1 nouns"));
    }
    if n_centres == 0 {
        return Err(Error::invalid("n_centres must be at least 1"));
    }
    if top_k == 0 {
        return Err(Error::invalid("top_k must be at least 1"));
    }
    if let Some(i) = values.iter().position(|v| v.is_nan()) {
        return Err(Error::invalid(format!("value {i} is NaN")));
    }
    if let Some(i) = assignment.iter().position(|&a| a as usize >= n_centres) {
        return Err(Error::invalid(format!(
            "assignment {i} is {} but there are only {n_centres} centres",
            assignment[i]
        )));
    }
    // Group noun indices by centre (a sort, so that memory never depends on `n_centres`, which
    // comes from the caller), then a partial ranking within each centre.
    let mut by_centre: Vec<u32> = (0..values.len() as u32).collect();
    by_centre.sort_unstable_by_key(|&i| assignment[i as usize]);
    let rank = |a: &u32, b: &u32| {
        let (va, vb) = (values[*a as usize], values[*b as usize]);
        let by_value = match order {
            Order::Smallest => va.total_cmp(&vb),
            Order::Largest => vb.total_cmp(&va),
        };
        by_value.then(a.cmp(b))
    };
    let mut keep = Vec::new();
    for group in by_centre.chunk_by_mut(|a, b| assignment[*a as usize] == assignment[*b as usize]) {
        if group.len() > top_k {
            group.select_nth_unstable_by(top_k - 1, rank);
        }
        keep.extend_from_slice(&group[..group.len().min(top_k)]);
    }
    keep.sort_unstable();
    Ok(keep)
}

/// The most nouns [`select_nouns`] can return: `min(n_nouns, n_centres · top_k)`.
pub fn max_selected(n_nouns: usize, n_centres: usize, top_k: usize) -> usize {
    n_nouns.min(n_centres.saturating_mul(top_k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_keeps_top_k_per_centre_with_index_ties() {
        let values = [0.5, 0.1, 0.1, 0.9, 0.3, 0.2, 0.7];
        let assign = [0, 0, 0, 1, 1, 2, 0];
        let sel = select_nouns(&values, &assign, 4, 2, Order::Smallest).unwrap();
        assert_eq!(sel, vec![1, 2, 3, 4, 5]);
        let sel = select_nouns(&values, &assign, 4, 1, Order::Largest).unwrap();
        assert_eq!(sel, vec![3, 5, 6]);
        let sel = select_nouns(&values, &assign, 3, 1, Order::Smallest).unwrap();
        assert_eq!(sel, vec![1, 4, 5]);
    }

    #[test]
    fn selection_rejects_bad_input() {
        assert!(select_nouns(&[1.0], &[0, 1], 2, 1, Order::Smallest).is_err());
        assert!(select_nouns(&[1.0], &[2], 2, 1, Order::Smallest).is_err());
        assert!(select_nouns(&[f32::NAN], &[0], 2, 1, Order::Smallest).is_err());
        assert!(select_nouns(&[1.0], &[0], 2, 0, Order::Smallest).is_err());
        assert!(select_nouns(&[1.0], &[0], 0, 1, Order::Smallest).is_err());
        assert!(select_nouns(&[], &[], 1, 1, Order::Smallest).is_err());
    }

    #[test]
    fn options_are_validated() {
        let ok = GradNormOptions::default();
        assert!(ok.validate().is_ok());
        for (tau, q) in [
            (0.0, 2.0),
            (-1.0, 2.0),
            (f32::NAN, 2.0),
            (f32::INFINITY, 2.0),
            (0.1, 0.5),
            (0.1, f32::NAN),
        ] {
            assert!(
                GradNormOptions { tau, q, ..ok }.validate().is_err(),
                "tau {tau} q {q}"
            );
        }
        assert!(
            GradNormOptions {
                q: f32::INFINITY,
                ..ok
            }
            .validate()
            .is_ok()
        );
    }
}
