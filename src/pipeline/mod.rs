//! The LaIC pipeline on embeddings (DESIGN.md §1, steps 2–8): image centres by k-means on
//! the training images → noun scores (GradNorm, or TAC's confidence) → selection of positive
//! nouns → retrieval of noun semantics per image → k-means on `[x, t̃]` → cluster names →
//! metrics. It speaks to the compute backend only through [`Context`] and the backend's
//! [`crate::backend::PipelineStages`], which keep the matrices where the backend computes.

mod stages;

pub use stages::HostStages;
pub(crate) use stages::{check_selected, retrieve_selected, unit_rows};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::gradnorm::{GradNormOptions, Order, Target, select_nouns};
use crate::kmeans::{KMeansOptions, Metric};
use crate::matrix::MatrixRef;
use crate::metrics::{ClusterMetrics, cluster_metrics};
use crate::progress::{Progress, Stage};
use crate::retrieve::RetrieveOptions;

/// How nouns are filtered before retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// GradNorm (the paper): per centre, the `top_k` assigned nouns of smallest score.
    GradNorm,
    /// TAC: per centre, the `top_k` assigned nouns of largest softmax confidence at τ = 1.
    Tac,
    /// No nouns: k-means on the image features alone.
    None,
}

impl Filter {
    /// The filter's name: "gradnorm", "tac" or "none".
    pub fn name(self) -> &'static str {
        match self {
            Filter::GradNorm => "gradnorm",
            Filter::Tac => "tac",
            Filter::None => "none",
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "gradnorm" => Ok(Filter::GradNorm),
            "tac" => Ok(Filter::Tac),
            "none" => Ok(Filter::None),
            _ => Err(Error::invalid(format!(
                "unknown filter {s:?}: expected gradnorm, tac or none"
            ))),
        }
    }
}

/// Noun candidates kept per image for naming the clusters.
const NAME_CANDIDATES: usize = 8;

/// Options of [`Context::run_pipeline`]. The defaults are those of the reference script.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineOptions {
    /// Number of clusters of the images (required, ≥ 1, ≤ N; default 10).
    pub n_clusters: usize,
    /// Image centres K_c; `None` (default) = max(2·n_clusters, N_c/10), capped at N_c.
    pub n_centres: Option<usize>,
    /// GradNorm temperature τ (default 0.02; TAC always uses 1).
    pub tau: f32,
    /// GradNorm norm order q ≥ 1 (default 2).
    pub q: f32,
    /// Nouns kept per centre (default 5).
    pub top_k: usize,
    /// Retrieval temperature τ_r (default 0.01).
    pub tau_r: f32,
    /// Distance of the centres k-means (default spherical, DESIGN.md §1.2).
    pub centres_metric: Metric,
    /// Restarts of the centres k-means (default 3).
    pub centres_n_redo: usize,
    /// Most iterations per restart of both k-means runs (default 300).
    pub max_iter: usize,
    /// Restarts of the final k-means (default 10).
    pub n_redo: usize,
    /// Seed of both k-means runs (default 0).
    pub seed: u64,
    /// Noun filter (default GradNorm).
    pub filter: Filter,
    /// Names per cluster (default 3).
    pub n_names: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            n_clusters: 10,
            n_centres: None,
            tau: 0.02,
            q: 2.0,
            top_k: 5,
            tau_r: 0.01,
            centres_metric: Metric::Spherical,
            centres_n_redo: 3,
            max_iter: 300,
            n_redo: 10,
            seed: 0,
            filter: Filter::GradNorm,
            n_names: 3,
        }
    }
}

/// The inputs of the pipeline (all embeddings D wide).
#[derive(Debug, Clone, Copy)]
pub struct PipelineInput<'a> {
    /// The images to cluster, N×D.
    pub images: MatrixRef<'a>,
    /// Training images for the centres, N_c×D; `None` uses `images`.
    pub train: Option<MatrixRef<'a>>,
    /// Noun text embeddings, M×D (required unless the filter is [`Filter::None`]).
    pub nouns: Option<MatrixRef<'a>>,
    /// The nouns' strings, M of them (optional; names are then given as indices only).
    pub noun_names: Option<&'a [&'a str]>,
    /// True labels of the images, N of them (optional; metrics are computed when given).
    pub labels: Option<&'a [i64]>,
}

impl<'a> PipelineInput<'a> {
    /// Inputs with only the images to cluster.
    pub fn new(images: MatrixRef<'a>) -> Self {
        PipelineInput {
            images,
            train: None,
            nouns: None,
            noun_names: None,
            labels: None,
        }
    }
}

/// What the pipeline produces.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineResult {
    /// Cluster of each image (N).
    pub labels: Vec<u32>,
    /// Indices of the selected nouns, ascending (empty for [`Filter::None`]).
    pub selected: Vec<u32>,
    /// Image centres used (0 for [`Filter::None`]).
    pub n_centres: usize,
    /// Per cluster, up to `n_names` noun indices of largest summed retrieval weight over its
    /// members, best first. Each member contributes the weights of its 8 heaviest selected
    /// nouns (the rest of its softmax mass is left out; at τ_r = 0.01 it is small).
    pub cluster_nouns: Vec<Vec<u32>>,
    /// The same as strings (empty when no noun names were given).
    pub cluster_names: Vec<Vec<String>>,
    /// k-means objective of the final clustering (sum of squared distances on `[x, t̃]`).
    pub objective: f64,
    /// ACC/NMI/ARI when labels were given.
    pub metrics: Option<ClusterMetrics>,
}

