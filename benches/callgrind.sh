#!/bin/bash
# User-space instructions per request on the hello workload, counted by
# callgrind (repeatable on a noisy machine, unlike req/s). Kernel time (the
# recv and writev of every request) is not counted.
#
#   bash benches/callgrind.sh [WORKLOAD] [SECONDS]   (defaults: hello 5)
#
# Needs valgrind and wrk (apt-get install valgrind wrk) and ferrowsgi
# installed in the current Python. Prints requests served under callgrind and
# instructions per request; the profile is left in /tmp/ferrowsgi-callgrind.out.1
# (read it with callgrind_annotate --inclusive=yes).
set -euo pipefail
cd "$(dirname "$0")/.."
workload=${1:-hello}
seconds=${2:-5}
port=$((20000 + RANDOM % 10000))
out=/tmp/ferrowsgi-callgrind.out
python=$(python -c 'import sys; print(sys.executable)')
rm -f "$out" "$out".*
PYTHONPATH=. valgrind --tool=callgrind --callgrind-out-file="$out" "$python" -c "
import signal, ferrowsgi, importlib; apps = importlib.import_module('benches.apps' if '$workload' != 'flask' else 'benches.flask_app')
signal.signal(signal.SIGTERM, signal.default_int_handler)
ferrowsgi.serve(getattr(apps, '$workload' if '$workload' != 'flask' else 'app'), host='127.0.0.1', port=$port)" 2>/tmp/ferrowsgi-callgrind.log &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
wrk -t1 -c50 -d2s "http://127.0.0.1:$port/" >/dev/null   # warm-up
callgrind_control -z "$pid" >/dev/null
requests=$(wrk -t1 -c50 -d"${seconds}s" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
callgrind_control -d "$pid" >/dev/null
total=$(callgrind_annotate "$out.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$workload: $requests requests under callgrind, $((total / requests)) instructions per request"
