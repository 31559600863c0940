//! A throw-away network lab for partition tests: network namespaces, veth
//! pairs and Linux bridges that the test creates itself (with `ip`, as root)
//! and deletes when dropped, even when the test panics.
//!
//! Topology for `n` nodes, all names unique per test run (`armpt<pid>`):
//!
//! ```text
//!   root namespace (the test process)
//!     armpt<pid>  10.B.C+1.254/24 ──┐ veth
//!   armpt<pid>-hub                  │
//!     brc (client bridge) ── up0 ───┘
//!      ├─ c1 ─── cli0 10.B.C+1.1  ┐
//!      ├─ c2 ─── cli0 10.B.C+1.2  │ armpt<pid>-n1..nN, one per node
//!     brr (raft bridge)           │
//!      ├─ r1 ─── raft0 10.B.C.1   │
//!      └─ r2 ─── raft0 10.B.C.2   ┘
//! ```
//!
//! Two networks so that cutting a node's raft link leaves the client path
//! from the test process to every node intact. The node ports of the client
//! bridge are *isolated* bridge ports: they reach the root namespace's port
//! but not each other, so the raft network is the only path between nodes
//! and cutting `raft0` is a real, total partition.

use std::net::Ipv4Addr;
use std::process::Command;

/// Prefix of every namespace and of the root-side veth this module creates.
const PREFIX: &str = "armpt";

/// Runs `ip <args>` and returns its stdout; panics with its stderr if it fails.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is required): {e}"));
    if !out.status.success() {
        panic!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ip <args>` for cleanup: failures are reported, never panicked on
/// (a panic in `Drop` while unwinding would abort and hide the real error).
fn ip_quiet(args: &[&str]) -> bool {
    match Command::new("ip").args(args).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "netns cleanup: `ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("netns cleanup: cannot run `ip {}`: {e}", args.join(" "));
            false
        }
    }
}

/// The namespaces and links of one test run; see the module docs.
pub struct Lab {
    tag: String,
    hub: String,
    /// One namespace per node, index `i` is node `i + 1`.
    nodes: Vec<String>,
    /// Namespaces created so far, deleted on drop (also after a partial setup).
    created: Vec<String>,
    root_veth_created: bool,
    raft_net: [u8; 3],
    client_net: [u8; 3],
}

