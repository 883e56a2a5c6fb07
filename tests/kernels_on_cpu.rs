//! Device kernels that use only warp intrinsics and shared memory, run on the CPU: the C++
//! compiler builds their real source (`kernels/*.cuh`) against a small emulation of CUDA's
//! thread model (`tests/kernel_emu/cuda_emu.hpp`) with AddressSanitizer and UBSan, and a
//! driver checks them against a sequential or f64 reference: the k-means update's counting
//! sort and partial sums, the fused k-means assignment (mma.sync and wgmma), the device Lloyd
//! step and k-means++ kernels, the GradNorm kernels (mma.sync and wgmma) with their centre
//! packing, the CLIP encoders' CUDA-core passes, both fused attention kernels (CUDA cores for
//! f32, tensor cores for f16 and bf16), the tensor-core retrieval with its top nouns, and the
//! row gathers and column sums of the pipeline's device-resident matrices
//! (`tests/kernel_emu/cuda_emu_mma.hpp` emulates the half types, cp.async, ldmatrix and
//! mma.sync; `cuda_emu_wgmma.hpp` Hopper's wgmma through its matrix descriptors and the
//! 128-byte swizzle, and named barriers). This is how CI, which has no GPU, tests their
//! indexing, synchronisation and arithmetic; the GPU runs them in `scripts/gpu-check.sh`.
//!
//! Without a C++20 compiler the test says it was skipped, and fails when
//! `LAIC_REQUIRE_KERNEL_EMU=1` (CI) is set.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiles `tests/kernel_emu/{driver}.cpp` and returns the binary, or `None` (skipped) when
/// no C++ compiler runs.
fn build(driver: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kernel_emu_{driver}"));
    let status = Command::new(&cxx)
        .args([
            "-std=c++20",
            "-O1",
            "-g",
            "-pthread",
            "-ffp-contract=off",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unknown-pragmas",
        ])
        .arg("-I")
        .arg(root.join("kernels"))
        .arg("-I")
        .arg(root.join("tests/kernel_emu"))
        .arg(root.join(format!("tests/kernel_emu/{driver}.cpp")))
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Some(out),
        Ok(s) => panic!("{cxx} failed to build the {driver} kernel test ({s})"),
        Err(e) => {
            assert!(
                std::env::var("LAIC_REQUIRE_KERNEL_EMU").as_deref() != Ok("1"),
                "LAIC_REQUIRE_KERNEL_EMU=1 but the C++ compiler {cxx:?} does not run: {e}"
            );
            eprintln!("SKIPPED: no C++ compiler ({cxx:?}: {e}); the {driver} kernels were not run");
            None
        }
    }
}

/// Builds and runs `driver`, which prints one line ending in " ok" per passing case; checks
/// that it passed `cases` of them.
fn run(driver: &str, cases: usize) {
    let Some(bin) = build(driver) else {
        return;
    };
    let out = Command::new(&bin).output().expect("runs the kernel test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(" ok")).count(),
        cases,
        "{stdout}"
    );
}

#[test]
fn the_counting_sort_kernels_group_points_stably_by_label() {
    run("counting_sort", 10);
}

#[test]
fn the_update_sums_kernels_add_members_in_index_order() {
    run("kmeans_sums", 15);
}

#[test]
fn the_lloyd_kernels_update_centres_as_the_host_does() {
    run("kmeans_lloyd", 11);
}

#[test]
fn the_seeding_kernels_sum_in_a_fixed_order_and_draw_as_the_host_does() {
    run("kmeans_seed", 5);
}

#[test]
fn the_fused_attention_kernels_match_f64_attention() {
    run("clip_attention", 21);
}

#[test]
fn the_clip_passes_match_f64() {
    run("clip_passes", 6);
}

#[test]
fn the_tensor_core_retrieval_matches_f64_retrieval() {
    run("retrieve", 14);
}

#[test]
fn the_row_gathers_and_column_sums_match_the_host() {
    run("rows", 8);
}

#[test]
fn the_gradnorm_kernels_match_f64_gradnorm() {
    run("gradnorm", 17);
}

#[test]
fn the_kmeans_assignment_kernels_find_the_nearest_centres() {
    run("kmeans_assign", 10);
}
