//! Loading embedding files: safetensors feature sets in the layout of the evaluation data
//! (`<dataset>.safetensors` with `test_features`, `test_labels`, `val_features`, `val_labels`;
//! `imagenet1k_text.safetensors` with `text_features`) and JSON lists of noun strings.

use crate::error::{Error, Result};
use crate::matrix::MatrixRef;
use safetensors::{Dtype as StDtype, SafeTensors};
use std::path::Path;

/// A dense row-major f32 matrix owned in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// `rows × cols` values.
    pub values: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
}

impl Embeddings {
    /// A borrowed view for the compute functions.
    pub fn view(&self) -> MatrixRef<'_> {
        MatrixRef::from_f32(&self.values, self.rows, self.cols)
            .expect("an Embeddings is a valid non-empty matrix")
    }
}

/// A labelled feature set: the images to cluster (`test`) and training images (`val`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// Images to cluster, N×D.
    pub test: Embeddings,
    /// Their labels, N.
    pub test_labels: Vec<i64>,
    /// Training images (centres), N_c×D.
    pub val: Embeddings,
    /// Their labels, N_c.
    pub val_labels: Vec<i64>,
}

impl FeatureSet {
    /// Number of distinct test labels.
    pub fn n_classes(&self) -> usize {
        let mut l = self.test_labels.clone();
        l.sort_unstable();
        l.dedup();
        l.len()
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        context: path.display().to_string(),
        source,
    })
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Format(format!("{}: not a safetensors file: {e}", path.display())))
}

/// A 2-D float tensor (f32, f16 or bf16) as f32.
fn matrix(st: &SafeTensors<'_>, name: &str, path: &Path) -> Result<Embeddings> {
    let t = st
        .tensor(name)
        .map_err(|e| Error::Format(format!("{}: tensor {name}: {e}", path.display())))?;
    let shape = t.shape();
    if shape.len() != 2 || shape[0] == 0 || shape[1] == 0 {
        return Err(Error::Format(format!(
            "{}: tensor {name} has shape {shape:?}, expected a non-empty matrix",
            path.display()
        )));
    }
    let bytes = t.data();
    let values: Vec<f32> = match t.dtype() {
        StDtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        StDtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        StDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::Format(format!(
                "{}: tensor {name} has dtype {other:?}, expected F32, F16 or BF16",
                path.display()
            )));
        }
    };
    Ok(Embeddings {
        values,
        rows: shape[0],
        cols: shape[1],
    })
}

/// A 1-D integer tensor (i64 or i32) as i64.
fn labels(st: &SafeTensors<'_>, name: &str, path: &Path) -> Result<Vec<i64>> {
    let t = st
        .tensor(name)
        .map_err(|e| Error::Format(format!("{}: tensor {name}: {e}", path.display())))?;
    if t.shape().len() != 1 {
        return Err(Error::Format(format!(
            "{}: tensor {name} has shape {:?}, expected a vector",
            path.display(),
            t.shape()
        )));
    }
    let b = t.data();
    match t.dtype() {
        StDtype::I64 => Ok(b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()),
        StDtype::I32 => Ok(b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
            .collect()),
        other => Err(Error::Format(format!(
            "{}: tensor {name} has dtype {other:?}, expected I64 or I32",
            path.display()
        ))),
    }
}

/// Loads a labelled feature set (`test_features`, `test_labels`, `val_features`,
/// `val_labels`), checking that the shapes agree.
pub fn load_feature_set(path: &Path) -> Result<FeatureSet> {
    parse_feature_set(&read(path)?, path)
}

/// [`load_feature_set`] on the bytes of a file (`path` names it in errors).
pub fn parse_feature_set(bytes: &[u8], path: &Path) -> Result<FeatureSet> {
    let st = parse(bytes, path)?;
    let set = FeatureSet {
        test: matrix(&st, "test_features", path)?,
        test_labels: labels(&st, "test_labels", path)?,
        val: matrix(&st, "val_features", path)?,
        val_labels: labels(&st, "val_labels", path)?,
    };
    if set.test.rows != set.test_labels.len()
        || set.val.rows != set.val_labels.len()
        || set.test.cols != set.val.cols
    {
        return Err(Error::Format(format!(
            "{}: features and labels disagree in shape",
            path.display()
        )));
    }
    Ok(set)
}

/// Loads one 2-D float tensor `name` from a safetensors file.
pub fn load_matrix(path: &Path, name: &str) -> Result<Embeddings> {
    parse_matrix(&read(path)?, name, path)
}

/// [`load_matrix`] on the bytes of a file (`path` names it in errors).
pub fn parse_matrix(bytes: &[u8], name: &str, path: &Path) -> Result<Embeddings> {
    matrix(&parse(bytes, path)?, name, path)
}

/// Loads a JSON list of strings.
pub fn load_strings(path: &Path) -> Result<Vec<String>> {
    parse_strings(&read(path)?, path)
}

/// [`load_strings`] on the bytes of a file (`path` names it in errors).
pub fn parse_strings(bytes: &[u8], path: &Path) -> Result<Vec<String>> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Format(format!(
            "{}: expected a JSON list of strings: {e}",
            path.display()
        ))
    })
}

/// A noun corpus: embeddings (M×D) and their strings.
#[derive(Debug, Clone, PartialEq)]
pub struct NounSet {
    /// Text embeddings, one row per noun.
    pub embeddings: Embeddings,
    /// The nouns.
    pub names: Vec<String>,
}

/// Loads the ImageNet class-name corpus of a data folder (`imagenet1k_text.safetensors` with
/// `text_features`, `imagenet1k_classes.json`).
pub fn load_imagenet_nouns(dir: &Path) -> Result<NounSet> {
    let embeddings = load_matrix(&dir.join("imagenet1k_text.safetensors"), "text_features")?;
    let names = load_strings(&dir.join("imagenet1k_classes.json"))?;
    if names.len() != embeddings.rows {
        return Err(Error::Format(format!(
            "{}: {} names for {} embeddings",
            dir.display(),
            names.len(),
            embeddings.rows
        )));
    }
    Ok(NounSet { embeddings, names })
}

/// The `data/` folder of this repository (Oxford Pets features and the ImageNet nouns).
pub fn bundled_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_oxford_pets_and_nouns_load_with_their_documented_shapes() {
        let set = load_feature_set(&bundled_dir().join("oxford_pets.safetensors")).unwrap();
        assert_eq!((set.test.rows, set.test.cols), (3669, 512));
        assert_eq!((set.val.rows, set.val.cols), (736, 512));
        assert_eq!(set.n_classes(), 37);
        let nouns = load_imagenet_nouns(bundled_dir()).unwrap();
        assert_eq!((nouns.embeddings.rows, nouns.embeddings.cols), (1000, 512));
        assert_eq!(nouns.names[1], "goldfish");
        // Rows are unit-norm (f16 rounding aside).
        let r = &set.test.values[..512];
        let n: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-2, "{n}");
    }

    #[test]
    fn malformed_files_are_format_errors() {
        let dir = std::env::temp_dir().join(format!("laic-data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.safetensors");
        std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ").unwrap();
        assert!(matches!(load_feature_set(&p), Err(Error::Format(_))));
        assert!(matches!(
            load_feature_set(&dir.join("missing.safetensors")),
            Err(Error::Io { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
