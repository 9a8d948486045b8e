//! Configuration: explicit API calls, and the `HEAPSAMPLER` environment variable.
//!
//! `HEAPSAMPLER=interval=512k,dir=heap-reports,period=60s,keep=100,enabled=1,mode=600` takes effect
//! without a rebuild: a constructor in `.init_array` runs before `main` (before any other
//! code of the program could call the API), reads the variable with `getenv`, sets the
//! sampling interval, and when `dir` is given starts the background [`Reporter`]
//! (reachable with [`env_reporter`]). Starting it there rather than lazily is deliberate:
//! nothing else is guaranteed to run in a program that never calls the API, and spawning a
//! thread from a constructor is supported by glibc and std (tested in
//! `allocator-test/tests/env_config.rs`).
//!
//! Explicit calls win: [`set_sample_interval`](crate::set_sample_interval) marks the interval
//! as chosen by the program, and a program's explicit call happens after the constructor
//! anyway. A malformed item gets one line on stderr naming the key and the value, and its
//! default is used; the program is never stopped.
//!
//! [`Reporter`]: crate::Reporter
//! [`env_reporter`]: crate::env_reporter

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

static ENV: OnceLock<EnvConfig> = OnceLock::new();

/// The settings `HEAPSAMPLER` gave; `None` where it said nothing (or something malformed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvConfig {
    pub interval: Option<u64>,
    pub dir: Option<PathBuf>,
    pub period: Option<Duration>,
    pub keep: Option<usize>,
    pub enabled: Option<bool>,
    /// Permission bits of report files.
    pub mode: Option<u32>,
    /// Whether reports are symbolized in process (`symbolize=0`: offline later).
    pub symbolize: Option<bool>,
    /// Address of the HTTP endpoint (feature `http`).
    pub http: Option<String>,
}

const KNOWN_KEYS: &str = "interval, dir, period, keep, enabled, mode, symbolize, http";

/// Parses the variable's value; returns the settings and one message per problem.
pub(crate) fn parse(text: &str) -> (EnvConfig, Vec<String>) {
    let mut cfg = EnvConfig::default();
    let mut problems = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            problems.push(format!("HEAPSAMPLER: {item:?} is not key=value; ignored"));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let bad = |expected: &str, default: &str| {
            format!(
                "HEAPSAMPLER: bad value for {key}: {value:?} ({expected}); using the default, {default}"
            )
        };
        match key {
            "interval" => match parse_size(value) {
                Some(v) => cfg.interval = Some(v),
                None => problems.push(bad(
                    "expected bytes like 4096, 512k, 1m or 1g; 1 = exact, 0 = off",
                    "512k",
                )),
            },
            "dir" if value.is_empty() => {
                problems.push(bad("expected a directory path", "no reports"))
            }
            "dir" => cfg.dir = Some(PathBuf::from(value)),
            "http" if value.is_empty() => problems.push(bad(
                "expected an address like 127.0.0.1:6060 or a port like 6060",
                "no endpoint",
            )),
            "http" => cfg.http = Some(value.to_string()),
            "period" => match parse_duration(value) {
                Some(d) if !d.is_zero() => cfg.period = Some(d),
                _ => problems.push(bad(
                    "expected a duration above zero like 500ms, 60s or 5m",
                    "60s",
                )),
            },
            "keep" => match value.parse::<usize>() {
                Ok(n) if n > 0 => cfg.keep = Some(n),
                _ => problems.push(bad("expected a whole number of files, at least 1", "100")),
            },
            "mode" => match parse_mode(value) {
                Some(m) => cfg.mode = Some(m),
                None => problems.push(bad(
                    "expected octal permission bits like 600 or 640, at most 777",
                    "600",
                )),
            },
            "enabled" => match value.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => cfg.enabled = Some(true),
                "0" | "false" | "no" | "off" => cfg.enabled = Some(false),
                _ => problems.push(bad("expected 1 or 0", "1")),
            },
            "symbolize" => match value.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => cfg.symbolize = Some(true),
                "0" | "false" | "no" | "off" => cfg.symbolize = Some(false),
                _ => problems.push(bad("expected 1 or 0", "1")),
            },
            _ => problems.push(format!(
                "HEAPSAMPLER: unknown key {key:?} in {item:?} (known: {KNOWN_KEYS}); ignored"
            )),
        }
    }
    (cfg, problems)
}

/// `4096`, `512k`, `1m`, `1g` (binary multiples; `kb`/`kib` and `b` spellings accepted).
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Octal permission bits: `600`, `0640`, `0o640`; at most `777`.
pub(crate) fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|&m| m <= 0o777)
}

/// `500ms`, `60s`, `5m`, `1h`; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    match &lower[digits.len()..] {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" | "min" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

/// The variable as it was at process start, parsed once; problems go to stderr once.
pub(crate) fn env_config() -> &'static EnvConfig {
    ENV.get_or_init(|| {
        let _guard = crate::sys::guard::enter_guard();
        let Some(text) = read_env() else {
            return EnvConfig::default();
        };
        let (cfg, problems) = parse(&text);
        for p in problems {
            warn(&p);
        }
        cfg
    })
}

