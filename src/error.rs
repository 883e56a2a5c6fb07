//! The one error type of the crate and its mapping to the C status codes.

use std::fmt;

/// Status codes of the C ABI (`LAIC_STATUS_OK`, `LAIC_STATUS_INVALID_ARGUMENT`, ... in C). The numbers are stable: never renumber one, and keep a retired
/// number as a comment.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaicStatus {
    /// Success.
    Ok = 0,
    /// An argument was NULL, out of range, inconsistent with another, or not finite.
    InvalidArgument = 1,
    /// The requested backend (CUDA) is not available on this machine.
    NoDevice = 2,
    /// A progress callback asked to stop.
    Cancelled = 3,
    /// An allocation failed (host or device).
    OutOfMemory = 4,
    /// A caller-provided output buffer is too small; nothing was written.
    BufferTooSmall = 5,
    /// A file could not be read or written.
    Io = 6,
    /// A file or buffer is malformed (bad safetensors header, undecodable image, ...).
    Format = 7,
    /// A CUDA driver, kernel or library call failed.
    Cuda = 8,
    /// A bug inside laic (a caught panic, a broken invariant).
    Internal = 9,
}

/// Everything that can go wrong in laic. `Display` is lowercase and names what was wrong.
#[derive(Debug)]
pub enum Error {
    /// An argument is out of range or inconsistent.
    InvalidArgument(String),
    /// The requested backend is not available.
    NoDevice(String),
    /// A progress callback asked to stop.
    Cancelled,
    /// An allocation failed.
    OutOfMemory(String),
    /// An output buffer is too small: `needed` elements, `got` elements.
    BufferTooSmall {
        /// Which output.
        what: &'static str,
        /// Elements required.
        needed: usize,
        /// Elements provided.
        got: usize,
    },
    /// An I/O failure, with the path or object concerned.
    Io {
        /// What was being read or written.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Malformed input data (file formats, images).
    Format(String),
    /// A CUDA failure.
    Cuda(String),
    /// A bug inside laic.
    Internal(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The C status code of this error.
    pub fn status(&self) -> LaicStatus {
        match self {
            Error::InvalidArgument(_) => LaicStatus::InvalidArgument,
            Error::NoDevice(_) => LaicStatus::NoDevice,
            Error::Cancelled => LaicStatus::Cancelled,
            Error::OutOfMemory(_) => LaicStatus::OutOfMemory,
            Error::BufferTooSmall { .. } => LaicStatus::BufferTooSmall,
            Error::Io { .. } => LaicStatus::Io,
            Error::Format(_) => LaicStatus::Format,
            Error::Cuda(_) => LaicStatus::Cuda,
            Error::Internal(_) => LaicStatus::Internal,
        }
    }

    /// Prefixes the message of an invalid-argument error with the argument's name.
    pub(crate) fn in_arg(self, what: &str) -> Self {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{what}: {m}")),
            e => e,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::NoDevice(m) => write!(f, "no device: {m}"),
            Error::Cancelled => write!(f, "cancelled by the progress callback"),
            Error::OutOfMemory(m) => write!(f, "out of memory: {m}"),
            Error::BufferTooSmall { what, needed, got } => {
                write!(
                    f,
                    "buffer too small: {what} needs {needed} elements, got {got}"
                )
            }
            Error::Io { context, source } => write!(f, "i/o error on {context}: {source}"),
            Error::Format(m) => write!(f, "malformed input: {m}"),
            Error::Cuda(m) => write!(f, "cuda error: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
