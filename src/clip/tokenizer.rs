//! CLIP's tokenizer: the `tokenizers` crate with a Hugging Face `tokenizer.json` (NFC, whitespace
//! collapse, lowercase, byte-level BPE with `</w>` word ends), framed as
//! `<|startoftext|> … <|endoftext|>` and cut at the context length with the end-of-text token
//! kept last (transformers' `CLIPTokenizerFast(..., truncation=True, max_length=77)`).
//!
//! The special tokens and truncation are applied here, not by the tokenizer file's own
//! post-processor, padding or truncation settings, so every `tokenizer.json` gives the same
//! framing. A default tokenizer built from OpenAI's `bpe_simple_vocab_16e6.txt.gz` ships in
//! `data/clip-tokenizer.json` (made by `scripts/make_tokenizer.py`) and is embedded in the
//! library.

use crate::error::{Error, Result};
use std::path::Path;

/// The default CLIP BPE tokenizer (49,408 tokens), embedded.
const DEFAULT_TOKENIZER_JSON: &[u8] = include_bytes!("../../data/clip-tokenizer.json");

/// A CLIP tokenizer. Immutable and usable from many threads at once.
pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    sot: u32,
    eot: u32,
    max_len: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("sot", &self.sot)
            .field("eot", &self.eot)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl ClipTokenizer {
    /// The tokenizer shipped with laic (OpenAI's CLIP vocabulary), with a context of 77.
    pub fn default_clip() -> Result<Self> {
        Self::builtin(77)
    }

    /// The tokenizer shipped with laic, cutting prompts at `max_len` tokens.
    pub fn builtin(max_len: usize) -> Result<Self> {
        Self::from_json_bytes(
            DEFAULT_TOKENIZER_JSON,
            "the built-in CLIP tokenizer",
            max_len,
        )
    }

    /// Loads a `tokenizer.json`; prompts are cut to `max_len` tokens including the two
    /// special tokens.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            context: path.display().to_string(),
            source,
        })?;
        Self::from_json_bytes(&bytes, &path.display().to_string(), max_len)
    }

    /// Parses the text of a `tokenizer.json`; `what` names it in errors.
    pub fn from_json_bytes(bytes: &[u8], what: &str, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(Error::invalid(format!(
                "max_len {max_len} leaves no room for the two special tokens"
            )));
        }
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Format(format!("{what}: not a tokenizer.json: {e}")))?;
        // Framing and length are applied by `encode`, whatever the file configures.
        inner
            .with_truncation(None)
            .map_err(|e| Error::Format(format!("{what}: {e}")))?;
        inner.with_padding(None);
        let special = |name: &str| {
            inner
                .token_to_id(name)
                .ok_or_else(|| Error::Format(format!("{what}: the vocabulary has no {name} token")))
        };
        let sot = special("<|startoftext|>")?;
        let eot = special("<|endoftext|>")?;
        Ok(ClipTokenizer {
            inner,
            sot,
            eot,
            max_len,
        })
    }

    /// The start-of-text token id (49406 in CLIP's vocabulary).
    pub fn sot(&self) -> u32 {
        self.sot
    }

    /// The end-of-text token id (49407 in CLIP's vocabulary).
    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// The longest encoding, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Token ids of `text`: `[sot, …, eot]`, at most `max_len` long (the BPE tokens are cut,
    /// the end-of-text token stays). An empty string gives `[sot, eot]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Internal(format!("tokenizer failed on {text:?}: {e}")))?;
        let body = enc.get_ids();
        let keep = body.len().min(self.max_len - 2);
        let mut ids = Vec::with_capacity(keep + 2);
        ids.push(self.sot);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.eot);
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_truncates_with_eot_last() {
        let t = ClipTokenizer::default_clip().unwrap();
        assert_eq!((t.sot(), t.eot()), (49406, 49407));
        assert_eq!(t.encode("").unwrap(), vec![49406, 49407]);
        // "a photo of a cat." in CLIP's vocabulary.
        assert_eq!(
            t.encode("a photo of a cat.").unwrap(),
            vec![49406, 320, 1125, 539, 320, 2368, 269, 49407]
        );
        let long = "cat ".repeat(200);
        let ids = t.encode(&long).unwrap();
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[76], 49407);
        assert_eq!(ids[75], ids[1]);
    }

    #[test]
    fn rejects_files_that_are_not_clip_tokenizers() {
        let e = ClipTokenizer::from_json_bytes(b"{}", "x.json", 77).unwrap_err();
        assert!(e.to_string().contains("x.json"), "{e}");
        let min = br#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#;
        let e = ClipTokenizer::from_json_bytes(min, "w.json", 77).unwrap_err();
        assert!(e.to_string().contains("<|startoftext|>"), "{e}");
    }
}
