//! Build script:
//! 1. writes the C header `include/laic.h` with cbindgen (only when its text changes, so that
//!    builds do not dirty the tree);
//! 2. compiles every `kernels/*.cu` to PTX with nvcc (`-arch=compute_80`, PTX ISA <= 9.0, which
//!    the GPU machines' driver 580 accepts), assembles each for sm_90 with ptxas to prove it
//!    is valid (a ptxas error fails the build), and leaves `<stem>.ptx` and `<stem>.sm_90.cubin` in
//!    `OUT_DIR` for `include_str!`/`include_bytes!` (files marked `// laic-arch: sm_90a` on their
//!    first line target compute_90a/sm_90a instead: see `compile_kernel`). With PTX built it
//!    sets `cfg(laic_cuda_kernels)`. Without nvcc the
//!    library builds without kernels (one warning) and its CUDA backend reports itself
//!    unavailable.
//!
//! nvcc is found through `NVCC`, then `$CUDA_HOME/bin/nvcc`, then `PATH`;
//! `scripts/install-nvcc.sh` installs the pinned PyPI compiler wheels and prints a CUDA_HOME.
//! `LAIC_CUDA_KERNELS=0` skips the kernels even when nvcc is there.
//! 3. gives the shared library the SONAME `liblaic.so`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    write_header(&root);
    set_soname();
    build_kernels(&root);
}

/// Gives the ELF shared library the SONAME `liblaic.so`, so that programs linked against it by
/// full path (CMake imported targets, pkg-config via find_library) record `liblaic.so` rather
/// than the path it was found at, and find it through their rpath or LD_LIBRARY_PATH.
fn set_soname() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd"
    ) {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblaic.so");
    }
}

fn write_header(root: &Path) {
    let config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    let bindings = match cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
    {
        Ok(b) => b,
        Err(e) => {
            // A source that does not parse fails in rustc with a better message.
            println!("cargo:warning=cbindgen could not generate include/laic.h: {e}");
            return;
        }
    };
    let mut text = Vec::new();
    bindings.write(&mut text);
    let path = root.join("include").join("laic.h");
    if std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("can create include/");
        std::fs::write(&path, &text).expect("can write include/laic.h");
    }
}

/// What each kernel file compiles to in OUT_DIR: PTX (any sm_80+ device, JIT-compiled at load)
/// and the sm_90 cubin ptxas made from it (H100/H200 load it without JIT).
const OUTPUTS: [&str; 2] = ["ptx", "sm_90.cubin"];

/// Highest PTX ISA the target driver (580, CUDA 13.0) loads, as (major, minor).
const MAX_PTX_ISA: (u32, u32) = (9, 0);

fn build_kernels(root: &Path) {
    println!("cargo::rustc-check-cfg=cfg(laic_cuda_kernels)");
    for var in ["NVCC", "CUDA_HOME", "LAIC_CUDA_KERNELS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let dir = root.join("kernels");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut sources = Vec::new();
    let mut headers = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("cu") => sources.push(path),
                Some("cuh") => headers.push(path),
                _ => {}
            }
        }
    }
    sources.sort();
    for file in sources.iter().chain(&headers) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    if sources.is_empty() {
        return;
    }
    if std::env::var("LAIC_CUDA_KERNELS").as_deref() == Ok("0") {
        println!("cargo:warning=LAIC_CUDA_KERNELS=0: building without CUDA kernels");
        return;
    }
    let Some(nvcc) = find_nvcc() else {
        println!(
            "cargo:warning=nvcc not found (NVCC, CUDA_HOME, PATH): building without CUDA \
             kernels; the CUDA backend will report itself unavailable. \
             scripts/install-nvcc.sh installs one."
        );
        return;
    };
    let bin = nvcc.parent().map(Path::to_path_buf).unwrap_or_default();
    let home = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    let ptxas = [bin.join("ptxas"), PathBuf::from("ptxas")]
        .into_iter()
        .find(|p| p.is_file() || p.as_os_str() == "ptxas")
        .expect("a candidate");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // This script reruns whenever src/ changes (for the header); the kernels only need
    // compiling again when their sources or the compiler change.
    let stamp = out.join("kernels.stamp");
    let key = kernel_key(&nvcc, sources.iter().chain(&headers));
    let fresh = std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str())
        && sources.iter().all(|s| {
            let stem = s.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            OUTPUTS
                .iter()
                .all(|ext| out.join(format!("{stem}.{ext}")).is_file())
        });
    if fresh {
        println!("cargo:rustc-cfg=laic_cuda_kernels");
        return;
    }
    // Another build-script run of this crate (cargo build and cargo test unify features
    // differently and get separate OUT_DIRs) may have compiled the same key already.
    let shared = out
        .ancestors()
        .nth(2)
        .map(|build_dir| build_dir.join("laic-kernel-cache").join(&key));
    let stems: Vec<String> = sources
        .iter()
        .filter_map(|s| s.file_stem().and_then(|s| s.to_str()).map(String::from))
        .collect();
    if let Some(cache) = &shared
        && stems.iter().all(|s| {
            OUTPUTS
                .iter()
                .all(|ext| cache.join(format!("{s}.{ext}")).is_file())
        })
    {
        for s in &stems {
            for ext in OUTPUTS {
                let name = format!("{s}.{ext}");
                std::fs::copy(cache.join(&name), out.join(&name)).expect("can copy cached kernels");
            }
        }
        std::fs::write(&stamp, &key).expect("can write the kernel stamp");
        println!("cargo:rustc-cfg=laic_cuda_kernels");
        return;
    }
    let _ = std::fs::remove_file(&stamp);
    // One thread per kernel file: nvcc and ptxas are single-threaded and take minutes.
    std::thread::scope(|scope| {
        for src in &sources {
            let (nvcc, ptxas, home, dir, out) = (&nvcc, &ptxas, &home, &dir, &out);
            scope.spawn(move || compile_kernel(src, nvcc, ptxas, home, dir, out));
        }
    });
    if let Some(cache) = &shared
        && std::fs::create_dir_all(cache).is_ok()
    {
        for s in &stems {
            for ext in OUTPUTS {
                // Copy then rename: a reader never sees a half-written file.
                let name = format!("{s}.{ext}");
                let tmp = cache.join(format!("{name}.tmp{}", std::process::id()));
                if std::fs::copy(out.join(&name), &tmp).is_ok() {
                    let _ = std::fs::rename(&tmp, cache.join(&name));
                }
            }
        }
    }
    std::fs::write(&stamp, key).expect("can write the kernel stamp");
    println!("cargo:rustc-cfg=laic_cuda_kernels");
}

