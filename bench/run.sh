#!/usr/bin/env bash
# Runs one benchmark scenario end to end: builds what is missing, starts everything the scenario
# needs (ecomd processes, a local Kafka broker), runs ecomd-bench / ecomd-microbench, prints the
# tables, and cleans up. Figures and how to read them: docs/performance.md.
#
#   bench/run.sh [--smoke] <scenario> [extra ecomd-bench options]
#
# Scenarios:
#   embedded      ecomd --role=all on the embedded bus
#   kafka-1proc   ecomd --role=all --bus=kafka on a local broker
#   kafka-split   one ecomd process per role on a local broker; POSTs go to the order process, the
#                 SSE stream is read from the notification process
#   kafka-scaled  BENCH_REPLICAS (default 3) ecomd processes per role on a local broker, each role's
#                 replicas sharing a PostgreSQL schema (--store=postgres); POSTs spread over the
#                 order replicas. PostgreSQL's CPU counts in the CPU per order, as the broker's.
#   http-accept   ecomd --role=order: only POST /api/orders (202 after the order is committed)
#   micro         ecomd-microbench: envelope codec, outbox commits, relay, embedded and Kafka bus
#   all           every scenario above, one after the other
#
# Each throughput scenario runs: a closed loop (BENCH_CONNECTIONS clients as fast as possible, for
# BENCH_SECONDS), then open loops at half the closed-loop throughput and at BENCH_RATE orders/s
# (BENCH_LATENCY_SECONDS each), for latency without coordinated omission. An open loop the server
# cannot sustain stops early and is reported as OVERLOADED (not an error).
#
# --smoke: one 5-second closed loop with a mixed workload (10% declined, 10% out of stock); exits
# non-zero on any error, lost order or unexpected outcome. No speed is asserted.
#
# Environment:
#   BENCH_SECONDS          closed-loop seconds (default 60; 5 with --smoke)
#   BENCH_LATENCY_SECONDS  seconds of each open-loop run (default 30)
#   BENCH_WARMUP           warm-up seconds before each run (default 5; 1 with --smoke)
#   BENCH_CONNECTIONS      closed-loop connections (default 64; 256 for http-accept)
#   BENCH_RATE             open-loop target in orders/s (default 1000; 0 skips that run)
#   BENCH_RUNS             which runs, a comma list of closed, saturate, half, rate (default
#                          closed,saturate,half,rate); e.g. BENCH_RUNS=rate BENCH_RATE=100 for the
#                          CPU per order and latency at a low rate
#   BENCH_SATURATE         orders in flight of the `saturate` closed loop (default 2048; `closed`
#                          allows 4 per connection, 256 by default)
#   BENCH_OUT              where JSON results and logs go (default build/bench-results/<scenario>-<time>)
#   BENCH_BROKERS          use this Kafka cluster instead of starting one (also: ECOM_KAFKA_BROKERS)
#   BENCH_REPLICAS         kafka-scaled: processes per role (default 3)
#   BENCH_KEEP=1           keep the data directories
#   BENCH_CONFIG           ecomd config to use instead of bench/config/bench.json (for experiments)
#   BUILD_DIR              build tree (default build/release). An existing tree is built as it is
#                          configured; a new one is configured Release without tests.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

smoke=0
if [[ "${1:-}" == "--smoke" ]]; then
  smoke=1
  shift
fi
scenario="${1:-}"
[[ -n "$scenario" ]] && shift
extra_args=("$@")

usage() {
  sed -n '2,35p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
case "$scenario" in
  embedded | kafka-1proc | kafka-split | kafka-scaled | http-accept | micro) ;;
  all)
    rc=0
    smoke_flag=()
    ((smoke)) && smoke_flag=(--smoke)
    for s in embedded kafka-1proc kafka-split http-accept micro; do
      "${BASH_SOURCE[0]}" "${smoke_flag[@]}" "$s" "${extra_args[@]}" || rc=$?
    done
    exit "$rc"
    ;;
  *) usage ;;
esac

if ((smoke)); then
  seconds="${BENCH_SECONDS:-5}"
  warmup="${BENCH_WARMUP:-1}"
else
  seconds="${BENCH_SECONDS:-60}"
  warmup="${BENCH_WARMUP:-5}"
