//! `laic cluster`: the real job on a photo folder — embed the images with CLIP, embed (or load
//! the cached) nouns, filter them with GradNorm, cluster, name; write `clusters.csv`,
//! `clusters.json` and `report.html` (with thumbnails) into the output folder.

use crate::common::{Decode, PipelineArgs, StageBar};
use crate::embed::{self, ImageEmbeddings};
use crate::files;
use crate::nouns::{self, CacheKey, NounArgs};
use crate::report;
use laic::data::Embeddings;
use laic::{Error, Filter, MatrixRef, PipelineInput, PipelineResult, Progress, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `laic cluster`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// CLIP model: a folder with model.safetensors (and config.json, tokenizer.json), e.g. the
    /// Hugging Face folder of openai/clip-vit-base-patch32, or the .safetensors file.
    #[arg(long)]
    pub model: PathBuf,
    /// Folder of images (.jpg, .jpeg, .png, .webp; searched recursively, hidden entries and
    /// the output folder left out).
    #[arg(long)]
    pub images: PathBuf,
    /// How image files are decoded.
    #[arg(long, value_enum, default_value_t = Decode::Full)]
    pub decode: Decode,
    /// Turn JPEGs upright by their EXIF orientation tag (as PIL's ImageOps.exif_transpose;
    /// phone photos held sideways), which transformers' preprocessing ignores.
    #[arg(long)]
    pub exif_orientation: bool,
    /// Number of clusters.
    #[arg(long)]
    clusters: usize,
    #[command(flatten)]
    nouns: NounArgs,
    /// Folder searched for noun embeddings matching the model, templates and nouns (files
    /// written by `laic embed-nouns` or by an earlier run), and where fresh ones are stored
    /// [default: $XDG_CACHE_HOME/laic/nouns, else ~/.cache/laic/nouns, else OUT/noun-cache].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Output folder for clusters.csv, clusters.json, report.html and thumbs/.
    #[arg(long, default_value = "laic-out")]
    pub out: PathBuf,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Print clusters.json's object on stdout instead of the summary (no progress bars).
    #[arg(long)]
    json: bool,
}

/// Everything a finished run knows, for the output files.
pub struct Outcome<'a> {
    /// The flags.
    pub args: &'a Args,
    /// The images embedded (in sorted path order) and the files skipped.
    pub images: &'a ImageEmbeddings,
    /// The noun corpus.
    pub nouns: &'a [String],
    /// The pipeline's result.
    pub result: &'a PipelineResult,
    /// Noun cache file used or written, and whether it was reused.
    pub cache: Option<(PathBuf, bool)>,
    /// Seconds per step.
    pub seconds: serde_json::Value,
}

fn default_cache_dir(out: &Path) -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(x) = env("XDG_CACHE_HOME") {
        x.join("laic/nouns")
    } else if let Some(h) = env("HOME") {
        h.join(".cache/laic/nouns")
    } else {
        out.join("noun-cache")
    }
}

