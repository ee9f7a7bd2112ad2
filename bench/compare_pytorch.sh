#!/bin/bash
# trainrr's training step time over PyTorch's on the same three workloads, and the cost of determinism.
#
#   bench/compare_pytorch.sh [--bench PATH] [--rounds K] [--out DIR] [-- ARGS for both benchmarks]
#
# --bench   the step_bench executable (default: build-bench/bench/step_bench, then build/bench/step_bench)
# --rounds  trainrr and PyTorch run alternately K times (default 3); each figure is the median over rounds,
#           so that a change in the machine's load hits both sides alike
# --out     where the JSON results go (default: a temporary folder, printed)
# ARGS      passed to both: --threads 1,2 --workloads mlp --steps N --reps R --warmup W --min-ms T
#
# PyTorch runs with Debian's /usr/bin/python3 and python3-torch; without it only trainrr's side is printed.
# It runs with OMP_WAIT_POLICY=PASSIVE unless the caller sets OMP_WAIT_POLICY: OpenMP's default spin-waiting
# collapses PyTorch's 2-thread figures (by 5-10x) on a machine that other work loads; passive waiting is the
# stronger baseline there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bench=""
rounds=3
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bench) bench=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "compare_pytorch.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
args=("$@")

if [[ -z "$bench" ]]; then
  for candidate in "$root/build-bench/bench/step_bench" "$root/build/bench/step_bench"; do
    if [[ -x "$candidate" ]]; then bench=$candidate; break; fi
  done
fi
if [[ -z "$bench" || ! -x "$bench" ]]; then
  echo "compare_pytorch.sh: step_bench not found; build it with" >&2
  echo "  cmake -S $root -B $root/build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build $root/build-bench --target step_bench" >&2
  exit 2
fi

python=/usr/bin/python3
have_torch=1
if ! "$python" -c "import torch" 2>/dev/null; then
  have_torch=0
  echo "compare_pytorch.sh: PyTorch is not installed (apt-get install -y python3-torch); trainrr's figures only." >&2
fi

if [[ -z "$out" ]]; then out=$(mktemp -d /tmp/compare_pytorch.XXXXXX); fi
mkdir -p "$out"
echo "# results in $out; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2

for ((r = 1; r <= rounds; r++)); do
  echo "# round $r/$rounds: trainrr" >&2
  "$bench" --json "$out/trainrr.$r.json" "${args[@]}" >&2
  if [[ $have_torch == 1 ]]; then
    echo "# round $r/$rounds: pytorch" >&2
    OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} "$python" "$here/pytorch_step.py" --json "$out/pytorch.$r.json" "${args[@]}" > /dev/null
  fi
done

"$python" - "$out" "$rounds" <<'EOF'
import json, statistics, sys

out, rounds = sys.argv[1], int(sys.argv[2])

def load(engine, field):
    """{(workload, threads, policy): median over rounds of `field`}"""
    table = {}
    for r in range(1, rounds + 1):
        try:
            with open(f"{out}/{engine}.{r}.json") as f:
                results = json.load(f)["results"]
        except FileNotFoundError:
            return {}
        for row in results:
            key = (row["workload"], row["threads"], row.get("policy", "-"))
            table.setdefault(key, []).append(row[field])
    return {k: statistics.median(v) for k, v in table.items()}

target = {"breast_cancer": 0.1, "mlp": 1.0, "convnet": 1.0}

def table(field, title):
    tr, pt = load("trainrr", field), load("pytorch", field)
    keys = sorted({(w, t) for (w, t, _) in tr},
                  key=lambda k: (list(target).index(k[0]) if k[0] in target else 99, k[1]))
    print(title)
    print(f"{'workload':14s} {'thr':>3s} {'trainrr det':>11s} {'trainrr def':>11s} {'pytorch':>9s} "
          f"{'det/pytorch':>11s} {'target':>11s} {'det/def':>7s} {'target':>10s}")
    for w, t in keys:
        det, dflt = tr[(w, t, "deterministic")], tr[(w, t, "default")]
        p = pt.get((w, t, "-"))
        ps = f"{p:9.4f}" if p else f"{'-':>9s}"
        vs = f"{det / p:11.3f}" if p else f"{'-':>11s}"
        ok = ("ok" if det / p <= target.get(w, 1.0) else "MISS") if p else ""
        ok2 = "ok" if det / dflt <= 1.1 else "MISS"
        print(f"{w:14s} {t:3d} {det:11.4f} {dflt:11.4f} {ps} {vs} {'<= ' + str(target.get(w, 1.0)):>6s} {ok:4s}"
              f" {det / dflt:7.3f} <= 1.1 {ok2}")
    print()

table("ms_per_step", "Wall clock, ms per step (median over rounds of the median over repetitions):")
table("cpu_ms_per_step", "CPU time of the whole process, ms per step (with 1 thread: the step's cost whatever "
      "else loads the machine; with 2, PyTorch's OpenMP spin-waiting counts too):")
EOF
