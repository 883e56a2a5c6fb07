//! What the GPU benchmark examples share; each includes this file with
//! `#[path = "common/mod.rs"] mod common;`.

use laic::{Context, Error, Result};

/// The median of `v` (the upper middle value for an even count); `v` is not empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The context `made` holds; where it failed for want of a usable CUDA device, prints
/// "SKIPPED: no CUDA device (why)" on stderr and exits with 0, or with 1 when
/// `LAIC_REQUIRE_CUDA=1` (the GPU machine's check must not pass without a device).
pub fn context_or_skip(made: Result<Context>) -> Context {
    match made {
        Ok(c) => c,
        Err(Error::NoDevice(why)) => {
            eprintln!("SKIPPED: no CUDA device ({why})");
            let required = std::env::var("LAIC_REQUIRE_CUDA").as_deref() == Ok("1");
            std::process::exit(if required { 1 } else { 0 });
        }
        Err(e) => panic!("{e}"),
    }
}
