#!/usr/bin/env bash
# Benchmark: paas-proxy vs nginx vs HAProxy, one worker each, same origin, same wrk client.
# Traffic only to 127.0.0.1. Not a test: run by hand, once, on a quiet machine.
#
#   paas-proxy/bench/run.sh      # DURATION=5 (c=1: C1_DURATION=10) ROUNDS=5 CONNS=32 IDLE_CONNS=2000
#   DURATION=3 ROUNDS=1 IDLE_CONNS=1000 paas-proxy/bench/run.sh  # shorter, while iterating
#   BASE_BIN=/tmp/old-standalone paas-proxy/bench/run.sh # also measure an older build
#                                                               # ("base" row), in the same run
#
# Measures, for each proxy: req/s with keep-alive clients, req/s with `Connection: close`
# clients, c=1 latency p50/p99 (and the origin alone, for the added latency per hop), and RSS
# per idle keep-alive client connection, req/s and p99 with MANY_CONNS keep-alive clients, MiB/s
# of 1 MiB responses, and the proxy process's CPU time per keep-alive request
# (from /proc: on a 2-core machine shared with wrk and the origin, req/s swings with scheduling;
# CPU per request is the steadier figure). Prints a table and the ratios of paas-proxy to each.
set -euo pipefail

DURATION=${DURATION:-5}
# c=1 turns run longer: their p99 is set by rare scheduling stalls, and more samples steady it.
C1_DURATION=${C1_DURATION:-$((DURATION * 2))}
ROUNDS=${ROUNDS:-5}
CONNS=${CONNS:-32}
MANY_CONNS=${MANY_CONNS:-1000}
IDLE_CONNS=${IDLE_CONNS:-2000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/paas-proxy-bench}
ORIGIN_PORT=18001 NGINX_PORT=18002 HAPROXY_PORT=18003 PAAS_PORT=18004 BASE_PORT=18005
BASE_BIN=${BASE_BIN:-}
HOST_HEADER="Host: bench.localhost"

need() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
if ! need wrk || ! need nginx || ! need haproxy; then
    echo "installing wrk nginx haproxy..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx haproxy >/dev/null
fi
export PATH="$PATH:/usr/sbin"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "building paas-proxy (release)..."
(cd "$ROOT" && cargo build -q --release -p paas-proxy --example standalone)
PAAS_BIN="$ROOT/target/release/examples/standalone"

rm -rf "$WORK" && mkdir -p "$WORK/logs" "$WORK/www"
head -c 1048576 /dev/urandom >"$WORK/www/1m.bin"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/origin.pid" ] && kill "$(cat "$WORK/origin.pid")" 2>/dev/null || true
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT

# --- origin: nginx, one worker, a static 200 ------------------------------------------------
cat > "$WORK/origin.conf" <<CONF
worker_processes 1;
pid $WORK/origin.pid;
error_log $WORK/logs/origin.err warn;
events { worker_connections 8000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/tmp-origin;
    server {
        listen 127.0.0.1:$ORIGIN_PORT reuseport backlog=4096;
        location / { default_type text/plain; return 200 "hello from the origin\n"; }
        location = /1m.bin { root $WORK/www; }
    }
}
CONF
nginx -c "$WORK/origin.conf" -p "$WORK"

# Each proxy does the same work per request: the forwarded headers paas-proxy sets
# (X-Forwarded-For/-Proto/-Host/-Port) and a request id.
# --- nginx as the proxy, one worker, keep-alive upstream pool --------------------------------
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/nginx.err warn;
events { worker_connections 8000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/tmp-nginx;
    proxy_temp_path $WORK/tmp-nginx-proxy;
    upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0; # large bodies stream through memory, not a temp file
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_set_header X-Request-Id \$request_id;
        }
    }
}
CONF
nginx -c "$WORK/nginx.conf" -p "$WORK"

# --- HAProxy, one thread ---------------------------------------------------------------------
cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 3s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Port %[dst_port]
    unique-id-format %{+X}o%ci%cp%fi%fp%Ts%rt%pid
    unique-id-header X-Request-Id
    default_backend be
backend be
    http-reuse always
    server origin 127.0.0.1:$ORIGIN_PORT
CONF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/logs/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

# --- paas-proxy, one worker thread -----------------------------------------------------------
cat > "$WORK/routes.json" <<CONF
{"apps": {"bench": {"endpoints": ["127.0.0.1:$ORIGIN_PORT"]}}}
CONF
RUST_LOG=warn "$PAAS_BIN" --listen "127.0.0.1:$PAAS_PORT" --routes "$WORK/routes.json" --threads 1 \
    >"$WORK/logs/paas.log" 2>&1 &
