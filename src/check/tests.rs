use super::library_frames::*;
use crate::read::profile::Frame;

fn lib(name: &str) -> bool {
    is_library_function(name, LIBRARY_PREFIXES)
}

fn frames(names: &[&str]) -> Vec<Frame> {
    names
        .iter()
        .map(|n| Frame {
            function: Some(n.to_string()),
            ..Default::default()
        })
        .collect()
}

#[test]
fn runtime_buffers_are_allowed_only_when_the_runtime_allocated_them() {
    let capture = frames(&[
        "alloc::raw_vec::finish_grow",
        "<alloc::vec::Vec<u8> as std::io::Write>::write_all",
        "std::io::stdio::print_to_buffer_if_capture_used",
        "std::io::stdio::_print",
        "my_test::it_prints",
    ]);
    assert!(allocated_by_runtime(&capture));
    let leak_in_display = frames(&[
        "alloc::raw_vec::finish_grow",
        "<my_crate::Leaky as core::fmt::Display>::fmt",
        "core::fmt::write",
        "std::io::stdio::print_to_buffer_if_capture_used",
        "my_test::it_prints",
    ]);
    assert!(!allocated_by_runtime(&leak_in_display));
}

#[test]
fn library_frames_are_the_allocation_machinery() {
    assert!(lib("alloc::raw_vec::finish_grow"));
    assert!(lib(
        "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"
    ));
    assert!(lib("<str>::repeat"));
    assert!(lib("<[u8]>::to_vec"));
    assert!(lib("<alloc::vec::Vec<u8>>::push"));
    assert!(lib("<alloc::string::String as core::clone::Clone>::clone"));
    assert!(lib("hashbrown::raw::RawTable<T>::reserve_rehash"));
    assert!(!lib("my_crate::cache::fill"));
    assert!(!lib("<my_crate::Parser as core::clone::Clone>::clone"));
    assert!(!lib("<u8 as my_crate::Encode>::encode"));
    assert!(!lib("std::thread::spawn"));
}
