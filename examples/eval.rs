//! Runs the LaIC pipeline (none / TAC / GradNorm) on labelled CLIP feature sets and prints
//! ACC/NMI/ARI beside the reference table.
//!
//! `cargo run --release --example eval -- [DATA_DIR] [DATASET...]`; DATA_DIR defaults to
//! `../shared/data/clip-vit-b32`, the datasets to `dtd oxford_pets ucf101`. The logic lives in
//! `laic::eval`.

use laic::pipeline::{Filter, PipelineOptions};
use laic::{Context, eval};
use std::path::PathBuf;

fn main() -> Result<(), laic::Error> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/data/clip-vit-b32".into()),
    );
    let mut datasets: Vec<String> = args.collect();
    if datasets.is_empty() {
        datasets = ["dtd", "oxford_pets", "ucf101"].map(String::from).to_vec();
    }
    let ctx = Context::cpu();
    let filters = [Filter::None, Filter::Tac, Filter::GradNorm];
    let mut rows = Vec::new();
    for ds in &datasets {
        let r = eval::run_dataset(&ctx, &dir, ds, &filters, &PipelineOptions::default())?;
        print!("{}", eval::format_table(&r));
        for row in r.iter().filter(|r| r.filter == Filter::GradNorm) {
            println!("  first cluster names: {:?}", row.sample_names);
        }
        rows.extend(r);
    }
    println!("\n{}", eval::format_table(&rows));
    Ok(())
}
