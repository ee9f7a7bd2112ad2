#!/bin/sh
# Builds trainrr and trace_bench and runs every section of the trace benchmark (bench/README.md, "Traces").
#   bench/run_trace_bench.sh [BUILD_DIR] [-- trace_bench arguments...]
# Tables go to stdout as Markdown; trace_bench keeps nothing on disk unless given --keep.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build-tbench"}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target trainrr trace_bench >/dev/null
echo "# trace_bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$root" rev-parse --short HEAD)"
exec "$build/bench/trace_bench" "$@"