fi
latency_seconds="${BENCH_LATENCY_SECONDS:-30}"
runs=",${BENCH_RUNS:-closed,saturate,half,rate},"
saturate="${BENCH_SATURATE:-2048}"
rate="${BENCH_RATE:-1000}"
if [[ "$scenario" == http-accept ]]; then
  connections="${BENCH_CONNECTIONS:-256}"
else
  connections="${BENCH_CONNECTIONS:-64}"
fi
stamp="$(date +%Y%m%d-%H%M%S)"
suffix=""
((smoke)) && suffix="-smoke"
out="${BENCH_OUT:-$repo/build/bench-results/${scenario}${suffix}-${stamp}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
tick="$(getconf CLK_TCK)"

say() { echo "bench/run.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# --- build ----------------------------------------------------------------------------------------

build_dir="${BUILD_DIR:-$repo/build/release}"
[[ "$build_dir" = /* ]] || build_dir="$repo/$build_dir"
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  command -v cmake >/dev/null && command -v ninja >/dev/null || "$repo/scripts/install-deps.sh"
  say "configuring $build_dir (Release, no tests)"
  cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DECOM_BUILD_TESTS=OFF >/dev/null
fi
if ! grep -q "ecomd-bench" "$build_dir/build.ninja" 2>/dev/null; then
  cmake -S "$repo" -B "$build_dir" >/dev/null  # pick up bench/ if it was added since
  grep -q "ecomd-bench" "$build_dir/build.ninja" ||
    die "the build has no ecomd-bench target: CMakeLists.txt needs add_subdirectory(bench)"
fi
say "building ecomd, ecomd-bench, ecomd-microbench in $build_dir"
cmake --build "$build_dir" --target ecomd ecomd-bench ecomd-microbench >"$out/build.log" 2>&1 ||
  { tail -n 40 "$out/build.log" >&2; die "build failed (log: $out/build.log)"; }
ecomd="$build_dir/src/ecomd"
bench="$build_dir/bench/ecomd-bench"
microbench="$build_dir/bench/ecomd-microbench"

# --- processes and clean-up -----------------------------------------------------------------------

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ecomd-bench.XXXXXX")"
pids=()
broker_started=0
pg_started=0
kafka_env=()

cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((broker_started)); then
    env "${kafka_env[@]}" "$repo/scripts/kafka.sh" stop >/dev/null 2>&1 || true
  fi
  if ((pg_started)); then
    env "${pg_env[@]}" "$repo/scripts/postgres.sh" clean >/dev/null 2>&1 || true
  fi
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
    say "kept data in $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Listen ports are taken below the kernel's ephemeral range: kafka-split's processes open many
# outbound connections, and one of those could take a port in that range between this check and
# the bind ("Address already in use", seen in CI runs).
ephemeral_low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
free_port() {
  local p span=$((ephemeral_low - 2 - 10000))
  ((span > 1000)) || span=1000
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % span))
    port_in_use "$p" || port_in_use "$((p + 1))" || { echo "$p"; return; }
  done
  die "no free port found"
}

# Starts ecomd with the bench config; sets $started_pid and $started_url.
start_ecomd() {
  local name="$1"
  shift
  local port dir
  port="$(free_port)"
  dir="$tmp/$name"
  mkdir -p "$dir"
  "$ecomd" --config="$tmp/bench.json" --data-dir="$dir" --http="127.0.0.1:$port" "$@" \
    >"$out/$name.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
  started_url="http://127.0.0.1:$port"
}

wait_ready() {
  local name="$1" pid="$2" url="$3" deadline=$((SECONDS + 90))
  until curl -sf -o /dev/null --max-time 2 "$url/readyz"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$out/$name.log" >&2
      die "$name exited during start-up (log: $out/$name.log)"
    fi
    ((SECONDS < deadline)) || { tail -n 30 "$out/$name.log" >&2; die "$name not ready after 90 s"; }
    sleep 0.3
  done
}

# The stream never ends, so curl times out; the status it saw is what matters.
has_sse() {
  local code
  code="$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "$1/api/events" 2>/dev/null || true)"
  [[ "$code" == 200 ]]
}

cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    [[ -r /proc/$pid/stat ]] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# The bench config with absolute paths and, for Kafka, names unique to this run.
write_config() {
  local prefix="bench-${stamp}-$$"
  sed -e "s#\"topics_file\": \"../../config/topics.json\"#\"topics_file\": \"$repo/config/topics.json\"#" \
    -e "s#\"client_id\": \"ecomd-bench\",#\"client_id\": \"ecomd-bench\", \"topic_prefix\": \"${prefix}.\", \"group_prefix\": \"${prefix}-\",#" \
    "${BENCH_CONFIG:-$repo/bench/config/bench.json}" >"$tmp/bench.json"
}

start_broker() {
  brokers="${BENCH_BROKERS:-${ECOM_KAFKA_BROKERS:-}}"
  if [[ -n "$brokers" ]]; then
    say "using the Kafka cluster at $brokers"
    # A broker of this machine counts in the CPU per order too: found by its listening port.
    local first="${brokers%%,*}"
    broker_pid="$(ss -ltnpH "sport = :${first##*:}" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)"
    [[ -n "$broker_pid" ]] || say "the broker is not a process of this user here: its CPU is not counted"
    return
  fi
  local port
  port="$(free_port)"
  kafka_env=(KAFKA_PORT="$port" KAFKA_DATA_DIR="$tmp/kafka")
  say "starting a Kafka broker on 127.0.0.1:$port"
  broker_started=1
  env "${kafka_env[@]}" "$repo/scripts/kafka.sh" start >"$out/kafka-start.log" 2>&1 ||
    { tail -n 30 "$out/kafka-start.log" >&2; die "the Kafka broker did not start"; }
  brokers="127.0.0.1:$port"
  broker_pid="$(cat "$tmp/kafka/kafka.pid" 2>/dev/null || true)"
}

# A PostgreSQL server of the run's own (scripts/postgres.sh); sets $pg_url and $pg_postmaster.
start_postgres() {
  local port
  port="$(free_port)"
  pg_env=(PG_PORT="$port" PG_DATA_DIR="$tmp/postgres")
  say "starting PostgreSQL on 127.0.0.1:$port"
  pg_started=1
  env "${pg_env[@]}" "$repo/scripts/postgres.sh" start >"$out/postgres-start.log" 2>&1 ||
    { tail -n 30 "$out/postgres-start.log" >&2; die "PostgreSQL did not start"; }
  pg_url="$(env "${pg_env[@]}" "$repo/scripts/postgres.sh" url)"
  pg_postmaster="$(head -1 "$tmp/postgres/postmaster.pid")"
}

# The server and its backends (one per store connection, for the whole run).
postgres_pids() {
  echo "$pg_postmaster"
  ps --ppid "$pg_postmaster" -o pid= 2>/dev/null | tr -d ' '
}

machine_info() {
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "data dir filesystem: $(df -T "$tmp" | awk 'NR==2 {print $2}')"
    echo "ecomd: $("$ecomd" --version 2>/dev/null) ($(grep -m1 CMAKE_BUILD_TYPE "$build_dir/CMakeCache.txt" | cut -d= -f2))"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$out/machine.txt" >&2
}

# --- runs -----------------------------------------------------------------------------------------

worst=0
summary=()

# run_bench NAME CPU_PIDS... -- BENCH_ARGS...
run_bench() {
  local name="$1"
  shift
  local cpu_pids=()
  while [[ "$1" != "--" ]]; do
    cpu_pids+=("$1")
    shift
  done
  shift
  local before after load rc=0 pid
  local -A before_pid=()
  for pid in "${cpu_pids[@]}"; do before_pid[$pid]="$(cpu_ticks "$pid")"; done
  before="$(cpu_ticks "${cpu_pids[@]}")"
  say "run $name: ecomd-bench $*"
  "$bench" --label "$scenario/$name" --json "$out/$name.json" "$@" "${extra_args[@]}" |
    tee "$out/$name.txt" || rc=$?
  after="$(cpu_ticks "${cpu_pids[@]}")"
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  local completed cpu_ms
  # Per order pushed through during the run, warm-up included (the CPU was spent on those too).
  completed="$(sed -n 's/.*"total": {"sent": [0-9]*, "accepted": \([0-9]*\), "completed": \([0-9]*\).*/\1 \2/p' "$out/$name.json" 2>/dev/null)"
  local orders="${completed#* }"
  [[ "$orders" == 0 || -z "$orders" ]] && orders="${completed% *}"
  if [[ -n "$orders" && "$orders" != 0 ]]; then
    cpu_ms="$(awk -v t=$((after - before)) -v hz="$tick" -v n="$orders" 'BEGIN {printf "%.2f", t * 1000 / hz / n}')"
  else
    cpu_ms="-"
  fi
  echo "  server CPU: $(awk -v t=$((after - before)) -v hz="$tick" 'BEGIN {printf "%.1f", t / hz}') s over the run," \
    "${cpu_ms} ms per order (all ecomd${broker_pid:+ + broker}$( ((pg_started)) && echo " + postgres") processes); load average after: $load" |
    tee -a "$out/$name.txt"
  # Where it went: each process's share, named by its role (or "broker", "postgres"); the
  # replicas of a role (kafka-scaled) and PostgreSQL's backends are summed.
  local parts=() who
  local -A ticks_of=()
  local -a order_of=()
  for pid in "${cpu_pids[@]}"; do
    [[ -n "$orders" && "$orders" != 0 ]] || break
    who="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/.*--role=\([a-z,]*\).*/\1/p')"
    [[ "$pid" == "${broker_pid:-}" ]] && who=broker
    [[ -z "$who" && "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == postgres* ]] && who=postgres
    who="${who:-$pid}"
    [[ -n "${ticks_of[$who]:-}" ]] || order_of+=("$who")
    ticks_of[$who]=$((${ticks_of[$who]:-0} + $(cpu_ticks "$pid") - ${before_pid[$pid]:-0}))
  done
  for who in "${order_of[@]}"; do
    parts+=("$who $(awk -v t="${ticks_of[$who]}" -v hz="$tick" -v n="$orders" 'BEGIN {printf "%.2f", t * 1000 / hz / n}')")
  done
  ((${#parts[@]} > 1)) && echo "  CPU ms per order by process: $(IFS=,; echo "${parts[*]}" | sed 's/,/, /g')" | tee -a "$out/$name.txt"
  printf '{"cpu_seconds": %s, "cpu_ms_per_order": "%s", "loadavg_after": "%s", "exit": %d}\n' \
    "$(awk -v t=$((after - before)) -v hz="$tick" 'BEGIN {printf "%.2f", t / hz}')" "$cpu_ms" "$load" "$rc" \
    >"$out/$name.server.json"
  summary+=("$name: exit $rc")
  case "$rc" in
    0) ;;
    3) say "$name: the server could not sustain the open-loop rate (reported, not an error)" ;;
    *) worst=1 ;;
  esac
}

closed_then_open() {
  local e2e="$1" url_args=("${@:2}")
  local cpu=("${pids[@]}")
  [[ -n "${broker_pid:-}" ]] && cpu+=("$broker_pid")
  if ((pg_started)); then
    local pg_pids
    mapfile -t pg_pids < <(postgres_pids)
    cpu+=("${pg_pids[@]}")
  fi
  if ((smoke)); then
    run_bench smoke "${cpu[@]}" -- "${url_args[@]}" --mode closed --connections 8 \
      --duration "$seconds" --warmup "$warmup" --e2e "$e2e" --mix-decline 0.1 --mix-oos 0.1 --quiet
    return
  fi
  if [[ "$runs" == *,closed,* ]]; then
    run_bench closed "${cpu[@]}" -- "${url_args[@]}" --mode closed --connections "$connections" \
      --duration "$seconds" --warmup "$warmup" --e2e "$e2e" --quiet
  fi
  if [[ "$runs" == *,saturate,* && "$e2e" != none ]]; then
    run_bench "saturate-$saturate" "${cpu[@]}" -- "${url_args[@]}" --mode closed \
      --connections "$connections" --max-inflight "$saturate" --duration "$seconds" \
      --warmup "$warmup" --e2e "$e2e" --quiet
  fi
  [[ "$e2e" == none ]] && return
  # Half the measured capacity first: a run the server cannot sustain leaves a backlog behind
  # that would spoil any run after it, so the BENCH_RATE run comes last.
  local capacity half
  capacity=0
  if [[ "$runs" == *,half,* && -f "$out/closed.json" ]]; then
    capacity="$(sed -n 's/.*"completed_per_s": \([0-9.]*\).*/\1/p' "$out/closed.json" | head -1)"
  fi
  half="$(awk -v c="${capacity:-0}" 'BEGIN {printf "%d", c / 2}')"
  if ((half >= 10)); then
    run_bench "open-$half" "${cpu[@]}" -- "${url_args[@]}" --mode open --rate "$half" \
      --connections "$connections" --duration "$latency_seconds" --warmup "$warmup" --e2e "$e2e" --quiet
  fi
  if [[ "$rate" != 0 && "$runs" == *,rate,* ]]; then
    run_bench "open-$rate" "${cpu[@]}" -- "${url_args[@]}" --mode open --rate "$rate" \
      --connections "$connections" --duration "$latency_seconds" --warmup "$warmup" --e2e "$e2e" --quiet
  fi
}

write_config
broker_pid=""

case "$scenario" in
  embedded)
    start_ecomd all --role=all
    wait_ready all "$started_pid" "$started_url"
    machine_info
    e2e=sse
    has_sse "$started_url" || { say "no /api/events (notification role missing): --e2e=poll"; e2e=poll; }
    closed_then_open "$e2e" --url "$started_url"
    ;;
  kafka-1proc)
    start_broker
    start_ecomd all --role=all --bus=kafka --brokers="$brokers"
    wait_ready all "$started_pid" "$started_url"
    machine_info
    e2e=sse
    has_sse "$started_url" || { say "no /api/events (notification role missing): --e2e=poll"; e2e=poll; }
    closed_then_open "$e2e" --url "$started_url"
    ;;
  kafka-split)
    start_broker
    declare -A role_url role_pid
    for role in order inventory payment saga notification; do
      start_ecomd "$role" --role="$role" --bus=kafka --brokers="$brokers"
      role_url[$role]="$started_url"
      role_pid[$role]="$started_pid"
    done
    sse_args=()
    e2e=sse
    for role in order inventory payment saga notification; do
      if [[ "$role" == notification ]]; then
        sleep 1
        if ! kill -0 "${role_pid[$role]}" 2>/dev/null; then
          say "the notification role does not start in this build: --e2e=poll"
          e2e=poll
          continue
        fi
      fi
      wait_ready "$role" "${role_pid[$role]}" "${role_url[$role]}"
    done
    [[ "$e2e" == sse ]] && sse_args=(--sse-url "${role_url[notification]}")
    machine_info
    closed_then_open "$e2e" --url "${role_url[order]}" "${sse_args[@]}"
    ;;
  kafka-scaled)
    start_broker
    start_postgres
    replicas="${BENCH_REPLICAS:-3}"
    schemas="bench_${stamp//-/_}_$$_"
    declare -A scaled_url scaled_pid
    for role in order inventory payment saga notification; do
      for i in $(seq 1 "$replicas"); do
        start_ecomd "$role-$i" --role="$role" --bus=kafka --brokers="$brokers" --store=postgres \
          --store-url="$pg_url" --store-schema-prefix="$schemas"
        scaled_url[$role-$i]="$started_url"
        scaled_pid[$role-$i]="$started_pid"
      done
    done
    for name in "${!scaled_pid[@]}"; do wait_ready "$name" "${scaled_pid[$name]}" "${scaled_url[$name]}"; done
    order_urls=()
    for i in $(seq 1 "$replicas"); do order_urls+=(--url "${scaled_url[order-$i]}"); done
    machine_info
    echo "replicas per role: $replicas (PostgreSQL stores, schema prefix $schemas)" | tee -a "$out/machine.txt" >&2
    closed_then_open sse "${order_urls[@]}" --sse-url "${scaled_url[notification-1]}"
    ;;
  http-accept)
    start_ecomd order --role=order
    wait_ready order "$started_pid" "$started_url"
    machine_info
    closed_then_open none --url "$started_url"
    ;;
  micro)
    micro_args=()
    if ((smoke)); then
      micro_args=(--seconds 0.3)
      [[ -n "${BENCH_BROKERS:-${ECOM_KAFKA_BROKERS:-}}" ]] && { start_broker; micro_args+=(--brokers "$brokers"); }
    else
      micro_args=(--seconds "${BENCH_MICRO_SECONDS:-3}")
      start_broker
      micro_args+=(--brokers "$brokers")
    fi
    machine_info
    rc=0
    (cd "$tmp" && TMPDIR="$tmp" "$microbench" "${micro_args[@]}" --json "$out/micro.json") | tee "$out/micro.txt" || rc=$?
    summary+=("micro: exit $rc")
    ((rc == 0)) || worst=1
    ;;
esac

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
say "results in $out (${summary[*]})"
exit "$worst"
