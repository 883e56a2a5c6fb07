//! What the subcommands share: pipeline flags, the compute context, progress bars, output.

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use laic::{BackendKind, Context, ContextOptions, Filter, PipelineOptions, Stage};
use std::sync::Mutex;

/// The pipeline's options as flags, with the defaults of DESIGN.md.
#[derive(Args, Clone, Debug)]
pub struct PipelineArgs {
    /// GradNorm softmax temperature τ.
    #[arg(long, default_value_t = 0.02)]
    pub tau: f32,
    /// GradNorm norm order q (≥ 1; "inf" for the max norm).
    #[arg(long, default_value_t = 2.0)]
    pub q: f32,
    /// Nouns kept per image centre.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Retrieval temperature τ_r.
    #[arg(long, default_value_t = 0.01)]
    pub tau_r: f32,
    /// Image centres K_c [default: max(2 × clusters, training images / 10)].
    #[arg(long)]
    pub centres: Option<usize>,
    /// k-means restarts for the image centres.
    #[arg(long, default_value_t = 3)]
    pub centres_restarts: usize,
    /// k-means restarts of the final clustering.
    #[arg(long, default_value_t = 10)]
    pub restarts: usize,
    /// Most k-means iterations per restart.
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    /// Seed of the k-means runs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// CPU threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl Default for PipelineArgs {
    fn default() -> Self {
        let d = PipelineOptions::default();
        PipelineArgs {
            tau: d.tau,
            q: d.q,
            top_k: d.top_k,
            tau_r: d.tau_r,
            centres: None,
            centres_restarts: d.centres_n_redo,
            restarts: d.n_redo,
            max_iter: d.max_iter,
            seed: d.seed,
            backend: Backend::Auto,
            threads: 0,
        }
    }
}

impl PipelineArgs {
    /// The pipeline options for `n_clusters` clusters and a filter.
    pub fn options(&self, n_clusters: usize, filter: Filter) -> PipelineOptions {
        PipelineOptions {
            n_clusters,
            n_centres: self.centres,
            tau: self.tau,
            q: self.q,
            top_k: self.top_k,
            tau_r: self.tau_r,
            centres_n_redo: self.centres_restarts,
            max_iter: self.max_iter,
            n_redo: self.restarts,
            seed: self.seed,
            filter,
            ..PipelineOptions::default()
        }
    }

    /// The compute context these flags ask for.
    pub fn context(&self) -> laic::Result<Context> {
        Context::with_options(&ContextOptions {
            backend: self.backend.into(),
            n_threads: self.threads,
            ..Default::default()
        })
    }
}

/// `--backend` values.
/// How image files are decoded (`--decode`).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decode {
    /// Every pixel, as PIL (transformers' preprocessing).
    #[default]
    Full,
    /// Large JPEGs at 1/2, 1/4 or 1/8 scale, as PIL's Image.draft: several times faster on
    /// camera photos, slightly different embeddings.
    Draft,
}

impl From<Decode> for laic::clip::ImageDecode {
    fn from(d: Decode) -> Self {
        match d {
            Decode::Full => laic::clip::ImageDecode::Full,
            Decode::Draft => laic::clip::ImageDecode::Draft,
        }
    }
}

impl Decode {
    /// The library's options for this choice, turning JPEGs upright by their EXIF orientation
    /// when `exif_orientation`.
    pub fn options(self, exif_orientation: bool) -> laic::clip::ImageFileOptions {
        laic::clip::ImageFileOptions {
            decode: self.into(),
            exif_orientation,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// CUDA when a usable GPU is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA (fails when no GPU is usable).
    Cuda,
}

impl From<Backend> for BackendKind {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => BackendKind::Auto,
            Backend::Cpu => BackendKind::Cpu,
            Backend::Cuda => BackendKind::Cuda,
        }
    }
}

/// One line describing an error and its causes.
pub fn describe(e: &laic::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A progress bar over the pipeline's stages, drawn on stderr when it is a terminal and
/// hidden otherwise (and always with `quiet`).
pub struct StageBar {
    bar: ProgressBar,
    stage: Mutex<Option<Stage>>,
}

impl StageBar {
    /// A bar titled `what`.
    pub fn new(what: &str, quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(1000)
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} {bar:30} {percent:>3}% {msg} ({elapsed})")
                .expect("valid template"),
        );
        bar.set_prefix(what.to_string());
        StageBar {
            bar,
            stage: Mutex::new(None),
        }
    }

    /// The callback to hand to the pipeline; never cancels.
    pub fn update(&self, stage: Stage, fraction: f64) -> bool {
        let mut current = self.stage.lock().unwrap_or_else(|p| p.into_inner());
        if *current != Some(stage) {
            *current = Some(stage);
            self.bar.set_message(stage_name(stage));
        }
        self.bar.set_position((fraction * 1000.0) as u64);
        true
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Centres => "image centres",
        Stage::Scores => "noun scores",
        Stage::Retrieval => "retrieval",
        Stage::Clustering => "k-means",
        Stage::Naming => "names",
        Stage::TextEncoding => "text encoder",
        Stage::ImageEncoding => "image encoder",
    }
}

/// A metric in percent with one decimal.
pub fn pct(v: f64) -> String {
    format!("{:.1}", v * 100.0)
}
