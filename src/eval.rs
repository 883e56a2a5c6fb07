//! Evaluation on labelled CLIP feature sets: runs the pipeline with the settings of the
//! reference script (`laic_ref.py`) for each filter and sets the scores beside the reference
//! table of the data's README. The CLI and `examples/eval.rs` only print what this returns.

use crate::context::Context;
use crate::data::{self, FeatureSet, NounSet};
use crate::error::Result;
use crate::metrics::ClusterMetrics;
use crate::pipeline::{Filter, PipelineInput, PipelineOptions, default_n_centres};
use crate::progress::Progress;
use std::path::Path;
use std::time::Instant;

/// Reference figures (percent ACC, NMI, ARI) of `laic_ref.py` on the CLIP ViT-B/32 feature
/// sets, from `clip-vit-b32/README.md`: (dataset, filter, ACC, NMI, ARI).
pub const REFERENCE: &[(&str, Filter, f64, f64, f64)] = &[
    ("dtd", Filter::None, 44.3, 57.1, 26.4),
    ("dtd", Filter::Tac, 42.2, 56.4, 25.0),
    ("dtd", Filter::GradNorm, 44.9, 57.1, 26.3),
    ("oxford_pets", Filter::None, 54.5, 67.6, 42.8),
    ("oxford_pets", Filter::Tac, 72.2, 82.2, 62.2),
    ("oxford_pets", Filter::GradNorm, 74.6, 82.1, 64.4),
    ("ucf101", Filter::None, 60.6, 80.7, 50.8),
    ("ucf101", Filter::Tac, 62.1, 80.1, 51.7),
    ("ucf101", Filter::GradNorm, 61.6, 80.3, 50.8),
];

/// The reference figures of one dataset and filter, as fractions.
pub fn reference(dataset: &str, filter: Filter) -> Option<ClusterMetrics> {
    REFERENCE
        .iter()
        .find(|r| r.0 == dataset && r.1 == filter)
        .map(|r| ClusterMetrics {
            acc: r.2 / 100.0,
            nmi: r.3 / 100.0,
            ari: r.4 / 100.0,
        })
}

/// One line of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// Dataset name.
    pub dataset: String,
    /// Noun filter.
    pub filter: Filter,
    /// Images clustered.
    pub n_images: usize,
    /// Classes (= clusters asked for).
    pub n_classes: usize,
    /// Image centres (0 for no filter).
    pub n_centres: usize,
    /// Nouns selected.
    pub n_selected: usize,
    /// Scores of laic.
    pub metrics: ClusterMetrics,
    /// The reference figures, when known.
    pub reference: Option<ClusterMetrics>,
    /// Names of the first clusters (up to 3 each), for a glance at readability.
    pub sample_names: Vec<Vec<String>>,
    /// Wall time of the pipeline in seconds.
    pub seconds: f64,
}

/// The reference script's settings for a dataset of `n_classes` classes: `base` with
/// `n_clusters` set and the rest as given (τ 0.02, τ_r 0.01, top-5, 10 final restarts, 3 for
/// the centres, seed 0 in the defaults).
pub fn options_for(n_classes: usize, filter: Filter, base: &PipelineOptions) -> PipelineOptions {
    PipelineOptions {
        n_clusters: n_classes,
        filter,
        ..*base
    }
}

/// Runs `filters` on one loaded feature set with the given nouns.
pub fn run_feature_set(
    ctx: &Context,
    dataset: &str,
    set: &FeatureSet,
    nouns: &NounSet,
    filters: &[Filter],
    base: &PipelineOptions,
) -> Result<Vec<EvalRow>> {
    let names: Vec<&str> = nouns.names.iter().map(String::as_str).collect();
    let n_classes = set.n_classes();
    let mut rows = Vec::new();
    for &filter in filters {
        let opts = options_for(n_classes, filter, base);
        let input = PipelineInput {
            images: set.test.view(),
            train: Some(set.val.view()),
            nouns: Some(nouns.embeddings.view()),
            noun_names: Some(&names),
            labels: Some(&set.test_labels),
        };
        let t0 = Instant::now();
        let r = ctx.run_pipeline(&input, &opts, Progress::none())?;
        let seconds = t0.elapsed().as_secs_f64();
        rows.push(EvalRow {
            dataset: dataset.to_string(),
            filter,
            n_images: set.test.rows,
            n_classes,
            n_centres: match filter {
                Filter::None => 0,
                _ => opts
                    .n_centres
                    .unwrap_or_else(|| default_n_centres(n_classes, set.val.rows)),
            },
            n_selected: r.selected.len(),
            metrics: r.metrics.expect("labels were given"),
            reference: reference(dataset, filter),
            sample_names: r.cluster_names.into_iter().take(5).collect(),
            seconds,
        });
    }
    Ok(rows)
}

/// Loads `<dir>/<dataset>.safetensors` and the ImageNet nouns of `dir`, and runs `filters`.
pub fn run_dataset(
    ctx: &Context,
    dir: &Path,
    dataset: &str,
    filters: &[Filter],
    base: &PipelineOptions,
) -> Result<Vec<EvalRow>> {
    let set = data::load_feature_set(&dir.join(format!("{dataset}.safetensors")))?;
    let nouns = data::load_imagenet_nouns(dir)?;
    run_feature_set(ctx, dataset, &set, &nouns, filters, base)
}

/// A plain-text table of rows: laic's ACC/NMI/ARI in percent beside the reference's.
pub fn format_table(rows: &[EvalRow]) -> String {
    let mut s = String::from(
        "dataset      filter    | laic ACC  NMI  ARI | ref ACC  NMI  ARI | ΔNMI  | centres sel  time\n",
    );
    let pct = |v: f64| format!("{:5.1}", v * 100.0);
    for r in rows {
        let (ra, rn, rr, dn) = match r.reference {
            Some(m) => (
                pct(m.acc),
                pct(m.nmi),
                pct(m.ari),
                format!("{:+5.1}", (r.metrics.nmi - m.nmi) * 100.0),
            ),
            None => (
                "    -".into(),
                "    -".into(),
                "    -".into(),
                "    -".into(),
            ),
        };
        s.push_str(&format!(
            "{:<12} {:<9} | {} {} {} | {} {} {} | {} | {:7} {:4} {:5.1}s\n",
            r.dataset,
            r.filter.name(),
            pct(r.metrics.acc),
            pct(r.metrics.nmi),
            pct(r.metrics.ari),
            ra,
            rn,
            rr,
            dn,
            r.n_centres,
            r.n_selected,
            r.seconds
        ));
    }
    s
}