PAAS_PID=$!
PIDS+=("$PAAS_PID")
NAMES="nginx haproxy paas"
PORTS="$ORIGIN_PORT $NGINX_PORT $HAPROXY_PORT $PAAS_PORT"
if [ -n "$BASE_BIN" ]; then
    RUST_LOG=warn "$BASE_BIN" --listen "127.0.0.1:$BASE_PORT" --routes "$WORK/routes.json" --threads 1 \
        >"$WORK/logs/base.log" 2>&1 &
    BASE_PID=$!
    PIDS+=("$BASE_PID")
    NAMES="$NAMES base"
    PORTS="$PORTS $BASE_PORT"
fi

sleep 1
for port in $PORTS; do
    curl -sf -H "$HOST_HEADER" "http://127.0.0.1:$port/" >/dev/null || { echo "port $port does not answer"; exit 1; }
done
NGINX_WORKER=$(pgrep -P "$(cat "$WORK/nginx.pid")" | head -1)

# wrk output -> numbers
rps() { awk '/^Requests\/sec:/ {print $2}'; }
to_us() { # "123.45us" / "1.23ms" / "1.2s" -> microseconds
    awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); print v+0 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v*1000 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000000 } else print v }'
}
pct() { awk -v p="$1" '$1==p {print $2}' | to_us; }

run_wrk() { # port conns extra-header -> file
    local port=$1 conns=$2 extra=$3 out=$4
    if [ -n "$extra" ]; then
        wrk -t1 -c"$conns" -d"${DURATION}s" --latency -H "$HOST_HEADER" -H "$extra" "http://127.0.0.1:$port/" >"$out" 2>&1 || true
    else
        wrk -t1 -c"$conns" -d"${DURATION}s" --latency -H "$HOST_HEADER" "http://127.0.0.1:$port/" >"$out" 2>&1 || true
    fi
    if grep -q "Non-2xx\|Socket errors" "$out"; then grep "Non-2xx\|Socket errors" "$out" | sed "s/^/    port $port: /"; fi
}

run_wrk_many() { # port -> file: many keep-alive clients (two wrk threads to drive them)
    wrk -t2 -c"$MANY_CONNS" -d"${DURATION}s" --latency -H "$HOST_HEADER" "http://127.0.0.1:$1/" >"$2" 2>&1 || true
    if grep -q "Non-2xx\|Socket errors" "$2"; then grep "Non-2xx\|Socket errors" "$2" | sed "s/^/    port $1: /"; fi
}
run_wrk_big() { # port -> file: 1 MiB responses
    wrk -t1 -c8 -d"${DURATION}s" -H "$HOST_HEADER" "http://127.0.0.1:$1/1m.bin" >"$2" 2>&1 || true
    if grep -q "Non-2xx\|Socket errors" "$2"; then grep "Non-2xx\|Socket errors" "$2" | sed "s/^/    port $1: /"; fi
}
mib_s() { # wrk's "Transfer/sec: 1.23GB" -> MiB/s
    awk '/^Transfer\/sec:/ { v=$2; if (v ~ /GB$/) { sub(/GB$/,"",v); print v*1024 } else if (v ~ /MB$/) { sub(/MB$/,"",v); print v+0 } else if (v ~ /KB$/) { sub(/KB$/,"",v); print v/1024 } else print v }'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_us_per_req() { # ticks-before ticks-after wrk-output -> CPU microseconds per request
    local n
    n=$(awk '/requests in/ {print $1}' "$3")
    awk -v a="$1" -v b="$2" -v n="$n" -v t="$(getconf CLK_TCK)" 'BEGIN { if (n+0 == 0) print "n/a"; else printf "%.1f", (b-a)/t*1e6/n }'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

cat > "$WORK/idle.py" <<'PY'
# Holds N keep-alive connections, each after one request, until killed.
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
req = b"GET / HTTP/1.1\r\nHost: bench.localhost\r\n\r\n"
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    data = b""
    while b"hello from the origin" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed early")
        data += chunk
    socks.append(s)
open(ready, "w").write("ok")
time.sleep(600)
PY

measure_rss() { # pid port -> KiB per idle connection
    local pid=$1 port=$2
    sleep 1
    local before after
    before=$(rss_kb "$pid")
    python3 "$WORK/idle.py" "$port" "$IDLE_CONNS" "$WORK/idle-$port.ready" >/dev/null 2>&1 &
    local holder=$!
    while [ ! -f "$WORK/idle-$port.ready" ]; do sleep 0.2; done
    sleep 1
    after=$(rss_kb "$pid")
    kill "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
    awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { printf "%.2f", (a-b)/n }'
}

declare -A KA CLOSE P50 P99 RSS CPU MANY MANY99 BIG
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
proxy_of() { # name -> "port pid"
    case $1 in
        nginx) echo "$NGINX_PORT $NGINX_WORKER" ;;
        haproxy) echo "$HAPROXY_PORT $HAPROXY_PID" ;;
        paas) echo "$PAAS_PORT $PAAS_PID" ;;
        base) echo "$BASE_PORT $BASE_PID" ;;
    esac
}
echo "origin alone, c=1..."
DURATION=$C1_DURATION run_wrk $ORIGIN_PORT 1 "" "$WORK/origin-c1.txt"
ORIGIN_P50=$(pct 50% <"$WORK/origin-c1.txt")
ORIGIN_P99=$(pct 99% <"$WORK/origin-c1.txt")

