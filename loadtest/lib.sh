# Shared by the load-test scripts (sourced): free ports, pinning, starting and stopping redis-server, the hub
# and nginx+Nchan on loopback. Every start_* records the PID so that stop_servers stops exactly what it started.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
REDIS_PID="" HUB_PID="" NGINX_PID=""
REDIS_PORT="" HUB_PORT="" NCHAN_PORT=""

say() { echo "$(basename "$0"): $*" >&2; }

# A loopback port nobody uses, below the kernel's ephemeral range: a port inside it can be taken between this
# check and the server's bind by any outgoing connection on the machine (a CI run lost its smoke to that:
# `bind: Address already in use`), while ports below it are only ever taken by a bind that names them.
free_port() {
    local port low=32768
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    [ "$low" -gt 11000 ] || { say "the ephemeral port range starts at $low: no room below it"; return 1; }
    for _ in $(seq 100); do
        port=$((10000 + RANDOM % (low - 10000)))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        if command -v ss >/dev/null && [ -n "$(ss -Htan "sport = :$port" 2>/dev/null)" ]; then continue; fi
        echo "$port"; return 0
    done
    say "no free port found"; return 1
}

wait_port() {  # port pid seconds
    for _ in $(seq $(($3 * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Stops a process we started: TERM, up to 5 s to exit, then KILL.
stop_pid() {
    local pid=$1 name=$2
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then say "$name ($pid) ignored SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}

stop_servers() {
    stop_pid "$HUB_PID" statushub; HUB_PID=""
    stop_pid "$NGINX_PID" nginx; NGINX_PID=""
    stop_pid "$REDIS_PID" redis-server; REDIS_PID=""
}

setup_pinning() {
    SERVER_PIN=() CLIENT_PIN=()
    if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
        SERVER_PIN=(taskset -c "$SERVER_CPU") CLIENT_PIN=(taskset -c "$CLIENT_CPU")
        # NICE=-15 (as root) keeps a shared machine's compilers from deciding the numbers: same priority for both
        # servers and the client, and the noise left is smaller (say so when reporting).
        if [ -n "${NICE:-}" ]; then SERVER_PIN=(nice -n "$NICE" "${SERVER_PIN[@]}") CLIENT_PIN=(nice -n "$NICE" "${CLIENT_PIN[@]}"); fi
    else
        say "fewer than 2 CPUs or no taskset: not pinning (servers and client will compete)"
    fi
}

start_redis() {  # workdir
    command -v redis-server >/dev/null || { say "redis-server not found (make deps installs it)"; return 1; }
    REDIS_PORT=$(free_port)
    "${SERVER_PIN[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$1/redis.log" --dir "$1" &
    REDIS_PID=$!
    wait_port "$REDIS_PORT" "$REDIS_PID" 5 || { say "redis-server did not start"; cat "$1/redis.log" >&2; return 1; }
}

start_hub() {  # workdir bin engine(memory|redis) [port, empty: a free one] [pid file, written as soon as the hub is started]
    # A port the caller did not name is chosen again if another process binds it first.
    local attempt
    for attempt in 1 2 3; do
        start_hub_once "$@" && return 0
        [ -z "${4:-}" ] && grep -q "Address already in use" "$1/hub.log" || return 1
        say "port $HUB_PORT was taken before the hub bound it (attempt $attempt); choosing another"
    done
    return 1
}

start_hub_once() {
    HUB_PORT=${4:-$(free_port)}
    local args=(serve --host 127.0.0.1 --port "$HUB_PORT")
    [ "$3" = redis ] && args+=(--redis "redis://127.0.0.1:$REDIS_PORT")
    # Every load-test client connects from 127.0.0.1: lift the per-address connection limit (where the hub has one).
    local limits=()
    if grep -qa max_connections_per_address "$2/statushub"; then
        limits=(STATUSHUB_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 STATUSHUB_SERVER_MAX_CONNECTIONS="${HUB_MAX_CONNECTIONS:-50000}")
    fi
    # HUB_ENV: more settings for the hub, e.g. HUB_ENV="STATUSHUB_WEBSOCKET_COMPRESSION=false".
    # shellcheck disable=SC2086
    env "${limits[@]}" ${HUB_ENV:-} "${SERVER_PIN[@]}" "$2/statushub" "${args[@]}" >"$1/hub.log" 2>&1 &
    HUB_PID=$!
    [ -z "${5:-}" ] || echo "$HUB_PID" >"$5"
    for _ in $(seq 150); do
        curl -sf "http://127.0.0.1:$HUB_PORT/ready" >/dev/null 2>&1 && return 0
        kill -0 "$HUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    say "the hub did not become ready within 15 s"; tail -n 20 "$1/hub.log" >&2
    return 1
}

# nginx with one worker and the Nchan module on loopback; storage memory or redis (nchan_redis_url). NCHAN_DEFLATE=1:
# the publisher keeps a deflated copy of each message for WebSocket subscribers that negotiated permessage-deflate
# (`nchan_deflate_message_for_websocket`; without it Nchan accepts the extension and sends every frame plain).
start_nchan() {  # workdir storage(memory|redis)
    local module=/usr/lib/nginx/modules/ngx_nchan_module.so
    command -v nginx >/dev/null && [ -f "$module" ] || {
        say "nginx with Nchan not found: apt-get install -y nginx-light libnginx-mod-nchan"; return 1; }
    NCHAN_PORT=$(free_port)
    mkdir -p "$1/nginx-tmp"
    local redis=""
    [ "$2" = redis ] && redis="nchan_redis_url \"redis://127.0.0.1:$REDIS_PORT\"; nchan_use_redis on;"
    cat >"$1/nginx.conf" <<CONF
load_module $module;
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/nginx-error.log warn;
worker_rlimit_nofile $(ulimit -Hn);
events { worker_connections 30000; }
http {
    access_log off;
    client_body_temp_path $1/nginx-tmp;
    proxy_temp_path $1/nginx-tmp;
    fastcgi_temp_path $1/nginx-tmp;
    uwsgi_temp_path $1/nginx-tmp;
    scgi_temp_path $1/nginx-tmp;
    nchan_shared_memory_size 256m;
    $redis
    server {
        listen 127.0.0.1:$NCHAN_PORT backlog=4096;
        location = /pub { nchan_publisher; nchan_channel_id \$arg_id; ${NCHAN_DEFLATE:+nchan_deflate_message_for_websocket on;} }
        location ~ ^/sub/([A-Za-z0-9_-]+)\$ { nchan_subscriber websocket; nchan_channel_id \$1; }
    }
}
CONF
    "${SERVER_PIN[@]}" nginx -c "$1/nginx.conf" -p "$1" >"$1/nginx.out" 2>&1 &
    NGINX_PID=$!
    wait_port "$NCHAN_PORT" "$NGINX_PID" 5 || { say "nginx did not start"; cat "$1/nginx.out" "$1/nginx-error.log" >&2 2>/dev/null; return 1; }
}

# The PIDs whose RSS and CPU the harness reports: hub or nginx (master and worker), plus redis-server.
server_pids() {
    local pids=()
    [ -n "$HUB_PID" ] && pids+=("$HUB_PID")
    if [ -n "$NGINX_PID" ]; then pids+=("$NGINX_PID"); pids+=($(pgrep -P "$NGINX_PID" || true)); fi
    [ -n "$REDIS_PID" ] && pids+=("$REDIS_PID")
    echo "${pids[@]}"
}

build_release() {
    # BIN already names a folder of binaries (e.g. a release build in another scratch path): use it as it is.
    if [ -n "${BIN:-}" ]; then return 0; fi
    if [ "${SKIP_BUILD:-0}" != 1 ]; then
        say "building release (statushub, statushub-load)"
        # One --product per invocation: given two, SwiftPM builds only the last one.
        (cd "$ROOT" && swift build -c release --product statushub >&2 && swift build -c release --product statushub-load >&2)
    fi
    BIN=$(cd "$ROOT" && swift build -c release --show-bin-path)
}

# The set-up every per-engine benchmark script shares: an output folder and a time stamp, a work folder removed
# on exit together with every server started, CPU pinning, the binaries (release build unless BIN names a
# folder), and HUB_DIR, where the hub binary to run is (HUB_BIN runs another build, e.g. an older one, with this
# harness). Call from the repository root with a name for the work folder.
prepare_benchmark() {  # name
    OUT_DIR="$ROOT/loadtest/out"
    mkdir -p "$OUT_DIR"
    STAMP=$(date +%Y%m%d-%H%M%S)
    WORK=$(mktemp -d "/tmp/statushub-$1.XXXXXX")
    trap benchmark_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    command -v curl >/dev/null || { say "curl not found"; exit 1; }
    setup_pinning
    if [ -z "${BIN:-}" ]; then build_release; fi
    HUB_DIR="$BIN"
    if [ -n "${HUB_BIN:-}" ]; then
        HUB_DIR="$WORK/hub-bin"
        mkdir -p "$HUB_DIR"
        ln -s "$(realpath "$HUB_BIN")" "$HUB_DIR/statushub"
    fi
}

benchmark_cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_servers
    rm -rf "$WORK"
    exit "$status"
}
