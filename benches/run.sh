#!/usr/bin/env bash
# Side-by-side benchmark of etcd and Armada with the same load generator
# (benches/loadgen.rs; benches/watchgen.rs for the watch workloads). Every
# (system, workload, repetition) gets a fresh server on loopback ports picked
# at run time and a fresh data dir under target/bench-data/; results go to
# stdout and target/bench-results.md.
# See benches/README.md. Environment knobs (defaults in brackets):
#   SYSTEMS ["etcd armada"]   RUNS [3]   SCALE [1] (multiplies request totals)
#   WORKLOADS ["put-1 put-64 range-s-64 range-l-64 txn-create-16"]; also
#     watch-rate and watch-max (watch fan-out, not run by default; "watch"
#     stands for both)
#   KEY_SPACE [100000]  PIN [0] (1: server on CPU 0, loadgen on CPU 1)
#   NODES [1] members per system: 3 starts a 3-member etcd cluster and a
#     3-node Armada cluster; the loadgen spreads its connections over all
#     members and sums the members' CPU
#   LOADGEN [built here] prebuilt loadgen binary   BUILD [1] (0: skip cargo)
#   WATCHGEN [built here] prebuilt watchgen binary
#   ETCD_BIN [etcd]  ETCDCTL [etcdctl]  ARMADA_BIN [target/release/armada]
#   RUN_TIMEOUT [300] seconds per loadgen run   READY_TIMEOUT [60] seconds
#   KEEP_DATA [0] (1: keep data dirs and logs)   RESULTS [target/bench-results.md]
#   QUIET_WAIT [20] max seconds to wait before each run for other processes
#     (e.g. a compiler) to drop below QUIET_CORES [0.3] of CPU
#   NICE [-10 as root, else 0] nice level of server and loadgen, so that
#     background work on the box disturbs both systems' runs less
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYSTEMS=${SYSTEMS:-"etcd armada"}
RUNS=${RUNS:-3}
SCALE=${SCALE:-1}
WORKLOADS=${WORKLOADS:-"put-1 put-64 range-s-64 range-l-64 txn-create-16"}
WORKLOADS=$(sed -E 's/(^| )watch( |$)/\1watch-rate watch-max\2/g' <<<"$WORKLOADS")
KEY_SPACE=${KEY_SPACE:-100000}
PIN=${PIN:-0}
NODES=${NODES:-1}
BUILD=${BUILD:-1}
LOADGEN=${LOADGEN:-}
WATCHGEN=${WATCHGEN:-}
ETCD_BIN=${ETCD_BIN:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
ARMADA_BIN=${ARMADA_BIN:-$ROOT/target/release/armada}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
READY_TIMEOUT=${READY_TIMEOUT:-60}
KEEP_DATA=${KEEP_DATA:-0}
QUIET_WAIT=${QUIET_WAIT:-20}
QUIET_CORES=${QUIET_CORES:-0.3}
RESULTS=${RESULTS:-$ROOT/target/bench-results.md}
if [[ $(id -u) == 0 ]]; then NICE=${NICE:--10}; else NICE=${NICE:-0}; fi
export ETCDCTL_API=3

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for tool in jq awk getconf "$ETCDCTL" timeout; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
for sys in $SYSTEMS; do
    case $sys in
        etcd) command -v "$ETCD_BIN" >/dev/null || die "etcd not found ($ETCD_BIN)" ;;
        armada) ;;
        *) die "unknown system '$sys' (etcd, armada)" ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $NODES =~ ^[1-9]$ ]] || die "NODES must be 1..9"
[[ $PIN == 0 ]] || command -v taskset >/dev/null || die "PIN=1 needs taskset"

# ---------------------------------------------------------------- build
NEED_LOADGEN=0 NEED_WATCHGEN=0
for wl in $WORKLOADS; do
    case $wl in
        watch-*) NEED_WATCHGEN=1 ;;
        *) NEED_LOADGEN=1 ;;
    esac
