//! The C ABI. `extern "C"` functions only: each converts and checks its arguments, calls the
//! Rust API, and turns the result into a [`LaicStatus`]. No logic lives here.
//!
//! Conventions (DESIGN.md §3): every function returns a status; `laic_last_error()` holds the
//! message of the last failure on the calling thread; every body runs under `guard`, so a
//! panic becomes `LAIC_STATUS_INTERNAL` and never unwinds into C; outputs are caller-allocated
//! and written only on success.

mod clip;
mod cluster;
mod context;
mod gradnorm;
mod pipeline;
mod types;

pub use clip::*;
pub use cluster::*;
pub use context::*;
pub use gradnorm::*;
pub use pipeline::*;
pub use types::*;

use crate::error::{Error, LaicStatus, Result};
use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `body`, catching panics; records the message of a failure in the thread's last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<()>) -> LaicStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LaicStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            e.status()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let e = Error::Internal(format!("panic inside laic: {what}"));
            set_last_error(&e.to_string());
            e.status()
        }
    }
}

/// A shared reference from a pointer that must not be NULL.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `T` for the returned lifetime.
pub(crate) unsafe fn try_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: the caller guarantees validity when non-null.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid(format!("{what} is NULL")))
}

/// A slice from a pointer and a length; NULL is allowed only for a zero length.
///
/// # Safety
/// `ptr` is valid for reads of `len` elements of `T` when non-null.
pub(crate) unsafe fn try_slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_ptr(ptr, len, what)?;
    // SAFETY: non-null, aligned, and the caller guarantees `len` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable slice from a pointer and a length; NULL is allowed only for a zero length.
///
/// # Safety
/// `ptr` is valid for writes of `len` elements of `T` when non-null, and not aliased.
pub(crate) unsafe fn try_mut_slice<'a, T>(
    ptr: *mut T,
    len: usize,
    what: &str,
) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_ptr(ptr, len, what)?;
    // SAFETY: non-null, aligned, and the caller guarantees `len` writable elements.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

fn check_ptr<T>(ptr: *const T, len: usize, what: &str) -> Result<()> {
    if ptr.is_null() {
        return Err(Error::invalid(format!("{what} is NULL")));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(format!(
            "{what} is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    len.checked_mul(std::mem::size_of::<T>())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| {
            Error::invalid(format!("{what}: {len} elements overflow the address space"))
        })?;
    Ok(())
}

/// Reads a versioned options struct whose first field is `struct_size`: NULL gives `defaults`;
/// otherwise the first `min(struct_size, size_of::<T>())` bytes come from the caller and the
/// rest keep their defaults, so callers built against an older, shorter struct keep working.
///
/// # Safety
/// `ptr` is NULL or valid for reads of `struct_size` bytes; `T` is `#[repr(C)]`, starts with a
/// `usize`, and every bit pattern of its fields is valid (integers and floats only).
pub(crate) unsafe fn read_options<T: Copy>(ptr: *const T, defaults: T, what: &str) -> Result<T> {
    if ptr.is_null() {
        return Ok(defaults);
    }
    check_ptr(ptr as *const usize, 1, what)?;
    // SAFETY: non-null and aligned; every options struct begins with its size.
    let size = unsafe { *(ptr as *const usize) };
    if size < std::mem::size_of::<usize>() || size > 1 << 16 {
        return Err(Error::invalid(format!(
            "{what}.struct_size is {size}: set it to sizeof the struct (use the _default function)"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    let mut out = defaults;
    // SAFETY: the caller provides `size >= n` readable bytes; `out` has `size_of::<T>() >= n`;
    // every bit pattern is valid for T's fields.
    unsafe { std::ptr::copy_nonoverlapping(ptr as *const u8, &mut out as *mut T as *mut u8, n) };
    Ok(out)
}

/// Writes defaults into a caller's options struct of `struct_size` bytes (its own `sizeof`),
/// never past it.
///
/// # Safety
/// `ptr` is valid for writes of `struct_size` bytes.
pub(crate) unsafe fn write_options<T: Copy>(
    ptr: *mut T,
    struct_size: usize,
    defaults: T,
    what: &str,
) -> Result<()> {
    check_ptr(ptr as *const usize, 1, what)?;
    if struct_size < std::mem::size_of::<usize>() {
        return Err(Error::invalid(format!(
            "struct_size {struct_size} is too small for {what}"
        )));
    }
    let n = struct_size.min(std::mem::size_of::<T>());
    // SAFETY: `n` bytes fit both the caller's struct and `defaults`.
    unsafe {
        std::ptr::copy_nonoverlapping(&defaults as *const T as *const u8, ptr as *mut u8, n);
        *(ptr as *mut usize) = n;
    }
    Ok(())
}

/// The message of the last failed call on this thread ("" if none). The pointer stays valid
/// until the next failing laic call on the same thread; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn laic_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version as a static NUL-terminated string ("MAJOR.MINOR.PATCH"); never free it.
#[unsafe(no_mangle)]
pub extern "C" fn laic_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: laic_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(laic_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_internal_status_with_its_message() {
        let status = guard(|| panic!("boom {}", 42));
        assert_eq!(status, LaicStatus::Internal);
        assert!(
            last_error().contains("panic inside laic: boom 42"),
            "{}",
            last_error()
        );
    }

    #[test]
    fn errors_set_the_thread_local_message() {
        let status = guard(|| Err(Error::invalid("tau must be > 0")));
        assert_eq!(status, LaicStatus::InvalidArgument);
        assert_eq!(last_error(), "invalid argument: tau must be > 0");
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "", "the message is per thread");
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: laic_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(laic_version()) };
        assert_eq!(v.to_str().unwrap(), crate::VERSION);
    }
}
