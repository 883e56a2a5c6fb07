//! `laic demo`: the pipeline on the embedded Oxford Pets features (see data/README.md).

use crate::common::{PipelineArgs, StageBar, pct};
use laic::data::{self, FeatureSet};
use laic::{Filter, PipelineInput, PipelineResult, Progress, eval};
use std::path::Path;
use std::time::Instant;

static PETS: &[u8] = include_bytes!("../../../data/oxford_pets.safetensors");
static NOUN_EMBEDDINGS: &[u8] = include_bytes!("../../../data/imagenet1k_text.safetensors");
static NOUN_NAMES: &[u8] = include_bytes!("../../../data/imagenet1k_classes.json");

/// Flags of `laic demo`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// One filter's run.
struct Run {
    filter: Filter,
    result: PipelineResult,
    seconds: f64,
}

pub fn run(args: &Args) -> laic::Result<()> {
    let set: FeatureSet =
        data::parse_feature_set(PETS, Path::new("embedded oxford_pets.safetensors"))?;
    let nouns = data::parse_matrix(
        NOUN_EMBEDDINGS,
        "text_features",
        Path::new("embedded imagenet1k_text.safetensors"),
    )?;
    let names = data::parse_strings(NOUN_NAMES, Path::new("embedded imagenet1k_classes.json"))?;
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ctx = args.pipeline.context()?;
    let n_classes = set.n_classes();
    if !args.json {
        println!(
            "laic {} demo: Oxford Pets, {} test images in {n_classes} breeds, {} training images for centres,\n\
             {} ImageNet class names as the noun corpus, CLIP ViT-B/32 features, backend {}\n",
            laic::VERSION,
            set.test.rows,
            set.val.rows,
            names.len(),
            ctx.backend_name()
        );
    }
    let mut runs = Vec::new();
    for filter in [Filter::None, Filter::Tac, Filter::GradNorm] {
        let input = PipelineInput {
            images: set.test.view(),
            train: Some(set.val.view()),
            nouns: Some(nouns.view()),
            noun_names: Some(&name_refs),
            labels: Some(&set.test_labels),
        };
        let bar = StageBar::new(filter.name(), args.json);
        let callback = |stage, fraction| bar.update(stage, fraction);
        let t0 = Instant::now();
        let result = ctx.run_pipeline(
            &input,
            &args.pipeline.options(n_classes, filter),
            Progress::new(&callback),
        );
        bar.finish();
        runs.push(Run {
            filter,
            result: result?,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    if args.json {
        print_json(&runs);
    } else {
        print_tables(&runs);
    }
    Ok(())
}

fn cluster_sizes(labels: &[u32], n: usize) -> Vec<usize> {
    let mut sizes = vec![0; n];
    for &l in labels {
        sizes[l as usize] += 1;
    }
    sizes
}

fn print_tables(runs: &[Run]) {
    println!(
        "{:<22} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6}  {:>8} {:>6}",
        "filter", "ACC", "NMI", "ARI", "refACC", "refNMI", "refARI", "nouns", "time"
    );
    for r in runs {
        let m = r.result.metrics.expect("labels were given");
        let reference = eval::reference("oxford_pets", r.filter);
        let refs = reference
            .map(|m| (pct(m.acc), pct(m.nmi), pct(m.ari)))
            .unwrap_or_default();
        let label = match r.filter {
            Filter::None => "k-means only",
            Filter::Tac => "TAC (confidence)",
            Filter::GradNorm => "GradNorm",
        };
        println!(
            "{label:<22} {:>6} {:>6} {:>6}   {:>6} {:>6} {:>6}  {:>8} {:>5.1}s",
            pct(m.acc),
            pct(m.nmi),
            pct(m.ari),
            refs.0,
            refs.1,
            refs.2,
            r.result.selected.len(),
            r.seconds
        );
    }
    println!("(metrics in percent; ref = the numpy/scikit-learn reference script)\n");
    let gn = &runs.last().expect("three runs").result;
    let sizes = cluster_sizes(&gn.labels, gn.cluster_names.len());
    println!("GradNorm clusters (size: names):");
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(sizes[c]));
    for c in order {
        println!(
            "  {:>3}  {:>4}: {}",
            c,
            sizes[c],
            gn.cluster_names[c].join(", ")
        );
    }
}

fn print_json(runs: &[Run]) {
    let results: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let m = r.result.metrics.expect("labels were given");
            serde_json::json!({
                "filter": r.filter.name(), "acc": m.acc, "nmi": m.nmi, "ari": m.ari,
                "selected": r.result.selected.len(), "seconds": r.seconds,
            })
        })
        .collect();
    let gn = &runs.last().expect("three runs").result;
    let sizes = cluster_sizes(&gn.labels, gn.cluster_names.len());
    let clusters: Vec<serde_json::Value> = (0..sizes.len())
        .map(|c| serde_json::json!({"cluster": c, "size": sizes[c], "names": gn.cluster_names[c]}))
        .collect();
    let out =
        serde_json::json!({"dataset": "oxford_pets", "results": results, "clusters": clusters});
    println!("{out}");
}