impl Lab {
    /// Builds the topology for `n` nodes. Panics (with a loud message when
    /// the environment forbids namespaces) if any step fails; whatever was
    /// created before the failure is removed again.
    pub fn new(n: usize) -> Lab {
        assert!((1..=200).contains(&n));
        let pid = std::process::id();
        remove_stale_namespaces(pid);
        let (raft_net, client_net) = pick_subnets(pid);
        let tag = format!("{PREFIX}{pid}");
        let mut lab = Lab {
            hub: format!("{tag}-hub"),
            nodes: (1..=n).map(|i| format!("{tag}-n{i}")).collect(),
            tag,
            created: Vec::new(),
            root_veth_created: false,
            raft_net,
            client_net,
        };
        // From here on a panic drops `lab`, which undoes the partial setup.
        let hub = lab.hub.clone();
        lab.add_namespace(&hub);
        ip(&["-n", &hub, "link", "add", "brr", "type", "bridge"]);
        ip(&["-n", &hub, "link", "add", "brc", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "brr", "up"]);
        ip(&["-n", &hub, "link", "set", "brc", "up"]);

        for i in 1..=n {
            let ns = lab.nodes[i - 1].clone();
            lab.add_namespace(&ns);
            // Raft network: hub port r<i> <-> raft0 in the node.
            let port = format!("r{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "raft0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "brr", "up"]);
            let raft = format!("{}/24", lab.raft_ip(i));
            ip(&["-n", &ns, "addr", "add", &raft, "dev", "raft0"]);
            ip(&["-n", &ns, "link", "set", "raft0", "up"]);
            // Client network: hub port c<i> <-> cli0, isolated from the
            // other nodes' ports (see the module docs).
            let port = format!("c{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "cli0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "brc", "up"]);
            ip(&[
                "-n",
                &hub,
                "link",
                "set",
                &port,
                "type",
                "bridge_slave",
                "isolated",
                "on",
            ]);
            let client = format!("{}/24", lab.client_ip(i));
            ip(&["-n", &ns, "addr", "add", &client, "dev", "cli0"]);
            ip(&["-n", &ns, "link", "set", "cli0", "up"]);
        }

        // The test process's way in: a veth from the root namespace into brc.
        let root = lab.tag.clone();
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ]);
        lab.root_veth_created = true;
        ip(&["-n", &hub, "link", "set", "up0", "master", "brc", "up"]);
        let gateway = format!("{}/24", lab.client_ip(254));
        ip(&["addr", "add", &gateway, "dev", &root]);
        ip(&["link", "set", &root, "up"]);
        lab
    }

    /// `ip netns add` plus loopback up; namespaces being forbidden here is
    /// an environment problem, reported as such (and still a failure).
    fn add_namespace(&mut self, name: &str) {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2 is required): {e}"));
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("Operation not permitted") || err.contains("Permission denied") {
                eprintln!(
                    "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !!! The partition test needs to create network namespaces:\n\
                     !!! run it as root (or with CAP_SYS_ADMIN + CAP_NET_ADMIN).\n\
                     !!! `ip netns add {name}`: {}\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
                    err.trim()
                );
            }
            panic!("`ip netns add {name}` failed: {}", err.trim());
        }
        self.created.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// Node `i`'s (1-based) address on the raft network.
    pub fn raft_ip(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.raft_net;
        Ipv4Addr::new(a, b, c, i as u8)
    }

    /// Node `i`'s (1-based) address on the client network (254: the test process).
    pub fn client_ip(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.client_net;
        Ipv4Addr::new(a, b, c, i as u8)
    }

    /// A command that runs `program` inside node `i`'s namespace. `ip netns
    /// exec` execs the program, so the child's pid is the program's.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.nodes[i - 1], program]);
        cmd
    }

    /// Cuts node `i` off the raft network: with `raft0` down its route to
    /// the raft subnet is gone and the bridge port has no carrier.
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.nodes[i - 1], "link", "set", "raft0", "down"]);
        let state = ip(&["-n", &self.nodes[i - 1], "-o", "link", "show", "raft0"]);
        assert!(
            !state.contains(",UP") && !state.contains("<UP"),
            "raft0 of node {i} still up: {state}"
        );
    }

    /// Reconnects node `i`. IPv4 addresses survive a link going down, but
    /// re-add the address if something removed it, so that the connected
    /// route to the raft subnet comes back with the link.
    pub fn heal(&self, i: usize) {
        let ns = &self.nodes[i - 1];
        ip(&["-n", ns, "link", "set", "raft0", "up"]);
        let addr = self.raft_ip(i).to_string();
        if !ip(&["-n", ns, "-4", "-o", "addr", "show", "dev", "raft0"]).contains(&addr) {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "raft0",
            ]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys its interfaces, and with them their
        // veth peers (including the root-side one); delete that explicitly
        // too, in case a process still pins the hub namespace.
        if self.root_veth_created {
            let exists = Command::new("ip")
                .args(["link", "show", &self.tag])
                .output()
                .is_ok_and(|o| o.status.success());
            if exists {
                ip_quiet(&["link", "del", &self.tag]);
            }
        }
        for ns in self.created.drain(..).rev() {
            ip_quiet(&["netns", "del", &ns]);
        }
    }
}

/// Deletes namespaces left by earlier runs that died without cleaning up
/// (e.g. SIGKILLed): ours by prefix, whose creating process is gone (or is
/// this one: a pid reused by us) and which no process uses any more.
fn remove_stale_namespaces(pid: u32) {
    let list = ip(&["netns", "list"]);
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let owner_alive = owner != pid && std::path::Path::new(&format!("/proc/{owner}")).exists();
        if owner_alive || !ip(&["netns", "pids", name]).trim().is_empty() {
            continue;
        }
        eprintln!("netns: removing stale namespace {name}");
        ip_quiet(&["netns", "del", name]);
    }
}

/// Two /24s in 10.160.0.0-10.223.255.255 derived from the pid (so concurrent
/// runs differ), skipping any that the root namespace already uses. Only the
/// client subnet is visible in the root namespace, but both are kept clear.
fn pick_subnets(pid: u32) -> ([u8; 3], [u8; 3]) {
    let used = ip(&["-4", "-o", "addr", "show"]) + &ip(&["-4", "route", "show"]);
    for attempt in 0..256u32 {
        let k = (pid + attempt) % 8192;
        let b = 160 + (k / 128) as u8;
        let c = (k % 128) as u8 * 2;
        let raft = [10, b, c];
        let client = [10, b, c + 1];
        let taken = |[x, y, z]: [u8; 3]| used.contains(&format!("{x}.{y}.{z}."));
        if !taken(raft) && !taken(client) {
            return (raft, client);
        }
    }
    panic!("no free 10.x.y.0/24 pair for the partition test's networks");
}