pub fn run(args: &Args) -> Result<()> {
    let t_all = Instant::now();
    if args.clusters == 0 {
        return Err(Error::invalid("--clusters must be at least 1"));
    }
    let listing = files::list_folder(&args.images, Some(&args.out)).map_err(|e| match e {
        Error::InvalidArgument(m) => Error::invalid(format!("--images {m}")),
        e => e,
    })?;
    if listing.images.is_empty() {
        return Err(Error::invalid(format!(
            "--images {}: no image files (.jpg, .jpeg, .png, .webp) in this folder",
            args.images.display()
        )));
    }
    if args.clusters > listing.images.len() {
        return Err(Error::invalid(format!(
            "--clusters {} is more than the {} image files in {}",
            args.clusters,
            listing.images.len(),
            args.images.display()
        )));
    }
    let nouns = args.nouns.load()?;
    let templates = args.nouns.templates();
    let ctx = args.pipeline.context()?;
    let t0 = Instant::now();
    let model = embed::load_model(&ctx, &args.model)?;
    let t_model = t0.elapsed().as_secs_f64();

    let mut skipped_others = Vec::new();
    for p in &listing.others {
        let reason = "not an image file (.jpg, .jpeg, .png, .webp)".to_string();
        eprintln!("skipping {}: {reason}", p.display());
        skipped_others.push((p.clone(), reason));
    }
    let t0 = Instant::now();
    let mut images = embed::embed_images_skipping(
        &ctx,
        &model,
        &listing.images,
        &args.decode.options(args.exif_orientation),
        args.json,
    )?;
    images.skipped.extend(skipped_others);
    images.skipped.sort();
    let t_images = t0.elapsed().as_secs_f64();
    let n = images.paths.len();
    if n == 0 {
        return Err(Error::invalid(format!(
            "--images {}: none of the {} image files could be read",
            args.images.display(),
            listing.images.len()
        )));
    }
    if args.clusters > n {
        return Err(Error::invalid(format!(
            "--clusters {} is more than the {n} images that could be read",
            args.clusters
        )));
    }

    let t0 = Instant::now();
    let d = model.embed_dim();
    let key = CacheKey::new(&args.model, templates, &nouns)?;
    let cache_dir = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache_dir(&args.out));
    let (noun_emb, cache): (Embeddings, Option<(PathBuf, bool)>) =
        match nouns::find_cached(&cache_dir, &key, d) {
            Some((p, e)) => {
                eprintln!("using cached noun embeddings {}", p.display());
                (e, Some((p, true)))
            }
            None => {
                let e = nouns::embed_nouns(&ctx, &model, &nouns, templates, args.json)?;
                let p = cache_dir.join(key.file_name());
                match files::write_embeddings(&p, &e.values, e.rows, e.cols, &key.metadata(&nouns))
                {
                    Ok(()) => {
                        eprintln!("cached noun embeddings in {}", p.display());
                        (e, Some((p, false)))
                    }
                    Err(err) => {
                        eprintln!(
                            "warning: could not cache the noun embeddings: {}",
                            crate::common::describe(&err)
                        );
                        (e, None)
                    }
                }
            }
        };
    let t_nouns = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let name_refs: Vec<&str> = nouns.iter().map(String::as_str).collect();
    let image_view = MatrixRef::from_f32(&images.values, n, d)?;
    let input = PipelineInput {
        images: image_view,
        train: None,
        nouns: Some(noun_emb.view()),
        noun_names: Some(&name_refs),
        labels: None,
    };
    let bar = StageBar::new("pipeline", args.json);
    let callback = |stage, fraction| bar.update(stage, fraction);
    let result = ctx.run_pipeline(
        &input,
        &args.pipeline.options(args.clusters, Filter::GradNorm),
        Progress::new(&callback),
    );
    bar.finish();
    let result = result?;
    let t_pipeline = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let mut outcome = Outcome {
        args,
        images: &images,
        nouns: &nouns,
        result: &result,
        cache,
        seconds: serde_json::Value::Null,
    };
    std::fs::create_dir_all(&args.out).map_err(files::io_error(&args.out))?;
    let thumbs = report::write_thumbnails(&args.out, &images.paths)?;
    let t_report = t0.elapsed().as_secs_f64();
    outcome.seconds = serde_json::json!({
        "model": t_model, "images": t_images, "nouns": t_nouns, "pipeline": t_pipeline,
        "thumbnails": t_report, "total": t_all.elapsed().as_secs_f64(),
    });
    let json = to_json(&outcome);
    write_file(&args.out.join("clusters.csv"), to_csv(&outcome).as_bytes())?;
    write_file(
        &args.out.join("clusters.json"),
        serde_json::to_string_pretty(&json)
            .expect("json serialises")
            .as_bytes(),
    )?;
    write_file(
        &args.out.join("report.html"),
        report::html(&outcome, &thumbs).as_bytes(),
    )?;
    if args.json {
        println!("{json}");
    } else {
        print_summary(&outcome);
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(files::io_error(path))
}