done
if [[ $BUILD == 1 ]]; then
    cd "$ROOT"
    if [[ " $SYSTEMS " == *" armada "* ]]; then
        log "cargo build --release --bins"
        cargo build --release --bins
    fi
    benches=()
    [[ $NEED_LOADGEN == 0 || -n $LOADGEN ]] || benches+=(--bench loadgen)
    [[ $NEED_WATCHGEN == 0 || -n $WATCHGEN ]] || benches+=(--bench watchgen)
    if ((${#benches[@]} > 0)); then
        log "cargo bench ${benches[*]} --no-run"
        built=$(cargo bench "${benches[@]}" --no-run --message-format=json |
            jq -r 'select(.reason == "compiler-artifact" and .executable != null)
                   | "\(.target.name) \(.executable)"')
        [[ -n $LOADGEN ]] || LOADGEN=$(awk '$1 == "loadgen" { p = $2 } END { print p }' <<<"$built")
        [[ -n $WATCHGEN ]] || WATCHGEN=$(awk '$1 == "watchgen" { p = $2 } END { print p }' <<<"$built")
    fi
fi
if [[ $NEED_LOADGEN == 1 ]]; then
    [[ -n $LOADGEN && -x $LOADGEN ]] || die "no loadgen binary (set LOADGEN= or BUILD=1)"
fi
if [[ $NEED_WATCHGEN == 1 ]]; then
    [[ -n $WATCHGEN && -x $WATCHGEN ]] || die "no watchgen binary (set WATCHGEN= or BUILD=1)"
fi
if [[ " $SYSTEMS " == *" armada "* ]]; then
    [[ -x $ARMADA_BIN ]] || die "no Armada binary at $ARMADA_BIN"
fi

# ------------------------------------------------------------ workloads
# name -> "base-total | tool args"; totals (requests for loadgen, measured
# puts for watchgen) are multiplied by SCALE. The watch workloads: 1000
# watchers on one prefix over 10 streams (10 connections) and writers putting
# under it; watch-rate: one writer at 100 puts/s (100,000 events/s to
# deliver); watch-max: 16 writers back to back (one writer alone is bound by
# its own commit latency, not by the fan-out).
workload_spec() {
    case $1 in
        put-1) echo "3000|--workload put --clients 1 --conns 1" ;;
        put-64) echo "40000|--workload put --clients 64 --conns 8" ;;
        range-s-64) echo "50000|--workload range --consistency s --clients 64 --conns 8" ;;
        range-l-64) echo "50000|--workload range --consistency l --clients 64 --conns 8" ;;
        txn-create-16) echo "20000|--workload txn-create --clients 16 --conns 4" ;;
        watch-rate) echo "1000|--watchers 1000 --streams 10 --conns 10 --writers 1 --rate 100" ;;
        watch-max) echo "5000|--watchers 1000 --streams 10 --conns 10 --writers 16 --rate 0" ;;
        *) return 1 ;;
    esac
}
for wl in $WORKLOADS; do
    workload_spec "$wl" >/dev/null || die "unknown workload '$wl'"
done
scaled() { awk -v n="$1" -v s="$SCALE" -v min="$2" 'BEGIN { v = int(n * s); print (v < min ? min : v) }'; }
KEYS=$(scaled "$KEY_SPACE" 1000)

