//! `laic` — Language-assisted Image Clustering from the command line.
//!
//! Run with no arguments for the demo on the embedded Oxford Pets features. Exit codes:
//! 0 success; 1 the job failed (bad input, unreadable file, ...: one line on stderr says why);
//! 2 wrong usage (unknown flag, missing argument); 3 an internal error (a bug: please report).

mod cluster;
mod common;
mod demo;
mod embed;
mod eval;
mod files;
mod nouns;
mod report;
mod score;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Language-assisted image clustering: filter nouns by GradNorm, cluster images, name clusters.
#[derive(Parser)]
#[command(name = "laic", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The pipeline on the embedded Oxford Pets CLIP features with the 1000 ImageNet class
    /// names as nouns: k-means only vs TAC vs GradNorm, and the named GradNorm clusters
    /// (the default command).
    Demo(demo::Args),
    /// The pipeline on precomputed, labelled features (val_* split for the centres, test_*
    /// clustered into as many clusters as it has labels): none / TAC / GradNorm side by side.
    Eval(eval::Args),
    /// GradNorm scores of a noun file against centres, and the selected nouns.
    Score(score::Args),
    /// Cluster a folder of images with a CLIP model: writes clusters.csv, clusters.json and
    /// report.html (with thumbnails) into --out.
    Cluster(cluster::Args),
    /// CLIP embeddings of the lines of a text file or of image files, into a safetensors file.
    Embed(embed::Args),
    /// Noun embeddings (mean over prompt templates) into a safetensors cache for `cluster`.
    EmbedNouns(embed::NounsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Demo(demo::Args::default())) {
        Command::Demo(a) => demo::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Score(a) => score::run(&a),
        Command::Cluster(a) => cluster::run(&a),
        Command::Embed(a) => embed::run(&a),
        Command::EmbedNouns(a) => embed::run_nouns(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("laic: error: {}", common::describe(&e));
            match e {
                laic::Error::Internal(_) => ExitCode::from(3),
                _ => ExitCode::from(1),
            }
        }
    }
}