# Memory per idle connection first, before any load: after the c=$MANY_CONNS runs, each proxy
# holds memory it does not give back, and idle connections would reuse it unseen.
for name in $NAMES; do
    read -r port pid <<<"$(proxy_of "$name")"
    echo "$name: $IDLE_CONNS idle keep-alive connections..."
    RSS[$name]=$(measure_rss "$pid" "$port")
done

# A warm-up turn each, not counted: it fills the upstream pools and allocators, and absorbs
# the burst a virtual machine's CPU may give whatever runs first after a quiet spell (seen here:
# the first proxy to run got 40% more than in every later round).
for name in $NAMES; do
    read -r port pid <<<"$(proxy_of "$name")"
    echo "$name: warm-up..."
    DURATION=2 run_wrk "$port" "$CONNS" "" "$WORK/$name-warmup.txt"
done

# The proxies take turns, ROUNDS times, in a rotating order, and each figure is the median of
# its rounds: on a small shared machine, throughput drifts over a run, and turns keep the drift
# from favouring whichever proxy happens to run first.
declare -A R_KA R_CLOSE R_P50 R_P99 R_CPU R_MANY R_MANY99 R_BIG
read -r -a ORDER <<<"$NAMES"
rotated() { # round -> the proxies in that round's order (rotating: none always runs first)
    local shift_by=$((($1 - 1) % ${#ORDER[@]}))
    echo "${ORDER[@]:shift_by}" "${ORDER[@]:0:shift_by}"
}
# Keep-alive first, then c=1, then `Connection: close` last: the close-mode runs leave tens of
# thousands of TIME_WAIT sockets behind, which would slow whatever runs after them.
for round in $(seq 1 "$ROUNDS"); do
    for name in $(rotated "$round"); do
        read -r port pid <<<"$(proxy_of "$name")"
        echo "round $round/$ROUNDS, $name: keep-alive c=$CONNS..."
        out="$WORK/$name-$round"
        ticks=$(cpu_ticks "$pid")
        run_wrk "$port" "$CONNS" "" "$out-ka.txt"
        R_CPU[$name]+=" $(cpu_us_per_req "$ticks" "$(cpu_ticks "$pid")" "$out-ka.txt")"
        R_KA[$name]+=" $(rps <"$out-ka.txt")"
    done
done
for round in $(seq 1 "$ROUNDS"); do
    for name in $(rotated "$round"); do
        read -r port pid <<<"$(proxy_of "$name")"
        echo "round $round/$ROUNDS, $name: keep-alive c=$MANY_CONNS, and 1 MiB bodies c=8..."
        out="$WORK/$name-$round"
        run_wrk_many "$port" "$out-many.txt"
        R_MANY[$name]+=" $(rps <"$out-many.txt")"
        R_MANY99[$name]+=" $(pct 99% <"$out-many.txt")"
        run_wrk_big "$port" "$out-big.txt"
        R_BIG[$name]+=" $(mib_s <"$out-big.txt")"
    done
done
for round in $(seq 1 "$ROUNDS"); do
    for name in $(rotated "$round"); do
        read -r port pid <<<"$(proxy_of "$name")"
        echo "round $round/$ROUNDS, $name: c=1..."
        out="$WORK/$name-$round"
        DURATION=$C1_DURATION run_wrk "$port" 1 "" "$out-c1.txt"
        R_P50[$name]+=" $(pct 50% <"$out-c1.txt")"
        R_P99[$name]+=" $(pct 99% <"$out-c1.txt")"
    done
done
for round in $(seq 1 "$ROUNDS"); do
    for name in $(rotated "$round"); do
        read -r port pid <<<"$(proxy_of "$name")"
        echo "round $round/$ROUNDS, $name: Connection: close c=$CONNS..."
        out="$WORK/$name-$round"
        run_wrk "$port" "$CONNS" "Connection: close" "$out-close.txt"
        R_CLOSE[$name]+=" $(rps <"$out-close.txt")"
        sleep 2 # let TIME_WAIT settle a little
    done
done
for name in $NAMES; do
    read -r port pid <<<"$(proxy_of "$name")"
    KA[$name]=$(median <<<"${R_KA[$name]}")
    CLOSE[$name]=$(median <<<"${R_CLOSE[$name]}")
    P50[$name]=$(median <<<"${R_P50[$name]}")
    P99[$name]=$(median <<<"${R_P99[$name]}")
    CPU[$name]=$(median <<<"${R_CPU[$name]}")
    MANY[$name]=$(median <<<"${R_MANY[$name]}")
    MANY99[$name]=$(median <<<"${R_MANY99[$name]}")
    BIG[$name]=$(median <<<"${R_BIG[$name]}")
    echo "  $name rounds: keep-alive r/s${R_KA[$name]}; close r/s${R_CLOSE[$name]}; p50${R_P50[$name]}; p99${R_P99[$name]}; CPU us/req${R_CPU[$name]}"
done

echo
printf "%-10s %14s %14s %10s %10s %12s %14s %12s\n" proxy "keepalive r/s" "close r/s" "p50 us" "p99 us" "+p50/hop us" "KiB/idle conn" "CPU us/req"
printf "%-10s %14s %14s %10s %10s %12s %14s %12s\n" origin - - "$ORIGIN_P50" "$ORIGIN_P99" - - -
for name in $NAMES; do
    added=$(awk -v a="${P50[$name]}" -v b="$ORIGIN_P50" 'BEGIN { printf "%.1f", a-b }')
    printf "%-10s %14s %14s %10s %10s %12s %14s %12s\n" "$name" "${KA[$name]}" "${CLOSE[$name]}" "${P50[$name]}" "${P99[$name]}" "$added" "${RSS[$name]}" "${CPU[$name]}"
done
echo
printf "%-10s %18s %18s %18s\n" proxy "c=$MANY_CONNS r/s" "c=$MANY_CONNS p99 us" "1 MiB bodies MiB/s"
for name in $NAMES; do
    printf "%-10s %18s %18s %18s\n" "$name" "${MANY[$name]}" "${MANY99[$name]}" "${BIG[$name]}"
done
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b+0 == 0) print "n/a"; else printf "%.2fx", a/b }'; }
for peer in nginx haproxy ${BASE_BIN:+base}; do
    echo "paas-proxy / $peer: keep-alive r/s $(ratio "${KA[paas]}" "${KA[$peer]}")," \
        "close r/s $(ratio "${CLOSE[paas]}" "${CLOSE[$peer]}")," \
        "p50 $(ratio "${P50[paas]}" "${P50[$peer]}"), p99 $(ratio "${P99[paas]}" "${P99[$peer]}")," \
        "memory/idle conn $(ratio "${RSS[paas]}" "${RSS[$peer]}"), CPU/request $(ratio "${CPU[paas]}" "${CPU[$peer]}")," \
        "c=$MANY_CONNS r/s $(ratio "${MANY[paas]}" "${MANY[$peer]}"), c=$MANY_CONNS p99 $(ratio "${MANY99[paas]}" "${MANY99[$peer]}")," \
        "1 MiB bodies $(ratio "${BIG[paas]}" "${BIG[$peer]}")"
done
# Paired per round: a round's proxies ran back to back, so their ratio is steadier than the ratio
# of medians when the machine's speed drifts over the run.
paired() { # R_X array name [lower] -> per-round ratios of paas to the better of nginx and HAProxy
    local -n arr=$1
    local lower=${2:-}
    read -r -a p <<<"${arr[paas]}"
    read -r -a n <<<"${arr[nginx]}"
    read -r -a h <<<"${arr[haproxy]}"
    for i in "${!p[@]}"; do
        awk -v a="${p[$i]}" -v b="${n[$i]}" -v c="${h[$i]}" -v lower="$lower" 'BEGIN { m = (b > c) ? b : c; if (lower) m = (b < c) ? b : c; if (m + 0 == 0) printf "n/a "; else printf "%.2f ", a / m }'
    done
}
echo "paas-proxy / the better peer, per round: keep-alive r/s $(paired R_KA)| close r/s $(paired R_CLOSE)|" \
    "c=$MANY_CONNS r/s $(paired R_MANY)| 1 MiB bodies $(paired R_BIG)| c=1 p99 $(paired R_P99 lower)"
echo "(r/s: higher is better; latency, memory and CPU per keep-alive request: lower is better. Raw wrk output in $WORK.)"
