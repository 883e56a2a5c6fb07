//! Compiles `tests/c/test_c_api.c` with the system C compiler against the committed
//! `include/laic.h`, links it to the freshly built `liblaic.so`, and runs it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn c_program_scores_selects_and_gets_errors_through_the_header() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The test binary lives in target/<profile>/deps; `cargo test` leaves the cdylib there,
    // `cargo build` also copies it one level up.
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let lib_dir = [deps.clone(), deps.parent().unwrap().to_path_buf()]
        .into_iter()
        .find(|d| d.join("liblaic.so").exists())
        .unwrap_or_else(|| panic!("liblaic.so not found in {} or its parent", deps.display()));
    let out = std::env::temp_dir().join(format!("laic_c_api_{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/c/test_c_api.c"))
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib_dir.display()))
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-llaic", "-lm"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(status.success(), "the C test program did not compile");
    let run = Command::new(&out).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "the C test program failed");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