# ---------------------------------------------------------------- ports
declare -A USED_PORTS=()
port_free() {
    if command -v ss >/dev/null; then
        [[ -z $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
    fi
}
# pick_port: sets PORT to a free loopback port not handed out before.
pick_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        if [[ -z ${USED_PORTS[$p]:-} ]] && port_free "$p"; then
            USED_PORTS[$p]=1
            PORT=$p
            return 0
        fi
    done
    die "no free port found"
}

# ------------------------------------------------------------ quietness
# busy_cores: CPU cores in use machine-wide over the next half second.
busy_cores() {
    local a b
    a=$(head -n 1 /proc/stat)
    sleep 0.5
    b=$(head -n 1 /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        na = split(a, x); split(b, y); busy = 0
        for (i = 2; i <= 9 && i <= na; i++) if (i != 5 && i != 6) busy += y[i] - x[i]
        printf "%.2f", busy / hz / 0.5 }'
}
# wait_quiet: before a run (no server up), wait a bounded time for other
# load on the machine to go away, so it does not land in one system's numbers.
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) c warned=0
    while :; do
        c=$(busy_cores)
        awk -v c="$c" -v q="$QUIET_CORES" 'BEGIN { exit !(c <= q) }' && return 0
        if ((SECONDS >= deadline)); then
            echo "   machine still busy ($c cores) after ${QUIET_WAIT}s; running anyway" >&2
            return 0
        fi
        if ((warned == 0)); then
            echo "   waiting for the machine to go quiet ($c cores busy)..." >&2
            warned=1
        fi
        sleep 2
    done
}

# --------------------------------------------------------- server control
SERVER_PIDS=()
LOADGEN_PID=""
RUN_DIR=""
cleanup() {
    if [[ -n $LOADGEN_PID ]]; then
        kill -TERM "$LOADGEN_PID" 2>/dev/null || true
        wait "$LOADGEN_PID" 2>/dev/null || true
        LOADGEN_PID=""
    fi
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
    if [[ -n $RUN_DIR && $KEEP_DATA != 1 ]]; then
        rm -rf "$RUN_DIR"
    fi
    RUN_DIR=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# start_server SYSTEM DIR: starts NODES members; sets SERVER_PIDS, ENDPOINT
# (comma-separated client URLs) and SERVER_PID_LIST; waits for readiness.
start_server() {
    local sys=$1 dir=$2 pin=() i
    [[ $PIN == 0 ]] || pin=(taskset -c 0)
    pin=(nice -n "$NICE" "${pin[@]}")
    local clients=() peers=() rests=() cluster="" members=""
    for i in $(seq "$NODES"); do
        pick_port
        clients+=("http://127.0.0.1:$PORT")
        pick_port
        peers+=("127.0.0.1:$PORT")
        pick_port
        rests+=("http://127.0.0.1:$PORT")
        cluster+="${cluster:+,}m$i=http://${peers[-1]}"
        members+="${members:+,}$i=${peers[-1]}"
    done
    ENDPOINT=$(IFS=,; echo "${clients[*]}")
    for i in $(seq "$NODES"); do
        local c=${clients[$((i - 1))]} p=${peers[$((i - 1))]} r=${rests[$((i - 1))]}
        mkdir -p "$dir/m$i"
        case $sys in
            etcd)
                "${pin[@]}" "$ETCD_BIN" --name "m$i" --data-dir "$dir/m$i/data" \
                    --listen-client-urls "$c" --advertise-client-urls "$c" \
                    --listen-peer-urls "http://$p" --initial-advertise-peer-urls "http://$p" \
                    --initial-cluster "$cluster" --initial-cluster-state new \
                    >"$dir/m$i/server.log" 2>&1 &
                ;;
            armada)
                local cluster_flags=()
                ((NODES == 1)) || cluster_flags=(--raft.node-id "$i" --raft.initial-members "$members")
                "${pin[@]}" "$ARMADA_BIN" leader --data-dir "$dir/m$i/data" \
                    --api.address "$c" --rest.address "$r" --raft.address "$p" \
                    "${cluster_flags[@]}" >"$dir/m$i/server.log" 2>&1 &
                ;;
        esac
        SERVER_PIDS+=($!)
    done
    SERVER_PID_LIST=$(IFS=,; echo "${SERVER_PIDS[*]}")
    local deadline=$((SECONDS + READY_TIMEOUT)) pid
    # Ready = a linearizable read succeeds on every member (an elected leader).
    for c in "${clients[@]}"; do
        until "$ETCDCTL" --endpoints "$c" --dial-timeout=1s --command-timeout=1s \
            get --consistency=l __bench_ready >/dev/null 2>&1; do
            for pid in "${SERVER_PIDS[@]}"; do
                if ! kill -0 "$pid" 2>/dev/null; then
                    echo "--- $sys member exited during startup; log tails:" >&2
                    tail -n 20 "$dir"/m*/server.log >&2 || true
                    return 1
                fi
            done
            if ((SECONDS >= deadline)); then
                echo "--- $sys not ready after ${READY_TIMEOUT}s; log tails:" >&2
                tail -n 20 "$dir"/m*/server.log >&2 || true
                return 1
            fi
            sleep 0.1
        done
    done
}

