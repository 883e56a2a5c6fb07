//! `laic score`: GradNorm scores of nouns against centres, for users who only want the filter.

use crate::common::Backend;
use laic::data;
use laic::{BackendKind, Context, ContextOptions, GradNormOptions, Target, select_nouns};
use std::io::Write;
use std::path::PathBuf;

/// Flags of `laic score`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Noun embeddings: safetensors with an [M, D] tensor.
    #[arg(long)]
    nouns: PathBuf,
    /// Name of the tensor in --nouns.
    #[arg(long, default_value = "text_features")]
    nouns_tensor: String,
    /// Image centres: safetensors with a [K, D] tensor.
    #[arg(long)]
    centers: PathBuf,
    /// Name of the tensor in --centers.
    #[arg(long, default_value = "centres")]
    centers_tensor: String,
    /// Noun strings: a JSON list of M strings.
    #[arg(long)]
    noun_names: Option<PathBuf>,
    /// Softmax temperature τ.
    #[arg(long, default_value_t = 0.02)]
    tau: f32,
    /// Norm order q (≥ 1; "inf" for the max norm).
    #[arg(long, default_value_t = 2.0)]
    q: f32,
    /// Use the uniform target (large score = positive) instead of one-hot.
    #[arg(long)]
    uniform: bool,
    /// Score the rows as given, without L2-normalising them first.
    #[arg(long)]
    no_normalize: bool,
    /// Nouns selected per centre.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Write every noun's score, centre and confidence as CSV to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object: selected nouns, and per noun score, centre and confidence.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> laic::Result<()> {
    let nouns = data::load_matrix(&args.nouns, &args.nouns_tensor)?;
    let centres = data::load_matrix(&args.centers, &args.centers_tensor)?;
    let names = args
        .noun_names
        .as_deref()
        .map(data::load_strings)
        .transpose()?;
    if let Some(n) = &names
        && n.len() != nouns.rows
    {
        return Err(laic::Error::invalid(format!(
            "--noun-names has {} strings for {} nouns",
            n.len(),
            nouns.rows
        )));
    }
    let ctx = Context::with_options(&ContextOptions {
        backend: BackendKind::from(args.backend),
        ..Default::default()
    })?;
    let target = if args.uniform {
        Target::Uniform
    } else {
        Target::OneHot
    };
    let opts = GradNormOptions {
        tau: args.tau,
        q: args.q,
        target,
        normalize: !args.no_normalize,
    };
    let s = ctx.gradnorm_scores(&nouns.view(), &centres.view(), &opts)?;
    let selected = select_nouns(
        &s.scores,
        &s.assignment,
        centres.rows,
        args.top_k,
        opts.positive_order(),
    )?;
    let name = |i: usize| {
        names
            .as_ref()
            .map(|n| n[i].clone())
            .unwrap_or_else(|| i.to_string())
    };
    if let Some(path) = &args.out {
        let io = |source| laic::Error::Io {
            context: path.display().to_string(),
            source,
        };
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        writeln!(f, "noun,name,score,centre,confidence").map_err(io)?;
        for i in 0..nouns.rows {
            let n = name(i).replace('"', "\"\"");
            writeln!(
                f,
                "{i},\"{n}\",{:e},{},{}",
                s.scores[i], s.assignment[i], s.confidence[i]
            )
            .map_err(io)?;
        }
        f.flush().map_err(io)?;
    }
    if args.json {
        let sel: Vec<serde_json::Value> = selected
            .iter()
            .map(|&i| serde_json::json!({"noun": i, "name": name(i as usize)}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"selected": sel, "scores": s.scores, "assignment": s.assignment, "confidence": s.confidence})
        );
    } else {
        println!(
            "{} nouns scored against {} centres (τ {}, q {}); {} selected:",
            nouns.rows,
            centres.rows,
            args.tau,
            args.q,
            selected.len()
        );
        for &i in &selected {
            let i = i as usize;
            println!(
                "  {:>7}  centre {:>5}  score {:.4e}  p {:.4}  {}",
                i,
                s.assignment[i],
                s.scores[i],
                s.confidence[i],
                name(i)
            );
        }
    }
    Ok(())
}
