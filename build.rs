//! Tells the crate whether the build forces frame pointers (`-C force-frame-pointers`): the
//! frame-pointer walker (feature `frame-pointers`) is used only then, since elsewhere the chain
//! breaks at the first function compiled without them and stacks would come out short. With the
//! feature on and the flag missing, says so and keeps the default unwinder.

fn main() {
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rustc-check-cfg=cfg(heapsampler_frame_pointers_forced)");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let forced = frame_pointers_forced(flags.split('\x1f').filter(|f| !f.is_empty()));
    if forced {
        println!("cargo::rustc-cfg=heapsampler_frame_pointers_forced");
    }
    if std::env::var_os("CARGO_FEATURE_FRAME_POINTERS").is_some() && !forced {
        println!(
            "cargo::warning=feature `frame-pointers` needs \
             RUSTFLAGS=\"-C force-frame-pointers=yes\"; without it stacks are taken by the \
             default unwinder"
        );
    }
}

/// Whether the last `-C force-frame-pointers` among the compiler flags turns them on
/// (`-C force-frame-pointers`, `=yes`, `=y`, `=on`, `=true`, `=always`, `=non-leaf`; `-Cforce-…`
/// too).
fn frame_pointers_forced<'a>(flags: impl Iterator<Item = &'a str>) -> bool {
    let mut forced = false;
    let mut after_c = false;
    for flag in flags {
        let option = if after_c {
            Some(flag)
        } else {
            flag.strip_prefix("-C").filter(|rest| !rest.is_empty())
        };
        after_c = flag == "-C" || flag == "--codegen";
        let Some(option) = option.map(str::trim) else {
            continue;
        };
        if let Some(value) = option.strip_prefix("force-frame-pointers") {
            forced = matches!(
                value.trim_start_matches('='),
                "" | "yes" | "y" | "on" | "true" | "always" | "non-leaf"
            );
        }
    }
    forced
}
