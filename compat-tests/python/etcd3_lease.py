"""Leases and locks through python-etcd3 (Debian's python3-etcd3 0.12), the
way its users call them: client.lease(ttl[, lease_id]), Lease.refresh /
remaining_ttl / granted_ttl / keys / revoke, put(..., lease=...), and the
client-side lock recipe client.lock(name, ttl) (a txn on /locks/<name>
holding a random uuid under a fresh lease). Prints one normalized line per
observation, so that runs against etcd and Armada can be compared.

Normalization: lease ids chosen by the server print as L1, L2, ... in
order of first appearance (the script's own ids in hex); a remaining TTL
prints as "ok" after checking 0 < remaining <= granted; the lock's uuid
value prints as "uuid" / "other" (whether it is this lock's).

Deterministic: nothing depends on timing except lease expiry, which is
awaited through a watch (at most 10 s). Locks are only acquired with
timeout=0 (a single txn, no retry): python-etcd3 0.12's retry wait function
has the pre-tenacity-5 signature that Debian's tenacity 8 no longer calls,
so a blocking acquire that has to wait raises TypeError.

usage: etcd3_lease.py <port>
"""

import sys

import grpc

import etcd3
from etcd3 import exceptions

FIXED = 0x1234
UNKNOWN = 0x999
labels = {}


def lid(i):
    if i in (0, FIXED, UNKNOWN):
        return hex(i)
    if i not in labels:
        labels[i] = "L%d" % (len(labels) + 1)
    return labels[i]


def err(label, e):
    if isinstance(e, exceptions.Etcd3Exception):
        print(label, "error", type(e).__name__)
    elif isinstance(e, grpc.RpcError):
        print(label, "error", e.code(), repr(e.details()))
    else:
        raise e


def ttl_info(label, lease):
    remaining, granted = lease.remaining_ttl, lease.granted_ttl
    if granted > 0:
        assert 0 < remaining <= granted, (label, remaining, granted)
        remaining = "ok"
    keys = sorted(k.decode() for k in lease.keys)
    print(label, "remaining", remaining, "granted", granted, "keys", keys)


def refresh(label, lease):
    print(label, [(lid(r.ID), r.TTL, r.header.revision)
                  for r in lease.refresh()])


def show_prefix(label, c, prefix):
    kvs = ["%s=%s c=%d m=%d lease=%s" % (
        m.key.decode(), v.decode(), m.create_revision, m.mod_revision,
        lid(m.lease_id)) for v, m in c.get_prefix(prefix)]
    print(label, kvs)


def leases(c):
    lease = c.lease(60)
    print("grant", lid(lease.id), lease.ttl)
    fixed = c.lease(30, lease_id=FIXED)
    print("grant fixed", lid(fixed.id), fixed.ttl)
    for label, ttl, lease_id in [("grant existing", 10, FIXED),
                                 ("grant too large", 9000000001, None)]:
        try:
            c.lease(ttl, lease_id=lease_id)
            print(label, "ok")
        except Exception as e:  # noqa: B902 (printed by type)
            err(label, e)

    print("put a", c.put("/l/a", "1", lease=lease).header.revision)
    print("put b", c.put("/l/b", "2", lease=lease.id).header.revision)
    print("put c", c.put("/l/c", "3", lease=fixed).header.revision)
    try:
        c.put("/l/x", "4", lease=UNKNOWN)
        print("put x ok")
    except Exception as e:  # noqa: B902
        err("put x", e)
    show_prefix("attached", c, "/l/")
    ttl_info("ttl", lease)
    ttl_info("ttl fixed", fixed)
    ttl_info("ttl unknown", etcd3.Lease(UNKNOWN, 10, etcd_client=c))

    refresh("refresh", lease)
    refresh("refresh again", lease)
    print("refresh unknown", [(lid(r.ID), r.TTL)
                              for r in c.refresh_lease(UNKNOWN)])

    lease.revoke()
    show_prefix("after revoke", c, "/l/")
    print("refresh revoked", [(lid(r.ID), r.TTL) for r in lease.refresh()])
    try:
        lease.revoke()
        print("revoke again ok")
    except Exception as e:  # noqa: B902
        err("revoke again", e)
    ttl_info("ttl revoked", lease)

    # Expiry: a TTL below the minimum is raised to it (2 s).
    short = c.lease(1)
    print("grant short", lid(short.id), short.ttl)
    rev = c.put("/l/e", "x", lease=short).header.revision
    print("put e", rev)
    e = c.watch_once("/l/e", timeout=10, start_revision=rev + 1)
    print("expired", type(e).__name__, e.key.decode(), e.mod_revision)
    ttl_info("ttl expired", short)
    fixed.revoke()
    show_prefix("leases end", c, "/l/")


def locks(c):
    lock = c.lock("mylock", ttl=60)
    print("acquire", lock.acquire(timeout=0))
    print("is_acquired", lock.is_acquired())
    value, meta = c.get("/locks/mylock")
    print("lock key", "uuid" if value == lock.uuid else "other",
          "lease", lid(meta.lease_id), "c", meta.create_revision)
    ttl_info("lock lease", lock.lease)

    other = c.lock("mylock", ttl=60)
    print("other acquire", other.acquire(timeout=0))
    print("other is_acquired", other.is_acquired())
    print("other release", other.release())
    refresh("lock refresh", lock)
    print("release", lock.release())
    print("is_acquired after release", lock.is_acquired())
    print("release again", lock.release())
    print("other acquire", other.acquire(timeout=0))
    value, meta = c.get("/locks/mylock")
    print("lock key", "uuid" if value == other.uuid else "other",
          "lease", lid(meta.lease_id), "c", meta.create_revision)
    print("other release", other.release())

    with c.lock("ctx", ttl=30) as held:
        print("with is_acquired", held.is_acquired())
    print("after with is_acquired", held.is_acquired())

    # A lock whose lease expires is released: the next acquire succeeds.
    short = c.lock("exp", ttl=1)
    print("short acquire", short.acquire(timeout=0))
    value, meta = c.get("/locks/exp")
    e = c.watch_once("/locks/exp", timeout=10,
                     start_revision=meta.mod_revision + 1)
    print("lock expired", type(e).__name__, e.mod_revision)
    print("short is_acquired", short.is_acquired())
    nxt = c.lock("exp", ttl=60)
    print("next acquire", nxt.acquire(timeout=0))
    print("next release", nxt.release())
    refresh("refresh expired lock", short)
    never = c.lock("never", ttl=60)
    try:
        never.refresh()
    except ValueError as e:
        print("refresh unacquired", e)


def main():
    c = etcd3.client(host="127.0.0.1", port=int(sys.argv[1]))
    leases(c)
    locks(c)
    print("end", c.put("/end", "x").header.revision)


if __name__ == "__main__":
    main()
