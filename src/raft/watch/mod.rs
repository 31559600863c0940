//! etcd's watchable store for a table (etcd `mvcc/watchable_store.go`):
//!
//! - [`feed`]: what the state machine applied, published after each commit;
//! - [`hub`]: the table's watchers, live fan-out and catch-up from history;
//! - [`matcher`]: which synced watchers a key concerns;
//! - [`queue`]: the ordered, bounded outgoing queue of one Watch stream.
//!
//! The hub belongs to the table, not to one incarnation of it: when a
//! follower cluster swaps in a recovered incarnation, the registry
//! re-attaches the hub and its watchers resume against the new state.

pub mod feed;
pub mod hub;
mod matcher;
pub mod queue;

/// A watcher: its stream and its watch id on that stream.
type WatcherId = (u64, i64);