/// Compiles one kernel file to `<stem>.ptx` and assembles it to `<stem>.sm_90.cubin`.
///
/// A file whose first line is `// laic-arch: sm_90a` uses Hopper-only instructions (wgmma): it
/// is compiled for compute_90a and assembled for sm_90a (the cubin loads on H100/H200 only);
/// every other file targets compute_80 (any sm_80+ device JIT-compiles its PTX) and is
/// assembled for sm_90 to prove it valid and to spare H100/H200 the JIT.
fn compile_kernel(src: &Path, nvcc: &Path, ptxas: &Path, home: &Path, dir: &Path, out: &Path) {
    let stem = src
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("utf-8 kernel name");
    let hopper = std::fs::read_to_string(src)
        .map(|t| t.lines().next().unwrap_or_default().trim() == "// laic-arch: sm_90a")
        .unwrap_or(false);
    let (virtual_arch, real_arch) = if hopper {
        ("compute_90a", "sm_90a")
    } else {
        ("compute_80", "sm_90")
    };
    let ptx = out.join(format!("{stem}.ptx"));
    run(
        Command::new(nvcc)
            .arg("--ptx")
            .arg(format!("-arch={virtual_arch}"))
            .arg("-std=c++17")
            .arg(format!("-I{}", home.join("include").display()))
            .arg(format!("-I{}", dir.display()))
            .arg(src)
            .arg("-o")
            .arg(&ptx),
        &format!("nvcc --ptx {}", src.display()),
    );
    check_ptx_version(&ptx);
    run(
        Command::new(ptxas)
            .arg(format!("-arch={real_arch}"))
            .arg(&ptx)
            .arg("-o")
            .arg(out.join(format!("{stem}.sm_90.cubin"))),
        &format!("ptxas -arch={real_arch} {}", ptx.display()),
    );
}

/// What the compiled kernels depend on: the compiler's path and version, this script's flags
/// (through its own source), and every kernel file's contents.
fn kernel_key<'a>(nvcc: &Path, files: impl Iterator<Item = &'a PathBuf>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    nvcc.hash(&mut h);
    if let Ok(v) = Command::new(nvcc).arg("--version").output() {
        v.stdout.hash(&mut h);
    }
    include_str!("build.rs").hash(&mut h);
    let mut files: Vec<_> = files.collect();
    files.sort();
    for f in files {
        f.hash(&mut h);
        std::fs::read(f).unwrap_or_default().hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

/// nvcc from `NVCC`, `$CUDA_HOME/bin/nvcc`, or `PATH`.
fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
        panic!("NVCC={} is not a file", p.display());
    }
    if let Some(home) = std::env::var_os("CUDA_HOME").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(home).join("bin").join("nvcc");
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Fails the build when nvcc wrote a PTX ISA newer than the GPU machines' driver accepts.
fn check_ptx_version(ptx: &Path) {
    let text = std::fs::read_to_string(ptx).expect("nvcc wrote the PTX");
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(".version "))
        .unwrap_or_else(|| panic!("{} has no .version line", ptx.display()));
    let mut parts = version.trim().split('.').map(|n| n.parse::<u32>());
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        panic!("{}: unreadable PTX version {version}", ptx.display());
    };
    if (major, minor) > MAX_PTX_ISA {
        panic!(
            "{}: PTX ISA {major}.{minor} is newer than {}.{} (driver 580 / CUDA 13.0 rejects it): \
             use nvcc 13.0.x (scripts/install-nvcc.sh) or build with LAIC_CUDA_KERNELS=0",
            ptx.display(),
            MAX_PTX_ISA.0,
            MAX_PTX_ISA.1
        );
    }
}
