#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need when it is
# missing: protoc (for the etcd-client crate's build script) and Debian's
# etcd 3.4.23 server and etcdctl (the reference the compat suite compares
# against), iproute2 (`ip`: the partition test builds network namespaces,
# which needs root), openssl (the mTLS test makes its certificates) and
# python3-etcd3 (watch through the Python client, compared with etcd).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
# Debian's etcd 3.4.23 exactly where the differential suites look for it.
[ -x /usr/bin/etcd ] || need+=(etcd-server)
[ -x /usr/bin/etcdctl ] || need+=(etcd-client)
command -v ip >/dev/null || need+=(iproute2)
command -v openssl >/dev/null || need+=(openssl)
/usr/bin/python3 -c "import etcd3" 2>/dev/null || need+=(python3-etcd3)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The compat suite starts the armada binary, so build it first.
cargo build --bins
cargo test --workspace -- --test-threads 2