/// Members of each cluster (indices into the embedded images), and the sizes.
pub fn members(result: &PipelineResult) -> Vec<Vec<usize>> {
    let k = result.cluster_names.len().max(
        result
            .labels
            .iter()
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0),
    );
    let mut m = vec![Vec::new(); k];
    for (i, &l) in result.labels.iter().enumerate() {
        m[l as usize].push(i);
    }
    m
}

/// Names of cluster `c` ("" when the pipeline gave none).
pub fn names(result: &PipelineResult, c: usize) -> &[String] {
    result.cluster_names.get(c).map_or(&[], Vec::as_slice)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn to_csv(o: &Outcome<'_>) -> String {
    let mut s = String::from("path,cluster,names\n");
    for (i, p) in o.images.paths.iter().enumerate() {
        let c = o.result.labels[i] as usize;
        s.push_str(&format!(
            "{},{c},{}\n",
            csv_field(&p.display().to_string()),
            csv_field(&names(o.result, c).join("; "))
        ));
    }
    s
}

fn to_json(o: &Outcome<'_>) -> serde_json::Value {
    let a = o.args;
    let p = &a.pipeline;
    let opts = p.options(a.clusters, Filter::GradNorm);
    let n = o.images.paths.len();
    let clusters: Vec<serde_json::Value> = members(o.result)
        .iter()
        .enumerate()
        .map(|(c, m)| {
            serde_json::json!({
                "cluster": c,
                "size": m.len(),
                "names": names(o.result, c),
                "members": m.iter().map(|&i| o.images.paths[i].display().to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let selected: Vec<serde_json::Value> = o
        .result
        .selected
        .iter()
        .map(|&i| serde_json::json!({"index": i, "noun": o.nouns[i as usize]}))
        .collect();
    let skipped: Vec<serde_json::Value> = o
        .images
        .skipped
        .iter()
        .map(|(p, r)| serde_json::json!({"path": p.display().to_string(), "reason": r}))
        .collect();
    serde_json::json!({
        "laic_version": laic::VERSION,
        "model": a.model.display().to_string(),
        "images": a.images.display().to_string(),
        "n_images": n,
        "options": {
            "clusters": a.clusters,
            "centres": opts.n_centres.unwrap_or_else(|| laic::pipeline::default_n_centres(a.clusters, n)),
            "tau": p.tau, "q": p.q, "top_k": p.top_k, "tau_r": p.tau_r,
            "centres_restarts": p.centres_restarts, "restarts": p.restarts,
            "max_iter": p.max_iter, "seed": p.seed, "filter": "gradnorm",
            "nouns": a.nouns.nouns, "templates": a.nouns.templates(),
            "decode": laic::clip::ImageDecode::from(a.decode).name(), "exif_orientation": a.exif_orientation,
        },
        "noun_count": o.nouns.len(),
        "noun_cache": o.cache.as_ref().map(|(p, reused)| serde_json::json!({"path": p.display().to_string(), "reused": reused})),
        "selected_nouns": selected,
        "n_centres": o.result.n_centres,
        "objective": o.result.objective,
        "clusters": clusters,
        "skipped": skipped,
        "seconds": o.seconds,
    })
}

fn print_summary(o: &Outcome<'_>) {
    let m = members(o.result);
    println!(
        "{} images in {} clusters ({} of {} nouns selected, {} skipped files):",
        o.images.paths.len(),
        m.len(),
        o.result.selected.len(),
        o.nouns.len(),
        o.images.skipped.len()
    );
    let mut order: Vec<usize> = (0..m.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(m[c].len()));
    for c in order {
        println!(
            "  {:>3}  {:>5}: {}",
            c,
            m[c].len(),
            names(o.result, c).join(", ")
        );
    }
    let out = &o.args.out;
    println!(
        "wrote {}, {}, {}",
        out.join("clusters.csv").display(),
        out.join("clusters.json").display(),
        out.join("report.html").display()
    );
}