# Resident memory of the servers after a run (summed over members), in MB.
server_rss_mb() {
    local pid kb total=0
    for pid in "${SERVER_PIDS[@]}"; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    echo $((total / 1024))
}

stop_server() {
    local pid deadline=$((SECONDS + 15))
    for pid in "${SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
}

# ------------------------------------------------------------------ runs
mkdir -p "$ROOT/target/bench-data"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSONL="$ROOT/target/bench-data/results-$STAMP.jsonl"
: >"$JSONL"
FAILURES=0
LG_PIN=(nice -n "$NICE")
[[ $PIN == 0 ]] || LG_PIN+=(taskset -c 1)

one_run() {
    local sys=$1 wl=$2 run=$3 spec total args warmup out
    spec=$(workload_spec "$wl")
    total=$(scaled "${spec%%|*}" 100)
    args=${spec#*|}
    warmup=$((total / 20))
    wait_quiet
    RUN_DIR=$(mktemp -d "$ROOT/target/bench-data/$sys-$wl-r$run.XXXXXX")
    if ! start_server "$sys" "$RUN_DIR"; then
        FAILURES=$((FAILURES + 1))
        stop_server
        cleanup
        return 0
    fi
    # In the background + wait, so that a signal to this script is handled
    # at once rather than after the loadgen finishes.
    case $wl in
        watch-*)
            # shellcheck disable=SC2086 # $args is a list of watchgen flags
            timeout "$RUN_TIMEOUT" "${LG_PIN[@]}" "$WATCHGEN" --endpoint "$ENDPOINT" \
                --label "$sys" --server-pid "$SERVER_PID_LIST" --puts "$total" --warmup "$warmup" \
                --val-size 256 $args >"$RUN_DIR/loadgen.out" &
            ;;
        *)
            # shellcheck disable=SC2086 # $args is a list of loadgen flags
            timeout "$RUN_TIMEOUT" "${LG_PIN[@]}" "$LOADGEN" --endpoint "$ENDPOINT" \
                --label "$sys" --server-pid "$SERVER_PID_LIST" --total "$total" --warmup "$warmup" \
                --key-space "$KEYS" --key-size 8 --val-size 256 --seed "$run" $args \
                >"$RUN_DIR/loadgen.out" &
            ;;
    esac
    LOADGEN_PID=$!
    local rc=0
    wait "$LOADGEN_PID" || rc=$?
    LOADGEN_PID=""
    out=$(cat "$RUN_DIR/loadgen.out")
    local rss
    rss=$(server_rss_mb)
    if ((rc == 0)); then
        grep '^#' <<<"$out" | sed "s/^# /   r$run /" >&2 || true
        grep '^{' <<<"$out" | jq -c --arg b "$wl" --argjson r "$run" --argjson rss "$rss" \
            '. + {bench: $b, run: $r, rss_mb: $rss}' >>"$JSONL"
    else
        echo "--- $sys $wl run $run: loadgen failed (exit $rc); server log tail:" >&2
        grep '^#' <<<"$out" >&2 || true
        tail -n 20 "$RUN_DIR"/m*/server.log >&2 || true
        FAILURES=$((FAILURES + 1))
    fi
    stop_server
    cleanup
    sync
}

