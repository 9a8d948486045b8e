//! The reporter's files: their names (`heap-<pid>-<seq>.json`), and listing this process's
//! own among others (sweeping the temporary files killed writers left).

use std::io;
use std::path::{Path, PathBuf};

/// `heap-<pid>-<seq>.json`, the sequence zero-padded to 6 digits so that names sort in
/// order.
pub(super) fn file_name(pid: u32, seq: u64) -> String {
    format!("heap-{pid}-{seq:06}.json")
}

/// This process's report files in `dir`, oldest first; also removes the stale temporary files
/// of killed writers (see [`is_stale_temp`](crate::report::files::is_stale_temp)).
pub(super) fn own_files(dir: &Path, pid: u32) -> io::Result<Vec<(u64, PathBuf)>> {
    let prefix = format!("heap-{pid}-");
    let temp_prefix = format!(".heap-{pid}-");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&temp_prefix) && name.ends_with(".tmp") {
            // Left by a crashed earlier process of this pid: this process's own writes hold
            // the state lock, so none of its temporary files is in flight here.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if crate::report::files::is_stale_temp(name, || entry.metadata().ok()?.modified().ok()) {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let seq = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".json"))
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_in_sequence_order() {
        assert_eq!(file_name(42, 7), "heap-42-000007.json");
        assert!(file_name(42, 99) < file_name(42, 100));
    }

    #[test]
    fn own_files_ignores_other_pids_and_cleans_stale_temps() {
        let dir = std::env::temp_dir().join(format!("hs-own-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "heap-7-000002.json",
            "heap-7-000010.json",
            "heap-77-000001.json",
            "heap-7-x.json",
            ".heap-7-000003.json.7.0.tmp",
            ".heap-8-000001.json.8.0.tmp",
        ] {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
        let files = own_files(&dir, 7).unwrap();
        let seqs: Vec<u64> = files.iter().map(|f| f.0).collect();
        assert_eq!(seqs, vec![2, 10]);
        assert!(!dir.join(".heap-7-000003.json.7.0.tmp").exists());
        assert!(
            dir.join(".heap-8-000001.json.8.0.tmp").exists(),
            "another process's write"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
