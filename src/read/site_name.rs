//! What a site is called: the one rule behind [`Report::top_function`], and so behind the
//! CLI's `top`, `diff` and `leaks` tables, a report's leak suspects and any program's own
//! table built on `top_function`.
//!
//! Frames fall in three kinds:
//!
//! - **allocator** frames ([`is_allocator_function`]): heapsampler's `GlobalAlloc` wrapper and
//!   its capture path, and the standard library's global-allocator shims (`__rust_alloc`,
//!   `alloc::alloc::alloc`, `<alloc::alloc::Global as core::alloc::Allocator>::allocate`…).
//!   They say nothing about who asked for memory, and a debug build, where the wrapper is
//!   inlined into the shim whose entry capture skips, leaves them on top of every stack.
//!   Never a site's name.
//! - **library** frames ([`is_library_function`]): the standard library's and hashbrown's
//!   collections (`RawVec::grow`, `Vec::push`, `HashMap::insert`, `<[T]>::to_vec`). Real
//!   code, but the same in every program: skipped when a program frame exists.
//! - **program** frames: everything else.
//!
//! A site is named by its innermost program frame; failing that, its innermost frame that
//! is not the allocator; failing that (a stack of allocator frames only), its innermost.
//!
//! [`Report::top_function`]: crate::Report::top_function

/// Function-name prefixes of allocator frames.
const ALLOCATOR_PREFIXES: &[&str] = &[
    // Recent rustc names the allocator shims `__rustc::__rust_alloc` etc.
    "__rustc::",
    "__rust_alloc",
    "__rust_realloc",
    "__rust_dealloc",
    "__rust_alloc_zeroed",
    "__rdl_",
    "__rg_",
    // The wrapper (`<heapsampler::record::sampler::Sampler<A> as
    // core::alloc::global::GlobalAlloc>::alloc`) and what it calls while recording.
    "<heapsampler::",
    "heapsampler::record::sampler::",
    "heapsampler::record::countdown::",
    "heapsampler::record::stack_table::",
    "heapsampler::record::stack_cache::",
    "heapsampler::unwind::",
    // `alloc::alloc::alloc`, `exchange_malloc`, `Global::alloc_impl`, `handle_alloc_error`.
    "alloc::alloc::",
    "<alloc::alloc::",
    "std::alloc::",
    "<std::alloc::",
    "core::alloc::",
];

/// Path prefixes of the standard library and hashbrown.
const LIBRARY_PREFIXES: &[&str] = &[
    "alloc::",
    "core::",
    "std::",
    "hashbrown::",
    "__rust",
    "__rdl",
    "__rg",
];

/// Trait impls whose methods are allocator frames whoever implements them: a program's own
/// wrapper around [`Sampler`](crate::Sampler) is the allocator too.
const ALLOCATOR_TRAITS: &[&str] = &[
    " as core::alloc::global::GlobalAlloc>::",
    " as core::alloc::Allocator>::",
    " as allocator_api2::stable::alloc::Allocator>::",
];

/// Whether a demangled function is the allocator's own (see the module documentation).
pub(crate) fn is_allocator_function(name: &str) -> bool {
    ALLOCATOR_PREFIXES.iter().any(|p| name.starts_with(p))
        || (name.starts_with('<') && ALLOCATOR_TRAITS.iter().any(|t| name.contains(t)))
}

/// Whether a demangled function belongs to the allocator, the standard library or hashbrown
/// rather than to the program. `<Self as Trait>::f` and `<Self>::f` belong to the program when
/// `Self` or `Trait` is a path of the program (`<my_app::Cache>::insert`,
/// `<u8 as my_app::Parse>::parse`), and to the library otherwise
/// (`<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem`, `<[T]>::to_vec_in`).
pub(crate) fn is_library_function(name: &str) -> bool {
    if is_allocator_function(name) {
        return true;
    }
    let is_library_path = |p: &str| LIBRARY_PREFIXES.iter().any(|l| p.starts_with(l));
    let Some(rest) = name.strip_prefix('<') else {
        return is_library_path(name);
    };
    // The qualified self part ends at the `>` matching the leading `<`.
    let mut depth = 1usize;
    let close = rest.char_indices().find_map(|(i, c)| {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ => {}
        }
        (depth == 0).then_some(i)
    });
    let inner = &rest[..close.unwrap_or(rest.len())];
    let mut depth = 0usize;
    let mut split = None;
    for (i, c) in inner.char_indices() {
        match c {
            '<' | '[' | '(' => depth += 1,
            '>' | ']' | ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 && inner[i..].starts_with(" as ") => {
                split = Some(i);
                break;
            }
            _ => {}
        }
    }
    let (self_ty, trait_path) = match split {
        Some(i) => (&inner[..i], Some(&inner[i + 4..])),
        None => (inner, None),
    };
    let is_program_path = |p: &str| {
        let p = p
            .trim_start_matches(['&', '*', ' '])
            .trim_start_matches("mut ")
            .trim_start_matches("dyn ");
        p.contains("::") && !is_library_path(p)
    };
    !(is_program_path(self_ty) || trait_path.is_some_and(is_program_path))
}

