//! Files the commands read and write: image folders, the model file's content hash, and
//! safetensors embedding files with string metadata.

use laic::{Error, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Extensions (lower case) of the image files the commands pick up.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// An `Error::Io` on `path`.
pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: path.display().to_string(),
        source,
    }
}

/// Whether `path` has an image extension (any case).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// What a folder walk found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Image files, sorted by path.
    pub images: Vec<PathBuf>,
    /// Other files (not hidden), sorted by path.
    pub others: Vec<PathBuf>,
}

/// Walks `dir` recursively in sorted order. Hidden entries (a name starting with `.`) and the
/// folder `exclude` (the output folder, when it lies inside) are left out.
pub fn list_folder(dir: &Path, exclude: Option<&Path>) -> Result<Listing> {
    let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!("{}: not a folder", dir.display())));
    }
    let exclude = exclude.and_then(|p| p.canonicalize().ok());
    let mut listing = Listing::default();
    walk(dir, exclude.as_deref(), &mut listing)?;
    listing.images.sort();
    listing.others.sort();
    Ok(listing)
}

fn walk(dir: &Path, exclude: Option<&Path>, out: &mut Listing) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if exclude.is_some_and(|x| p.canonicalize().is_ok_and(|c| c == x)) {
                continue;
            }
            walk(&p, exclude, out)?;
        } else if is_image(&p) {
            out.images.push(p);
        } else {
            out.others.push(p);
        }
    }
    Ok(())
}

/// The image files named by `paths`: a folder stands for its image files in sorted path order
/// (recursively), a file for itself.
pub fn expand_image_args(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io_error(p))?;
        if meta.is_dir() {
            let listing = list_folder(p, None)?;
            if listing.images.is_empty() {
                return Err(Error::invalid(format!(
                    "{}: no image files (.jpg, .jpeg, .png, .webp) in this folder",
                    p.display()
                )));
            }
            out.extend(listing.images);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The weights file of a model path, resolved as `ClipModel::load` resolves it: the
/// `.safetensors` file itself, or a folder's `model.safetensors` or its only `*.safetensors`.
pub fn model_weights_file(model: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(model).map_err(|_| {
        Error::invalid(format!(
            "--model {}: no such file or folder (expected a CLIP folder with model.safetensors)",
            model.display()
        ))
    })?;
    if !meta.is_dir() {
        return Ok(model.to_path_buf());
    }
    let preferred = model.join("model.safetensors");
    if preferred.is_file() {
        return Ok(preferred);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(model)
        .map_err(io_error(model))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    match found.len() {
        1 => Ok(found.pop().expect("one element")),
        _ => Err(Error::invalid(format!(
            "--model {}: expected model.safetensors or exactly one .safetensors file in this folder",
            model.display()
        ))),
    }
}

/// A fast 64-bit content hash (not cryptographic): eight bytes at a time through a
/// multiply–xorshift mix, then the length. Enough to tell model files apart.
pub fn content_hash_bytes(bytes: &[u8]) -> u64 {
    const M: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(M);
        h ^= h >> 31;
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(M);
    h ^= bytes.len() as u64;
    h = h.wrapping_mul(M);
    h ^ (h >> 29)
}

/// [`content_hash_bytes`] of a file's contents, as 16 hex digits.
pub fn content_hash_file(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    // SAFETY: the file is only read; a concurrent writer could change the bytes we hash,
    // which gives a different hash, never undefined behaviour in safe code reading a slice of
    // plain bytes as the mapping stays valid until dropped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(path))?;
    Ok(format!("{:016x}", content_hash_bytes(&map)))
}

/// Writes `values` (`rows × cols` f32) as tensor `embeddings` with string `metadata` to a
/// safetensors file (written beside and renamed, so a reader never sees half a file).
pub fn write_embeddings(
    path: &Path,
    values: &[f32],
    rows: usize,
    cols: usize,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    assert_eq!(values.len(), rows * cols, "embedding matrix shape");
    let header = serde_json::json!({
        "__metadata__": metadata,
        "embeddings": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, values.len() * 4]},
    });
    let mut h = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + h.len() + values.len() * 4);
    bytes.extend_from_slice(&(h.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&h);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let tmp = path.with_extension("safetensors.partial");
    let mut f = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
    f.write_all(&bytes).map_err(io_error(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// The `__metadata__` of a safetensors file, read from its header only.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bad = |m: &str| Error::Format(format!("{}: {m}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io_error(path))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io_error(path))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad("safetensors header too large"));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(io_error(path))?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(&format!("bad header: {e}")))?;
    let mut out = BTreeMap::new();
    if let Some(m) = v.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_sees_every_byte_and_the_length() {
        let a = vec![7u8; 1001];
        let h = content_hash_bytes(&a);
        for i in [0, 500, 999, 1000] {
            let mut b = a.clone();
            b[i] ^= 1;
            assert_ne!(content_hash_bytes(&b), h, "byte {i}");
        }
        assert_ne!(content_hash_bytes(&a[..1000]), h);
        assert_ne!(content_hash_bytes(&[]), content_hash_bytes(&[0]));
    }
}
