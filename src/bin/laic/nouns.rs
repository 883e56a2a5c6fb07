//! Noun corpora and their embeddings: the bundled WordNet list or a user file, prompt
//! templates, and the safetensors cache keyed by model hash, templates and noun list.

use crate::files;
use indicatif::{ProgressBar, ProgressStyle};
use laic::clip::ClipModel;
use laic::data::Embeddings;
use laic::{Context, Error, Progress, Result};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

static WORDNET: &str = include_str!("../../../data/wordnet_nouns.txt");

/// The 7 prompt templates of DESIGN.md §1.
pub const TEMPLATES_7: [&str; 7] = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
];

/// The single template of `--templates 1`.
pub const TEMPLATES_1: [&str; 1] = ["a photo of a {}."];

/// Format tag written in the cache metadata.
const CACHE_FORMAT: &str = "laic-noun-embeddings-1";

/// Flags choosing the noun corpus and the templates.
#[derive(clap::Args, Clone, Debug)]
pub struct NounArgs {
    /// Noun corpus: "wordnet" (117,798 WordNet 3.0 noun lemmas, bundled) or a UTF-8 file with
    /// one noun per line (blank lines and repeats are dropped).
    #[arg(long, default_value = "wordnet")]
    pub nouns: String,
    /// Prompt templates per noun: 7 (the ensemble of DESIGN.md §1) or 1 ("a photo of a {}.").
    #[arg(long, default_value = "7", value_parser = ["7", "1"])]
    pub templates: String,
}

impl NounArgs {
    /// The templates chosen.
    pub fn templates(&self) -> &'static [&'static str] {
        if self.templates == "1" {
            &TEMPLATES_1
        } else {
            &TEMPLATES_7
        }
    }

    /// The nouns: trimmed, non-empty, first occurrence kept.
    pub fn load(&self) -> Result<Vec<String>> {
        let text = if self.nouns == "wordnet" {
            WORDNET.to_string()
        } else {
            let p = Path::new(&self.nouns);
            let bytes = std::fs::read(p).map_err(files::io_error(p))?;
            String::from_utf8(bytes).map_err(|_| {
                Error::invalid(format!("--nouns {}: not a UTF-8 text file", p.display()))
            })?
        };
        let mut seen = HashSet::new();
        let nouns: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && seen.insert(l.to_string()))
            .map(str::to_string)
            .collect();
        if nouns.is_empty() {
            return Err(Error::invalid(format!("--nouns {}: no nouns", self.nouns)));
        }
        Ok(nouns)
    }
}

/// What identifies a set of noun embeddings.
pub struct CacheKey {
    /// Content hash of the model's weights file.
    pub model_hash: String,
    /// The templates, as a JSON list.
    pub templates: String,
    /// Hash of the noun list (joined by newlines).
    pub nouns_hash: String,
    /// Number of nouns.
    pub n_nouns: usize,
}

impl CacheKey {
    /// The key of `nouns` embedded with `templates` by the model at `model`.
    pub fn new(model: &Path, templates: &[&str], nouns: &[String]) -> Result<Self> {
        let weights = files::model_weights_file(model)?;
        Ok(CacheKey {
            model_hash: files::content_hash_file(&weights)?,
            templates: serde_json::to_string(templates).expect("strings serialise"),
            nouns_hash: format!(
                "{:016x}",
                files::content_hash_bytes(nouns.join("\n").as_bytes())
            ),
            n_nouns: nouns.len(),
        })
    }

    /// The metadata of a cache file with this key (and the nouns themselves).
    pub fn metadata(&self, nouns: &[String]) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("format".to_string(), CACHE_FORMAT.to_string()),
            ("model_hash".to_string(), self.model_hash.clone()),
            ("templates".to_string(), self.templates.clone()),
            ("nouns_hash".to_string(), self.nouns_hash.clone()),
            ("n_nouns".to_string(), self.n_nouns.to_string()),
            (
                "nouns".to_string(),
                serde_json::to_string(nouns).expect("strings serialise"),
            ),
        ])
    }

    /// Whether metadata read from a file carries this key.
    pub fn matches(&self, m: &BTreeMap<String, String>) -> bool {
        let is = |k: &str, v: &str| m.get(k).is_some_and(|x| x == v);
        is("format", CACHE_FORMAT)
            && is("model_hash", &self.model_hash)
            && is("templates", &self.templates)
            && is("nouns_hash", &self.nouns_hash)
            && is("n_nouns", &self.n_nouns.to_string())
    }

    /// The file name `cluster` writes a fresh cache under.
    pub fn file_name(&self) -> String {
        let t = files::content_hash_bytes(self.templates.as_bytes());
        format!(
            "nouns-{}-{:08x}-{}.safetensors",
            self.model_hash,
            t as u32,
            &self.nouns_hash[..8]
        )
    }
}

/// The first `*.safetensors` file in `dir` (sorted) whose metadata matches `key` and whose
/// embeddings have the expected shape.
pub fn find_cached(dir: &Path, key: &CacheKey, dim: usize) -> Option<(PathBuf, Embeddings)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    files.into_iter().find_map(|p| {
        let m = files::read_metadata(&p).ok()?;
        if !key.matches(&m) {
            return None;
        }
        let e = laic::data::load_matrix(&p, "embeddings").ok()?;
        (e.rows == key.n_nouns && e.cols == dim).then_some((p, e))
    })
}

/// Nouns per text-encoder call.
const NOUN_CHUNK: usize = 128;

/// Embeds each noun as the L2-normalised mean of its template prompts' embeddings, with a
/// progress bar over the nouns (hidden when `quiet`).
pub fn embed_nouns(
    ctx: &Context,
    model: &ClipModel,
    nouns: &[String],
    templates: &[&str],
    quiet: bool,
) -> Result<Embeddings> {
    let d = model.embed_dim();
    let t = templates.len();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(nouns.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} {bar:30} {pos}/{len} nouns × {msg} templates ({elapsed}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar.set_prefix("nouns");
    bar.set_message(t.to_string());
    let mut values = vec![0f32; nouns.len() * d];
    for (c, chunk) in nouns.chunks(NOUN_CHUNK).enumerate() {
        let prompts: Vec<String> = chunk
            .iter()
            .flat_map(|n| templates.iter().map(move |tpl| tpl.replace("{}", n)))
            .collect();
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let base = (c * NOUN_CHUNK) as u64;
        let n_chunk = chunk.len() as f64;
        let callback = |_stage, fraction: f64| {
            bar.set_position(base + (fraction * n_chunk) as u64);
            true
        };
        let emb = model.encode_texts(ctx, &refs, Progress::new(&callback))?;
        for (j, row) in values[c * NOUN_CHUNK * d..]
            .chunks_mut(d)
            .take(chunk.len())
            .enumerate()
        {
            for k in 0..t {
                for (r, e) in row.iter_mut().zip(&emb[(j * t + k) * d..][..d]) {
                    *r += e;
                }
            }
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        bar.set_position(base + chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Embeddings {
        values,
        rows: nouns.len(),
        cols: d,
    })
}
