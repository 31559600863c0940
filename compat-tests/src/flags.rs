//! Per-file server flags: a case file may contain a comment line
//! `# flags: <name>=<value> ...` whose settings are translated into the
//! matching command-line flag of each server. Known settings:
//!
//! | setting | etcd 3.4.23 | Armada |
//! |---|---|---|
//! | `progress-notify=<dur>` | `--experimental-watch-progress-notify-interval=<dur>` | `--api.watch-progress-notify-interval=<dur>` |
//!
//! Durations use Go's syntax (e.g. `300ms`, `1s`), which both servers accept.

/// A line starting with this lists server settings.
pub const FLAGS_MARKER: &str = "# flags:";

/// The server settings of one case file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFlags {
    /// Interval of timed watch progress notifications.
    pub progress_notify: Option<String>,
}

impl ServerFlags {
    /// Collects the settings of every `# flags:` line of `src`.
    pub fn parse(src: &str) -> Result<ServerFlags, String> {
        let mut flags = ServerFlags::default();
        for (no, line) in src.lines().enumerate() {
            let Some(rest) = line.strip_prefix(FLAGS_MARKER) else {
                continue;
            };
            for setting in rest.split_whitespace() {
                match setting.split_once('=') {
                    Some(("progress-notify", v)) if !v.is_empty() => {
                        flags.progress_notify = Some(v.to_string())
                    }
                    _ => return Err(format!("line {}: unknown flag `{setting}`", no + 1)),
                }
            }
        }
        Ok(flags)
    }

    /// Extra command-line arguments for real etcd.
    pub fn etcd_args(&self) -> Vec<String> {
        self.progress_notify
            .iter()
            .map(|d| format!("--experimental-watch-progress-notify-interval={d}"))
            .collect()
    }

    /// Extra command-line arguments for `armada leader`.
    pub fn armada_args(&self) -> Vec<String> {
        self.progress_notify
            .iter()
            .map(|d| format!("--api.watch-progress-notify-interval={d}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps() {
        let f = ServerFlags::parse("# c\n# flags: progress-notify=300ms\nput a 1\n").unwrap();
        assert_eq!(f.progress_notify.as_deref(), Some("300ms"));
        assert_eq!(
            f.etcd_args(),
            ["--experimental-watch-progress-notify-interval=300ms"]
        );
        assert_eq!(
            f.armada_args(),
            ["--api.watch-progress-notify-interval=300ms"]
        );
        assert!(ServerFlags::parse("# flags: nope=1\n").is_err());
        assert_eq!(
            ServerFlags::parse("put a 1\n").unwrap(),
            ServerFlags::default()
        );
    }
}