/// One line on stderr; a closed stderr is ignored (never a panic, unlike `eprintln!`).
pub(crate) fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "heapsampler: {message}");
}

fn read_env() -> Option<String> {
    // SAFETY: the name is a NUL-terminated literal. `getenv` races only with `setenv` from
    // another thread; it is called once, from the constructor, before `main` starts threads.
    let value = unsafe { libc::getenv(c"HEAPSAMPLER".as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a non-null `getenv` result is a NUL-terminated string that lives as long as the
    // environment is not modified, which it is not during this call.
    let value = unsafe { core::ffi::CStr::from_ptr(value) };
    match value.to_str() {
        Ok(s) => Some(s.to_owned()),
        Err(_) => {
            warn("HEAPSAMPLER is not valid UTF-8; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let (cfg, problems) = parse(
            "interval=512k, dir=heap-reports ,period=250ms,keep=7,enabled=on,mode=640,symbolize=0,\
             http=6060",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            cfg,
            EnvConfig {
                interval: Some(512 * 1024),
                dir: Some(PathBuf::from("heap-reports")),
                period: Some(Duration::from_millis(250)),
                keep: Some(7),
                enabled: Some(true),
                mode: Some(0o640),
                symbolize: Some(false),
                http: Some("6060".into()),
            }
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1"), Some(1));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("2mb"), Some(2 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("12x"), None);
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(
            parse_size("99999999999999999g"),
            None,
            "overflow is an error, not a wrap"
        );
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("750ms"), Some(Duration::from_millis(750)));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_mode("600"), Some(0o600));
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("0o644"), Some(0o644));
        for bad in ["", "8", "1777", "0o", "rw-------", "-600", "6000"] {
            assert_eq!(parse_mode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_values_name_key_value_and_default() {
        let (cfg, problems) =
            parse("interval=12x,period=0s,keep=0,enabled=maybe,dir=,color=red,junk");
        assert_eq!(cfg, EnvConfig::default(), "nothing malformed is applied");
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert_eq!(
            problems[0],
            "HEAPSAMPLER: bad value for interval: \"12x\" (expected bytes like 4096, 512k, 1m or 1g; \
             1 = exact, 0 = off); using the default, 512k"
        );
        assert!(
            problems[1].contains("period: \"0s\"") && problems[1].ends_with("the default, 60s")
        );
        assert!(problems[2].contains("keep: \"0\"") && problems[2].ends_with("the default, 100"));
        assert!(problems[3].contains("enabled: \"maybe\""));
        assert!(problems[4].contains("dir: \"\""));
        assert!(problems[5].contains("unknown key \"color\""));
        assert!(problems[6].contains("\"junk\" is not key=value"));
        assert!(problems.iter().all(|p| !p.contains('\n')), "one line each");
    }

    #[test]
    fn good_items_survive_bad_neighbours() {
        let (cfg, problems) = parse("interval=1,period=fast,,keep=3");
        assert_eq!(problems.len(), 1);
        assert_eq!(cfg.interval, Some(1));
        assert_eq!(cfg.keep, Some(3));
        assert_eq!(cfg.period, None);
        assert_eq!(parse("").0, EnvConfig::default());
    }

    /// Items built from the real keys and hostile values, or any text at all.
    fn env_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let key = prop_oneof![
            prop::sample::select(vec!["interval", "dir", "period", "keep", "enabled", "mode"])
                .prop_map(String::from),
            "[a-z =]{0,6}",
        ];
        let value = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            "[0-9]{1,30}[a-zA-Z]{0,4}",
            "[\\x00-\\x1f\\x7f\u{80}-\u{9f}\u{202e}a-z0-9.=-]{0,10}",
            Just("99999999999999999999g".to_string()),
            Just("18446744073709551615h".to_string()),
        ];
        let item = (key, value).prop_map(|(k, v)| format!("{k}={v}"));
        prop_oneof![
            prop::collection::vec(item, 0..6).prop_map(|items| items.join(",")),
            ".{0,100}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            failure_persistence: None,
            ..proptest::test_runner::Config::with_cases(1024)
        })]

        /// Whatever the variable says: no panic, settings within their ranges, and one line
        /// per problem, printable as it is (values are quoted with their control characters
        /// escaped).
        #[test]
        fn any_value_gives_valid_settings_and_one_clean_line_per_problem(text in env_text()) {
            let (cfg, problems) = parse(&text);
            proptest::prop_assert!(problems.len() <= text.split(',').count());
            for p in &problems {
                proptest::prop_assert!(p.starts_with("HEAPSAMPLER: "), "{p}");
                proptest::prop_assert!(!p.chars().any(crate::report::is_hostile), "{p:?}");
            }
            proptest::prop_assert!(cfg.period.is_none_or(|d| !d.is_zero()));
            proptest::prop_assert!(cfg.keep.is_none_or(|k| k > 0));
            proptest::prop_assert!(cfg.mode.is_none_or(|m| m <= 0o777));
            proptest::prop_assert!(cfg.dir.as_ref().is_none_or(|d| !d.as_os_str().is_empty()));
        }
    }
}
