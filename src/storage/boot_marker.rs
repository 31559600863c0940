//! Whether an environment that commits without syncing survived an OS
//! crash intact.
//!
//! A [`Durability::Deferred`](super::Durability::Deferred) environment
//! commits into the page cache only: a commit survives the process's crash
//! (`kill -9`), because the kernel still holds and later writes its pages,
//! but not the machine's. An OS crash or power loss can leave a meta page on
//! disk that points at data pages that never got there: a torn environment
//! that LMDB cannot detect by itself.
//!
//! So the environment's directory holds a marker naming the boot (the
//! kernel's random `boot_id`) during which commits may have been made
//! without a sync, or `clean` after a final sync at a clean close. The
//! marker is written, durably, before the environment's first unsynced
//! commit. An environment whose marker names another boot may be torn: its
//! owner discards it and rebuilds it from what is durable (a state machine:
//! its last snapshot and the Raft log after it).
//!
//! No marker at all means a new environment, or one from a version that
//! synced every commit: both are intact.

use std::io::ErrorKind;
use std::path::Path;

use crate::error::Result;

const MARKER: &str = "unsynced-boot";
const CLEAN: &str = "clean";

/// The kernel's identifier of the running boot.
fn current_boot() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    Ok(raw.trim().to_string())
}

/// True if the environment in `dir` may hold commits that an OS crash tore:
/// unsynced commits were made during another boot than this one.
pub(crate) fn may_be_torn(dir: &Path) -> Result<bool> {
    match std::fs::read_to_string(dir.join(MARKER)) {
        Ok(marker) => Ok(marker != CLEAN && marker != current_boot()?),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Records, durably, that unsynced commits may follow during this boot.
/// The caller has synced the environment first, so nothing from an earlier
/// boot is left unsynced.
pub(crate) fn mark_unsynced(dir: &Path) -> Result<()> {
    write(dir, &current_boot()?)
}

/// Records, durably, that the environment was synced and is closed.
pub(crate) fn mark_clean(dir: &Path) -> Result<()> {
    write(dir, CLEAN)
}

fn write(dir: &Path, content: &str) -> Result<()> {
    let path = dir.join(MARKER);
    if std::fs::read_to_string(&path).is_ok_and(|m| m == content) {
        return Ok(());
    }
    let tmp = dir.join(format!("{MARKER}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Makes the marker in `dir` name a boot other than this one, as an OS
/// crash would leave it: for tests of the rebuild.
#[cfg(test)]
pub(crate) fn pretend_earlier_boot(dir: &Path) {
    std::fs::write(dir.join(MARKER), "an-earlier-boot").unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_another_boots_unsynced_commits_may_be_torn() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!may_be_torn(dir.path()).unwrap(), "no marker: intact");
        mark_unsynced(dir.path()).unwrap();
        assert!(!may_be_torn(dir.path()).unwrap(), "this boot: intact");
        mark_clean(dir.path()).unwrap();
        assert!(!may_be_torn(dir.path()).unwrap(), "clean close: intact");
        pretend_earlier_boot(dir.path());
        assert!(may_be_torn(dir.path()).unwrap(), "an earlier boot's");
    }
}
