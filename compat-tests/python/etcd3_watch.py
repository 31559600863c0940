"""Watch through python-etcd3 (Debian's python3-etcd3 0.12), the way its
users call it: watch_prefix / watch iterators with cancel, prev_kv,
add_watch_callback, watch_once from history, range watches, compaction
(RevisionCompactedError). Prints one normalized line per observation, so
that runs against etcd and Armada can be compared. Deterministic: every
watch either starts at an explicit revision or is created (python-etcd3
waits for the created response) before the writes it must see.

usage: etcd3_watch.py <port>
"""

import sys
import threading

import etcd3
from etcd3.exceptions import RevisionCompactedError


def show(e):
    kind = type(e).__name__
    line = "%s %s=%s c=%d m=%d v=%d" % (
        kind, e.key.decode(), e.value.decode(), e.create_revision,
        e.mod_revision, e.version)
    if e._event.HasField("prev_kv"):
        line += " prev=%s@%d" % (e.prev_value.decode(), e.prev_mod_revision)
    return line


def take(events, cancel, n, label):
    """Prints the first n events of a watch iterator, then cancels it."""
    seen = 0
    for e in events:
        print(label, show(e))
        seen += 1
        if seen == n:
            cancel()
    print(label, "done", seen)


def main():
    c = etcd3.client(host="127.0.0.1", port=int(sys.argv[1]))

    c.put("/a/x", "1")
    c.put("/a/y", "2")
    # History from revision 1, then live events.
    events, cancel = c.watch_prefix("/a/", start_revision=1)
    c.put("/a/x", "3")
    c.delete("/a/y")
    take(events, cancel, 4, "prefix")

    # prev_kv on a single key, live.
    events, cancel = c.watch("/a/x", prev_kv=True)
    c.put("/a/x", "4")
    c.delete("/a/x")
    take(events, cancel, 2, "prev_kv")

    # A range [/a/, /b) from history.
    events, cancel = c.watch("/a/", range_end="/b", start_revision=4)
    take(events, cancel, 4, "range")

    # The callback API.
    got = threading.Event()
    lines = []

    def callback(resp):
        lines.extend(show(e) for e in resp.events)
        got.set()

    watch_id = c.add_watch_callback("/b", callback)
    c.put("/b", "v")
    if not got.wait(10):
        print("callback timed out")
    c.cancel_watch(watch_id)
    print("callback", lines)

    # watch_once served from history.
    rev = c.put("/c", "once").header.revision
    print("once", show(c.watch_once("/c", timeout=10, start_revision=rev)))

    # A watch below the compact revision.
    c.compact(rev)
    events, cancel = c.watch("/a/x", start_revision=2)
    try:
        for e in events:
            print("compacted: unexpected", show(e))
            break
    except RevisionCompactedError as e:
        print("compacted", e.compacted_revision)
    cancel()


if __name__ == "__main__":
    main()
