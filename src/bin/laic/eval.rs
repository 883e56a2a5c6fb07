//! `laic eval`: the pipeline on precomputed, labelled features.

use crate::common::{PipelineArgs, StageBar, pct};
use laic::data;
use laic::{Filter, PipelineInput, Progress};
use std::path::PathBuf;

/// Flags of `laic eval`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Labelled features: safetensors with test_features, test_labels, val_features, val_labels.
    #[arg(long)]
    features: PathBuf,
    /// Noun embeddings: safetensors with one [M, D] tensor.
    #[arg(long)]
    noun_embeddings: PathBuf,
    /// Name of the tensor in --noun-embeddings.
    #[arg(long, default_value = "text_features")]
    noun_tensor: String,
    /// Noun strings: a JSON list of M strings (for cluster names).
    #[arg(long)]
    noun_names: Option<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Print `{"results": [{"filter", "acc", "nmi", "ari"}, ...]}` (fractions in [0, 1]).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> laic::Result<()> {
    let set = data::load_feature_set(&args.features)?;
    let nouns = data::load_matrix(&args.noun_embeddings, &args.noun_tensor)?;
    let names = args
        .noun_names
        .as_deref()
        .map(data::load_strings)
        .transpose()?;
    let name_refs: Option<Vec<&str>> = names
        .as_ref()
        .map(|n| n.iter().map(String::as_str).collect());
    let ctx = args.pipeline.context()?;
    let n_classes = set.n_classes();
    let mut results = Vec::new();
    if !args.json {
        println!(
            "{:<10} {:>6} {:>6} {:>6} {:>6}",
            "filter", "ACC", "NMI", "ARI", "nouns"
        );
    }
    for filter in [Filter::None, Filter::Tac, Filter::GradNorm] {
        let input = PipelineInput {
            images: set.test.view(),
            train: Some(set.val.view()),
            nouns: Some(nouns.view()),
            noun_names: name_refs.as_deref(),
            labels: Some(&set.test_labels),
        };
        let bar = StageBar::new(filter.name(), args.json);
        let callback = |stage, fraction| bar.update(stage, fraction);
        let r = ctx.run_pipeline(
            &input,
            &args.pipeline.options(n_classes, filter),
            Progress::new(&callback),
        );
        bar.finish();
        let r = r?;
        let m = r.metrics.expect("labels were given");
        if args.json {
            results.push(serde_json::json!({"filter": filter.name(), "acc": m.acc, "nmi": m.nmi, "ari": m.ari}));
        } else {
            println!(
                "{:<10} {:>6} {:>6} {:>6} {:>6}",
                filter.name(),
                pct(m.acc),
                pct(m.nmi),
                pct(m.ari),
                r.selected.len()
            );
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "results": results }));
    }
    Ok(())
}