/// The default number of image centres for `n_clusters` clusters and `n_train` images.
pub fn default_n_centres(n_clusters: usize, n_train: usize) -> usize {
    (2 * n_clusters).max(n_train / 10).min(n_train)
}

fn validate(input: &PipelineInput<'_>, opts: &PipelineOptions) -> Result<usize> {
    let n = input.images.rows();
    let d = input.images.cols();
    if opts.n_clusters == 0 || opts.n_clusters > n {
        return Err(Error::invalid(format!(
            "n_clusters is {} but must be between 1 and the number of images {n}",
            opts.n_clusters
        )));
    }
    if let Some(labels) = input.labels
        && labels.len() != n
    {
        return Err(Error::invalid(format!(
            "labels has {} elements but there are {n} images",
            labels.len()
        )));
    }
    if opts.max_iter == 0 || opts.n_redo == 0 || opts.centres_n_redo == 0 {
        return Err(Error::invalid(
            "max_iter, n_redo and centres_n_redo must be at least 1",
        ));
    }
    input.images.check_rows("images", true)?;
    if opts.filter == Filter::None {
        return Ok(0);
    }
    let nouns = input.nouns.ok_or_else(|| {
        Error::invalid("nouns: the noun set is empty (needed by the GradNorm and TAC filters)")
    })?;
    let train = input.train.unwrap_or(input.images);
    for (what, cols) in [("train", train.cols()), ("nouns", nouns.cols())] {
        if cols != d {
            return Err(Error::invalid(format!(
                "{what} has {cols} columns but images have {d}"
            )));
        }
    }
    if input.train.is_some() {
        train.check_rows("train", true)?;
    }
    if let Some(names) = input.noun_names
        && names.len() != nouns.rows()
    {
        return Err(Error::invalid(format!(
            "noun_names has {} strings but nouns has {} rows",
            names.len(),
            nouns.rows()
        )));
    }
    if opts.top_k == 0 {
        return Err(Error::invalid("top_k must be at least 1"));
    }
    GradNormOptions {
        tau: opts.tau,
        q: opts.q,
        ..Default::default()
    }
    .validate()?;
    RetrieveOptions {
        tau: opts.tau_r,
        ..Default::default()
    }
    .validate()?;
    let n_train = train.rows();
    let k_c = match opts.n_centres {
        None => default_n_centres(opts.n_clusters, n_train),
        Some(0) => return Err(Error::invalid("n_centres must be at least 1")),
        Some(k) if k > n_train => {
            return Err(Error::invalid(format!(
                "n_centres is {k} but there are only {n_train} training images"
            )));
        }
        Some(k) => k,
    };
    Ok(k_c)
}

