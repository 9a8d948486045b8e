//! Which frames belong to the standard library's allocation machinery or to the runtime,
//! rather than to the code under test.

use crate::read::profile::Frame;

/// Leading frames of these crates are the allocation machinery, not the code under test.
pub(super) const LIBRARY_PREFIXES: &[&str] = &["alloc::", "core::", "hashbrown::", "std::alloc::"];
/// The same, with the rest of the standard library: the runtime's own code.
pub(super) const RUNTIME_PREFIXES: &[&str] = &["alloc::", "core::", "hashbrown::", "std::"];

/// Memory the runtime owns, allowed in every check when the runtime allocated it itself (no
/// frame of the program inside the matching frame): libtest's per-test output capture and the
/// lazily created stdout buffer (`std::io::stdio`), and a thread's handle and result packet
/// (`std::thread`), which a scoped thread releases as it exits — after `thread::scope` has
/// returned. A leak in the program's `Display` impl while printing, or in a spawned closure,
/// still counts: the program's frame is then inside the runtime's.
pub(super) const RUNTIME_ALLOWED: &[&str] = &["std::io::stdio::", "std::thread::"];

pub(super) fn function_contains(frame: &Frame, pattern: &str) -> bool {
    frame
        .function
        .as_deref()
        .is_some_and(|n| n.contains(pattern))
}

/// A frame of the standard library's allocation machinery (`Vec::push`, `Box::new`,
/// `RawVec::grow`, hash-table resizing, `<[T]>::to_vec`, `<u8 as SpecFromElem>::from_elem`).
pub(super) fn is_library_frame(frame: &Frame) -> bool {
    frame
        .function
        .as_deref()
        .is_some_and(|n| is_library_function(n, LIBRARY_PREFIXES))
}

/// Whether the runtime allocated this block for itself: a frame matching [`RUNTIME_ALLOWED`]
/// with only runtime frames inside it.
pub(super) fn allocated_by_runtime(frames: &[Frame]) -> bool {
    for frame in frames {
        let Some(name) = frame.function.as_deref() else {
            return false;
        };
        if RUNTIME_ALLOWED.iter().any(|p| name.contains(p)) {
            return true;
        }
        if !is_library_function(name, RUNTIME_PREFIXES) {
            return false;
        }
    }
    false
}

pub(super) fn is_library_function(name: &str, prefixes: &[&str]) -> bool {
    let in_library = |path: &str| prefixes.iter().any(|p| path.starts_with(p));
    let Some(qualified) = name.strip_prefix('<') else {
        return in_library(name);
    };
    // `<Type as Trait>::method` or `<Type>::method`: library code when the trait and the type
    // are the library's, or the type is a primitive (no path) such as `u8`, `str`, `[T]`.
    let (self_ty, trait_path) = match qualified.find(" as ") {
        Some(i) => (&qualified[..i], Some(&qualified[i + 4..])),
        None => (qualified.split('>').next().unwrap_or(""), None),
    };
    let self_ty = self_ty
        .trim_start_matches(['&', '[', '*'])
        .trim_start_matches("mut ");
    let primitive = !self_ty.contains("::");
    let library_type = primitive || in_library(self_ty);
    match trait_path {
        Some(t) => library_type && in_library(t),
        None => library_type,
    }
}
