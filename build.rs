//! Build script: writes the C header `include/laic.h` with cbindgen (only when its text
//! changes, so that builds do not dirty the tree), and sets the shared library's SONAME.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    write_header(&root);
    set_soname();
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

fn write_header(root: &std::path::Path) {
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
