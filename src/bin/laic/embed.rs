//! `laic embed` and `laic embed-nouns`: CLIP embeddings into safetensors files, and the image
//! embedding loop that `cluster` shares (chunks, with unreadable files skipped).

use crate::common::{Decode, PipelineArgs};
use crate::files;
use crate::nouns::{self, CacheKey, NounArgs};
use indicatif::{ProgressBar, ProgressStyle};
use laic::clip::{ClipModel, ImageFileOptions};
use laic::{Context, Error, Progress, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `laic embed`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// CLIP model: a folder with model.safetensors (and config.json, tokenizer.json), or the
    /// .safetensors file.
    #[arg(long)]
    model: PathBuf,
    /// A UTF-8 text file: every line (empty ones included) is one input, in order.
    #[arg(long, conflicts_with = "images", required_unless_present = "images")]
    texts: Option<PathBuf>,
    /// Image files or folders (a folder means its image files in sorted path order).
    #[arg(long, num_args = 1..)]
    images: Vec<PathBuf>,
    /// How image files are decoded.
    #[arg(long, value_enum, default_value_t = Decode::Full)]
    decode: Decode,
    /// Turn JPEGs upright by their EXIF orientation tag (as PIL's ImageOps.exif_transpose;
    /// phone photos held sideways), which transformers' preprocessing ignores.
    #[arg(long)]
    exif_orientation: bool,
    /// Output file: tensor `embeddings` [n, dim] f32, L2-normalised; inputs in the metadata.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Print one JSON object about what was written instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// Flags of `laic embed-nouns`.
#[derive(clap::Args, Clone, Debug)]
pub struct NounsArgs {
    /// CLIP model: a folder with model.safetensors, or the .safetensors file.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    nouns: NounArgs,
    /// Output file (safetensors: tensor `embeddings` [M, dim], metadata with the model hash,
    /// templates and nouns). Put it in the --cache folder of `cluster` to have it reused.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Print one JSON object about what was written instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// Loads the model named by `--model`, with a clear error when it is missing.
pub fn load_model(ctx: &Context, model: &Path) -> Result<ClipModel> {
    files::model_weights_file(model)?;
    ClipModel::load(ctx, model)
}

pub fn run(args: &Args) -> Result<()> {
    let ctx = args.pipeline.context()?;
    let model = load_model(&ctx, &args.model)?;
    let t0 = Instant::now();
    let d = model.embed_dim();
    let (kind, inputs, values) = if let Some(path) = &args.texts {
        let bytes = std::fs::read(path).map_err(files::io_error(path))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            Error::invalid(format!("--texts {}: not a UTF-8 text file", path.display()))
        })?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            return Err(Error::invalid(format!(
                "--texts {}: the file has no lines",
                path.display()
            )));
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let bar = count_bar("texts", refs.len(), args.json);
        let n = refs.len() as f64;
        let callback = |_s, f: f64| {
            bar.set_position((f * n) as u64);
            true
        };
        let v = model.encode_texts(&ctx, &refs, Progress::new(&callback));
        bar.finish_and_clear();
        ("texts", lines, v?)
    } else {
        let paths = files::expand_image_args(&args.images)?;
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let bar = count_bar("images", refs.len(), args.json);
        let n = refs.len() as f64;
        let callback = |_s, f: f64| {
            bar.set_position((f * n) as u64);
            true
        };
        let v = model.encode_image_files_with(
            &ctx,
            &refs,
            &args.decode.options(args.exif_orientation),
            Progress::new(&callback),
        );
        bar.finish_and_clear();
        let names = paths.iter().map(|p| p.display().to_string()).collect();
        ("images", names, v?)
    };
    let n = inputs.len();
    let weights = files::model_weights_file(&args.model)?;
    let meta = BTreeMap::from([
        ("format".to_string(), "laic-embeddings-1".to_string()),
        ("kind".to_string(), kind.to_string()),
        (
            "inputs".to_string(),
            serde_json::to_string(&inputs).expect("strings serialise"),
        ),
        (
            "model_hash".to_string(),
            files::content_hash_file(&weights)?,
        ),
    ]);
    files::write_embeddings(&args.out, &values, n, d, &meta)?;
    report_written(&args.out, kind, n, d, t0, args.json);
    Ok(())
}

pub fn run_nouns(args: &NounsArgs) -> Result<()> {
    let ctx = args.pipeline.context()?;
    let model = load_model(&ctx, &args.model)?;
    let t0 = Instant::now();
    let nouns = args.nouns.load()?;
    let templates = args.nouns.templates();
    let key = CacheKey::new(&args.model, templates, &nouns)?;
    let e = nouns::embed_nouns(&ctx, &model, &nouns, templates, args.json)?;
    files::write_embeddings(&args.out, &e.values, e.rows, e.cols, &key.metadata(&nouns))?;
    report_written(&args.out, "nouns", e.rows, e.cols, t0, args.json);
    Ok(())
}

fn report_written(out: &Path, kind: &str, n: usize, d: usize, t0: Instant, json: bool) {
    let secs = t0.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({"out": out.display().to_string(), "kind": kind, "rows": n, "dim": d, "seconds": secs})
        );
    } else {
        println!(
            "wrote {}: {n} {kind} × {d} dims ({secs:.1}s)",
            out.display()
        );
    }
}

/// A bar counting `n` items.
pub fn count_bar(what: &str, n: usize, quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} {bar:30} {pos}/{len} ({elapsed}, eta {eta})")
            .expect("valid template"),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Image embeddings of the files that could be read.
pub struct ImageEmbeddings {
    /// The files embedded, in input order.
    pub paths: Vec<PathBuf>,
    /// Their embeddings, `paths.len() × dim`.
    pub values: Vec<f32>,
    /// Files that could not be read or decoded, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Embeds `paths` in one library call that goes on past unreadable files
/// ([`ClipModel::encode_image_files_skipping`]): those are reported on stderr ("skipping PATH:
/// reason") and left out.
pub fn embed_images_skipping(
    ctx: &Context,
    model: &ClipModel,
    paths: &[PathBuf],
    opts: &ImageFileOptions,
    quiet: bool,
) -> Result<ImageEmbeddings> {
    let bar = count_bar("images", paths.len(), quiet);
    let n = paths.len() as f64;
    let callback = |_s, f: f64| {
        bar.set_position((f * n) as u64);
        true
    };
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let emb = model.encode_image_files_skipping(ctx, &refs, opts, Progress::new(&callback));
    bar.finish_and_clear();
    let emb = emb?;
    let d = model.embed_dim();
    let mut out = ImageEmbeddings {
        paths: Vec::with_capacity(paths.len()),
        values: Vec::with_capacity(paths.len() * d),
        skipped: Vec::with_capacity(emb.failed.len()),
    };
    let mut failed = emb.failed.iter().peekable();
    for (i, (p, row)) in paths.iter().zip(emb.values.chunks_exact(d)).enumerate() {
        if let Some((_, e)) = failed.next_if(|(f, _)| *f == i) {
            let reason = crate::common::describe(e);
            eprintln!("skipping {}: {reason}", p.display());
            out.skipped.push((p.clone(), reason));
        } else {
            out.paths.push(p.clone());
            out.values.extend_from_slice(row);
        }
    }
    Ok(out)
}