/// Runs the pipeline (inside the context's thread pool).
pub(crate) fn run(
    ctx: &Context,
    input: &PipelineInput<'_>,
    opts: &PipelineOptions,
    progress: &Progress<'_>,
) -> Result<PipelineResult> {
    let k_c = validate(input, opts)?;
    let n = input.images.rows();
    let mut stages = ctx.backend().pipeline_stages(input)?;
    let mut selected = Vec::new();
    let mut top = None;
    if let (Filter::GradNorm | Filter::Tac, Some(_)) = (opts.filter, input.nouns) {
        // 2. Image centres.
        progress.report(Stage::Centres, 0.0)?;
        let centres = stages.centres(
            &KMeansOptions {
                n_clusters: k_c,
                metric: opts.centres_metric,
                max_iter: opts.max_iter,
                n_redo: opts.centres_n_redo,
                seed: opts.seed,
                ..Default::default()
            },
            progress,
            Stage::Centres,
        )?;
        // 3.–4. Scores and selection.
        progress.report(Stage::Scores, 0.0)?;
        let (tau, order) = match opts.filter {
            Filter::Tac => (1.0, Order::Largest),
            _ => (opts.tau, Order::Smallest),
        };
        let scores = stages.scores(
            &centres.centres,
            &GradNormOptions {
                tau,
                q: opts.q,
                target: Target::OneHot,
                normalize: true,
            },
        )?;
        let values = match opts.filter {
            Filter::Tac => &scores.confidence,
            _ => &scores.scores,
        };
        selected = select_nouns(values, &scores.assignment, k_c, opts.top_k, order)?;
        progress.report(Stage::Scores, 1.0)?;
        // 5.–6. Retrieval over the selected nouns, and the joint features [x, t̃].
        progress.report(Stage::Retrieval, 0.0)?;
        let top_n = NAME_CANDIDATES.min(selected.len());
        let (idx, wts) = stages.retrieve(
            &selected,
            &RetrieveOptions {
                tau: opts.tau_r,
                normalize: true,
                top_n,
            },
        )?;
        progress.report(Stage::Retrieval, 1.0)?;
        top = Some((top_n, idx, wts));
    }
    let clusters = stages.cluster(
        &KMeansOptions {
            n_clusters: opts.n_clusters,
            metric: Metric::Euclidean,
            max_iter: opts.max_iter,
            n_redo: opts.n_redo,
            seed: opts.seed,
            ..Default::default()
        },
        progress,
        Stage::Clustering,
    )?;
    // The stages' buffers (device memory on a device backend) are not needed for the names.
    drop(stages);
    // 7. Names: summed retrieval weight of each selected noun over a cluster's members.
    progress.report(Stage::Naming, 0.0)?;
    let mut cluster_nouns = vec![Vec::new(); opts.n_clusters];
    if let Some((top_n, idx, wts)) = &top {
        let m = selected.len();
        let mut mass = vec![0f64; opts.n_clusters * m];
        for i in 0..n {
            let c = clusters.labels[i] as usize;
            for s in 0..*top_n {
                mass[c * m + idx[i * top_n + s] as usize] += wts[i * top_n + s] as f64;
            }
        }
        for (c, names) in cluster_nouns.iter_mut().enumerate() {
            let w = &mass[c * m..(c + 1) * m];
            let mut order: Vec<usize> = (0..m).filter(|&j| w[j] > 0.0).collect();
            order.sort_by(|&a, &b| w[b].total_cmp(&w[a]).then(a.cmp(&b)));
            names.extend(order.iter().take(opts.n_names).map(|&j| selected[j]));
        }
    }
    let cluster_names = match input.noun_names {
        Some(strings) => cluster_nouns
            .iter()
            .map(|c| c.iter().map(|&j| strings[j as usize].to_string()).collect())
            .collect(),
        None => Vec::new(),
    };
    // 8. Metrics.
    let metrics = match input.labels {
        Some(y) => Some(cluster_metrics(y, &clusters.labels)?),
        None => None,
    };
    progress.report(Stage::Naming, 1.0)?;
    Ok(PipelineResult {
        labels: clusters.labels,
        selected,
        n_centres: if opts.filter == Filter::None { 0 } else { k_c },
        cluster_nouns,
        cluster_names,
        objective: clusters.objective,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContextOptions;

    /// Three planted groups of images and nouns near each group's direction.
    fn world() -> (Vec<f32>, Vec<i64>, Vec<f32>, Vec<String>, usize) {
        let d = 16;
        let mut s = 7u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let dirs: Vec<f32> = (0..3 * d).map(|_| next()).collect();
        let (mut x, mut y, mut t, mut names) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..60 {
            x.extend((0..d).map(|j| dirs[(i % 3) * d + j] + 0.1 * next()));
            y.push((i % 3) as i64);
        }
        for c in 0..3 {
            for k in 0..4 {
                t.extend((0..d).map(|j| dirs[c * d + j] + 0.1 * next()));
                names.push(format!("group{c}-{k}"));
            }
        }
        (x, y, t, names, d)
    }

    #[test]
    fn pipeline_is_deterministic_for_a_seed_whatever_the_thread_count() {
        let (x, y, t, names, d) = world();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let input = PipelineInput {
            images: MatrixRef::from_f32(&x, 60, d).unwrap(),
            train: None,
            nouns: Some(MatrixRef::from_f32(&t, 12, d).unwrap()),
            noun_names: Some(&names),
            labels: Some(&y),
        };
        let opts = PipelineOptions {
            n_clusters: 3,
            n_centres: Some(3),
            top_k: 2,
            ..Default::default()
        };
        let a = Context::cpu()
            .run_pipeline(&input, &opts, Progress::none())
            .unwrap();
        let one = Context::with_options(&ContextOptions {
            n_threads: 1,
            ..Default::default()
        })
        .unwrap();
        let b = one.run_pipeline(&input, &opts, Progress::none()).unwrap();
        assert_eq!(a, b);
        let m = a.metrics.unwrap();
        assert_eq!((m.acc, m.nmi, m.ari), (1.0, 1.0, 1.0));
        assert_eq!(a.selected.len(), 6);
        for (c, names) in a.cluster_names.iter().enumerate() {
            let member = a.labels.iter().position(|&l| l as usize == c).unwrap();
            assert!(
                names[0].starts_with(&format!("group{}", y[member])),
                "{names:?}"
            );
        }
    }

    #[test]
    fn default_centres_follow_the_reference_rule() {
        assert_eq!(default_n_centres(37, 736), 74);
        assert_eq!(default_n_centres(47, 1128), 112);
        assert_eq!(default_n_centres(101, 1898), 202);
        assert_eq!(default_n_centres(10, 5000), 500);
        assert_eq!(default_n_centres(10, 15), 15);
    }

    #[test]
    fn filters_parse_by_name() {
        for f in [Filter::GradNorm, Filter::Tac, Filter::None] {
            assert_eq!(f.name().parse::<Filter>().unwrap(), f);
        }
        assert!("best".parse::<Filter>().is_err());
    }
}
