//! Report files on disk: the directory they go to, reading one with a size limit, and
//! telling a killed writer's temporary file from one a live writer is still writing.

use std::io;
use std::path::Path;
use std::time::Duration;

/// The largest report file [`Report::read`](crate::Report::read) reads: 1 GiB (a report of a
/// million sites is a few hundred MiB).
///
/// ```
/// assert_eq!(heapsampler::report::json::MAX_REPORT_BYTES, 1 << 30);
/// ```
pub const MAX_REPORT_BYTES: u64 = 1 << 30;

/// Creates `dir` and its missing parents for report files of `mode`: with the same bits,
/// plus search wherever read is granted (`0700` for `0600`). An existing one is left as it is.
pub(crate) fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mode = mode & 0o777;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode | (mode & 0o444) >> 2)
        .create(dir)
}

/// The file as text, refused when it is larger than [`MAX_REPORT_BYTES`].
pub(crate) fn read_limited(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_REPORT_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_REPORT_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} GiB", MAX_REPORT_BYTES >> 30),
        ));
    }
    Ok(text)
}

/// A temporary report file of a dead process is removed once it is this old: younger, it may
/// belong to a live writer in another pid namespace sharing the directory.
const STALE_DEAD: Duration = Duration::from_secs(60);
/// A temporary report file this old is removed whatever its pid says (the pid was reused): a
/// write in progress touches its file at every buffer flush and ends in seconds.
const STALE_ANY: Duration = Duration::from_secs(24 * 3600);

/// Whether `name` is a temporary report file (`.heap-….json.<writer pid>.<n>.tmp`, see
/// [`Report::write_atomic`](crate::Report::write_atomic)) that no live writer will finish:
/// its writer is dead and it was last written [`STALE_DEAD`] ago, or it was last written
/// [`STALE_ANY`] ago. A live process's write in progress is never removed; `modified` is
/// only asked for candidates.
pub(crate) fn is_stale_temp(
    name: &str,
    modified: impl FnOnce() -> Option<std::time::SystemTime>,
) -> bool {
    let Some(rest) = name
        .strip_prefix(".heap-")
        .and_then(|r| r.strip_suffix(".tmp"))
    else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '.');
    let (Some(n), Some(writer), Some(report)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if !report.ends_with(".json") || n.parse::<u64>().is_err() {
        return false;
    }
    let Some(age) = modified().and_then(|m| m.elapsed().ok()) else {
        return false;
    };
    let dead = writer
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .is_some_and(|p| !process_alive(p));
    (dead && age >= STALE_DEAD) || age >= STALE_ANY
}

/// Whether process `pid` exists (possibly another user's).
fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that `pid` (> 0: one process, never a group) could be
    // signalled; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reporter;

    /// The process's umask, read without changing it.
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn report_files_are_owner_only_unless_configured() {
        use std::os::unix::fs::PermissionsExt;
        let mode_of = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for (asked, expected) in [(None, 0o600), (Some(0o640), 0o640)] {
            let dir = std::env::temp_dir()
                .join(format!("hs-mode-{}-{asked:?}/reports", std::process::id()));
            let _ = std::fs::remove_dir_all(dir.parent().unwrap());
            let mut r = Reporter::new(&dir);
            if let Some(m) = asked {
                r = r.mode(m);
            }
            let handle = r.start().unwrap();
            let path = handle.dump_now().unwrap();
            assert_eq!(mode_of(&path), expected & !umask(), "{asked:?}");
            // The directory the reporter created: search only where read is granted.
            let dir_expected = if asked.is_some() { 0o750 } else { 0o700 };
            assert_eq!(mode_of(&dir), dir_expected & !umask(), "{asked:?}");
            drop(handle);
            std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        }
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed_never_a_live_ones() {
        let dir = std::env::temp_dir().join(format!("hs-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A pid that was just in use and is not any more.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::os::unix::process::parent_id();
        let age = |minutes: u64| std::time::SystemTime::now() - Duration::from_secs(60 * minutes);
        let files = [
            (
                format!(".heap-{dead}-000004.json.{dead}.0.tmp"),
                age(2),
                false,
            ),
            (
                format!(".heap-{dead}-000005.json.{dead}.1.tmp"),
                age(0),
                true,
            ),
            (
                format!(".heap-{live}-000001.json.{live}.3.tmp"),
                age(2),
                true,
            ),
            (
                format!(".heap-{live}-000002.json.{live}.4.tmp"),
                age(25 * 60),
                false,
            ),
            (format!(".notes-{dead}.json.{dead}.0.tmp"), age(2), true),
            (format!(".heap-{dead}-000006.json.x.0.tmp"), age(2), true),
        ];
        for (name, modified, _) in &files {
            let f = std::fs::File::create(dir.join(name)).unwrap();
            f.set_modified(*modified).unwrap();
        }
        // The sweep comes with every report the reporter writes.
        let reports = Reporter::new(&dir).start().unwrap();
        reports.dump_now().unwrap();
        drop(reports);
        for (name, _, kept) in &files {
            assert_eq!(dir.join(name).exists(), *kept, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
