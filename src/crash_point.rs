//! Named points at which a test can make this process die
//! (`--debug.crash-at <point>`, hidden from `--help`), to prove that a crash
//! at each step of a snapshot build or install, a log purge, a recovery
//! seeding, a table swap or a defragment leaves a node that restarts and catches up.
//! Dying is `abort()`: no destructor, no flush, as a `kill -9` or a power
//! cut would leave things (only the page cache survives, which is what the
//! fsync discipline is about). Unarmed, which is always outside such tests,
//! a point costs one load of a set-once cell.
//!
//! A leaf utility at the crate root, like `error`: every layer may mark its
//! steps with it.

use std::sync::OnceLock;

/// Every point, in the order a node reaches them; the tests loop over it.
pub const POINTS: &[&str] = &[
    "snapshot.build.copied",
    "snapshot.current.renamed",
    "snapshot.install.received",
    "snapshot.install.loaded",
    "log.purge.before",
    "log.purge.after",
    "recovery.seeded",
    "recovery.swapped",
    "defrag.copied",
    "defrag.swapped",
];

static ARMED: OnceLock<String> = OnceLock::new();

/// Arms `point`: the process aborts when it first reaches it.
pub(crate) fn arm(point: &str) -> crate::error::Result<()> {
    if !POINTS.contains(&point) {
        return Err(crate::error::Error::InvalidInput(format!(
            "--debug.crash-at: unknown point {point:?} (known: {})",
            POINTS.join(", ")
        )));
    }
    let _ = ARMED.set(point.to_string());
    Ok(())
}

/// Aborts the process if `point` is armed.
pub fn reached(point: &'static str) {
    debug_assert!(POINTS.contains(&point), "{point} is not in POINTS");
    if ARMED.get().is_some_and(|p| p == point) {
        eprintln!("armada: crash point {point} reached: aborting");
        std::process::abort();
    }
}