/// The name of a site whose symbolized function names, innermost first, are `names`.
pub(crate) fn site_name<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let mut program = names.clone().filter(|n| !is_library_function(n));
    let mut not_allocator = names.clone().filter(|n| !is_allocator_function(n));
    program
        .next()
        .or_else(|| not_allocator.next())
        .or_else(|| names.clone().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames of a `vec![0u8; n]` site of a debug build, as symbolized (the wrapper is
    /// inlined into `__rust_alloc`), innermost first.
    const DEBUG_BUILD_SITE: &[&str] = &[
        "<heapsampler::record::sampler::Sampler<A> as core::alloc::global::GlobalAlloc>::alloc",
        "__rustc::__rust_alloc",
        "alloc::alloc::alloc",
        "alloc::alloc::Global::alloc_impl",
        "<alloc::alloc::Global as core::alloc::Allocator>::allocate",
        "alloc::raw_vec::RawVecInner<A>::try_allocate_in",
        "alloc::raw_vec::RawVecInner<A>::with_capacity_in",
        "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
        "alloc::vec::from_elem",
        "leaky_service::Sessions::open",
        "leaky_service::main",
    ];

    #[test]
    fn the_allocator_never_names_a_site() {
        let named = |names: &[&'static str]| site_name(names.iter().copied());
        assert_eq!(
            named(DEBUG_BUILD_SITE),
            Some("leaky_service::Sessions::open")
        );
        // No program frame: the first frame that is not the allocator.
        assert_eq!(
            named(&DEBUG_BUILD_SITE[..7]),
            Some("alloc::raw_vec::RawVecInner<A>::try_allocate_in")
        );
        // Nothing but the allocator (a truncated stack): still a name.
        assert_eq!(named(&DEBUG_BUILD_SITE[..2]), Some(DEBUG_BUILD_SITE[0]));
        assert_eq!(named(&[]), None);
        for name in &DEBUG_BUILD_SITE[..5] {
            assert!(is_allocator_function(name), "{name}");
        }
        for name in &DEBUG_BUILD_SITE[5..] {
            assert!(!is_allocator_function(name), "{name}");
        }
        // Any global allocator is the allocator, a program's own wrapper included.
        assert!(is_allocator_function(
            "<my_app::Counting as core::alloc::global::GlobalAlloc>::alloc"
        ));
        assert!(!is_library_function("<my_app::Arena>::alloc"));
        assert!(is_library_function(
            "<heapsampler::record::sampler::Sampler<my_app::Arena> as core::alloc::global::GlobalAlloc>::realloc"
        ));
    }

    #[test]
    fn library_frames_are_told_from_the_programs() {
        for (name, library) in [
            (
                "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
                true,
            ),
            ("<[T]>::to_vec_in", true),
            ("<F as core::ops::function::FnOnce<()>>::call_once", true),
            (
                "<alloc::vec::Vec<my_app::Item> as my_app::Load>::load",
                false,
            ),
            ("<my_app::Cache<K, V>>::insert", false),
            ("<u8 as my_app::Parse>::parse", false),
            (
                "<&mut my_app::Writer as core::fmt::Write>::write_str",
                false,
            ),
            ("my_app::main::{closure#0}", false),
            ("std::thread::lifecycle::spawn_unchecked::{closure#1}", true),
            ("__rust_alloc", true),
        ] {
            assert_eq!(is_library_function(name), library, "{name}");
        }
    }
}