[[ $NEED_LOADGEN == 0 ]] || log "loadgen: $LOADGEN"
[[ $NEED_WATCHGEN == 0 ]] || log "watchgen: $WATCHGEN"
log "systems: $SYSTEMS | members: $NODES | workloads: $WORKLOADS | runs: $RUNS | scale: $SCALE | key space: $KEYS | pin: $PIN | nice: $NICE"
START=$SECONDS
for run in $(seq "$RUNS"); do
    # Alternate which system goes first so drift (page cache, thermal,
    # neighbours) does not always favour the same one.
    order=$SYSTEMS
    if ((run % 2 == 0)); then
        order=$(tr ' ' '\n' <<<"$SYSTEMS" | grep -v '^$' | tac | tr '\n' ' ')
    fi
    for wl in $WORKLOADS; do
        for sys in $order; do
            log "run $run/$RUNS: $sys $wl"
            one_run "$sys" "$wl" "$run"
        done
    done
done
ELAPSED=$((SECONDS - START))

# ---------------------------------------------------------------- table
KV_WLS=$(tr ' ' '\n' <<<"$WORKLOADS" | grep -v -e '^watch-' -e '^$' | tr '\n' ' ' || true)
WATCH_WLS=$(tr ' ' '\n' <<<"$WORKLOADS" | grep '^watch-' | tr '\n' ' ' || true)
JQ_DEFS='
  def median: sort | if length == 0 then null
      elif length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def stat($s; $w; f): [.[] | select(.system == $s and .bench == $w) | f | select(. != null)] | median;
  def fmt($d): if . == null then "-" else (. * pow(10; $d) | round / pow(10; $d) | tostring) end;
  def ratio($a; $b): if $a and $b then ($a / $b | fmt(2)) else "-" end;
  def errs($w): [.[] | select(.bench == $w) | .errors] | add // 0;
  def other($w): [.[] | select(.bench == $w) | .other_cpu_cores // 0] | max;
  def list(f): [.[] | f] | map(tostring) | join(", ");
'
# Medians over runs per (system, workload): ops/s, p99, server CPU ms/kop.
summary=""
if [[ -n $KV_WLS ]]; then
    summary=$(jq -s -r --arg wls "$KV_WLS" "$JQ_DEFS"'
  . as $all
  | ($wls | split(" ") | map(select(. != ""))) as $ws
  | "| workload | etcd ops/s | armada ops/s | armada/etcd | etcd p50 ms | armada p50 ms | etcd p99 ms | armada p99 ms | etcd CPU ms/kop | armada CPU ms/kop | armada/etcd CPU | etcd RSS MB | armada RSS MB | errors | max other CPU |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ($ws[] as $w
     | ($all | stat("etcd"; $w; .ops_per_sec)) as $eo
     | ($all | stat("armada"; $w; .ops_per_sec)) as $ao
     | ($all | stat("etcd"; $w; .server_cpu_ms_per_kop)) as $ec
     | ($all | stat("armada"; $w; .server_cpu_ms_per_kop)) as $ac
     | "| \($w) | \($eo | fmt(0)) | \($ao | fmt(0)) | \(ratio($ao; $eo)) | \($all | stat("etcd"; $w; .p50_ms) | fmt(2)) | \($all | stat("armada"; $w; .p50_ms) | fmt(2)) | \($all | stat("etcd"; $w; .p99_ms) | fmt(2)) | \($all | stat("armada"; $w; .p99_ms) | fmt(2)) | \($ec | fmt(1)) | \($ac | fmt(1)) | \(ratio($ac; $ec)) | \($all | stat("etcd"; $w; .rss_mb) | fmt(0)) | \($all | stat("armada"; $w; .rss_mb) | fmt(0)) | \($all | errs($w)) | \($all | other($w) | fmt(2)) |")
' "$JSONL")
    summary+=$'\n\nCPU ms/kop = server CPU time (user+sys) per 1000 successful requests; lower is better.
RSS = the servers\' resident memory right after the run (summed over members).'
fi
# Watch fan-out: medians of delivered events/s, delivery p50/p99 and server
# CPU per delivered event.
if [[ -n $WATCH_WLS ]]; then
    [[ -z $summary ]] || summary+=$'\n\n'
    summary+=$(jq -s -r --arg wls "$WATCH_WLS" "$JQ_DEFS"'
  . as $all
  | ($wls | split(" ") | map(select(. != ""))) as $ws
  | "| watch workload | etcd events/s | armada events/s | armada/etcd | etcd p50 ms | armada p50 ms | etcd p99 ms | armada p99 ms | etcd CPU µs/event | armada CPU µs/event | armada/etcd CPU | errors | max other CPU |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ($ws[] as $w
     | ($all | stat("etcd"; $w; .events_per_sec)) as $eo
     | ($all | stat("armada"; $w; .events_per_sec)) as $ao
     | ($all | stat("etcd"; $w; .server_cpu_us_per_event)) as $ec
     | ($all | stat("armada"; $w; .server_cpu_us_per_event)) as $ac
     | "| \($w) | \($eo | fmt(0)) | \($ao | fmt(0)) | \(ratio($ao; $eo)) | \($all | stat("etcd"; $w; .p50_ms) | fmt(2)) | \($all | stat("armada"; $w; .p50_ms) | fmt(2)) | \($all | stat("etcd"; $w; .p99_ms) | fmt(2)) | \($all | stat("armada"; $w; .p99_ms) | fmt(2)) | \($ec | fmt(2)) | \($ac | fmt(2)) | \(ratio($ac; $ec)) | \($all | errs($w)) | \($all | other($w) | fmt(2)) |")
' "$JSONL")
    summary+=$'\n\n'"Watch: 1000 watchers on one prefix over 10 streams; events/s = events received, summed over
watchers, from the first measured put to the last event; latency = put sent to event received,
per (event, watcher); CPU µs/event = server CPU time per delivered event; errors = missing,
duplicate or out-of-order events and stream failures."
fi

per_run=$(jq -s -r "$JQ_DEFS"'
  group_by([.bench, .system])[]
  | if .[0].workload == "watch" then
      "- \(.[0].system) \(.[0].bench): events/s \(list(.events_per_sec | round)); p50 ms \(list(.p50_ms)); p99 ms \(list(.p99_ms)); server CPU µs/event \(list(.server_cpu_us_per_event)); puts/s \(list(.puts_per_sec | round)); put p50 ms \(list(.put_p50_ms))"
    else
      "- \(.[0].system) \(.[0].bench): ops/s \(list(.ops_per_sec | round)); p99 ms \(list(.p99_ms)); server CPU ms/kop \(list(.server_cpu_ms_per_kop))"
    end
' "$JSONL")

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -z $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]] || rev="$rev+dirty"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
etcd_ver=$("$ETCD_BIN" --version 2>/dev/null | awk '/^etcd Version/ { print $3 }' || true)
report=$(
    cat <<EOF
# Armada vs etcd benchmark

$(date -u '+%Y-%m-%d %H:%M UTC'), armada $rev, etcd ${etcd_ver:-?}; $(nproc) CPUs ($cpu);
systems: $SYSTEMS; members per system: $NODES; runs: $RUNS (medians shown); scale: $SCALE; key space: $KEYS; key 8 B, value 256 B;
pinning: $([[ $PIN == 0 ]] && echo "none (client and server share all cores)" || echo "server CPU 0, loadgen CPU 1"); nice: $NICE;
both servers fsync every commit (defaults); runs took ${ELAPSED}s; raw results: ${JSONL#"$ROOT/"}.

$summary

"max other CPU" = the most CPU (in cores) used by processes other than server and
loadgen during any measured phase; above ~0.2 the run was disturbed.

Per run:

$per_run
EOF
)
echo
echo "$report"
echo "$report" >"$RESULTS"
echo
log "written to $RESULTS"
if ((FAILURES > 0)); then
    die "$FAILURES run(s) failed"
fi
