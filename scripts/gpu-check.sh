#!/usr/bin/env bash
# The GPU checks, in one run on a GPU machine: unpacks the bundle that scripts/gpu-bundle.sh built
# (build-gpu/bundle.tar.gz, carried with the working tree), points the loader at the machine's CUDA libraries,
# and runs
#   1. what the machine is: nvidia-smi, and what trainrr's CUDA backend finds (the device probe);
#   2. the CUDA backend's tests (cuda_tests): device Philox against the CPU's, bit for bit, and every test that
#      needs a GPU, which skip elsewhere;
#   3. trainrr on the GPU, end to end: digits_cnn, the bench MLP and conv net recorded on the GPU under each
#      policy, every kernel CUPTI saw attributed to its op;
#      each replayed on the GPU with every choice forced (expected: reproduced), and free (--force none: where
#      the default policy's atomics and heuristics differ, the report names them); and the deterministic
#      recordings replayed on the CPU (--set runtime.device=cpu), which names the first op that differs;
#      the other shipped examples (digits_mlp, digits_bn, breast_cancer) recorded on the GPU, replayed there and
#      on the CPU; then digits_cnn recorded at level op, and show --kernels: the kernels CUPTI saw, per op; and
#      a deterministic level-op recording replayed on the CPU, whose report gives the element and its ULPs;
#   4. the step time of the bench MLP and conv net on the GPU, trainrr (default and deterministic policy) against
#      PyTorch (float32, TF32 off), one after the other on the same machine;
#   5. what gathering the kernels with CUPTI costs a recording at level step (trace_bench --sections kernels).
# Prints a summary, writes everything to $OUT (or build-gpu/gpu-check where OUT is unset) and exits non-zero
# when a check fails. Without a GPU the GPU tests skip and say why.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build-gpu/gpu-check}"
mkdir -p "$out"
log="$out/gpu-check.log"
: > "$log"
say() { echo "$@" | tee -a "$log"; }
started=$(date +%s)

bundle=build-gpu/bundle.tar.gz
if [ ! -f "$bundle" ]; then
  say "gpu-check: $bundle is missing: run scripts/gpu-bundle.sh on the build machine and carry it"
  exit 2
fi
work="$(mktemp -d)"
tar -C "$work" -xzf "$bundle"
bin="$work/bundle/bin"
say "== bundle of commit $(cut -c1-12 "$work/bundle/COMMIT"), this tree at $(git rev-parse --short=12 HEAD 2>/dev/null || echo '?')"

# The Python with PyTorch: python3 on PATH, or a virtual environment's under /opt (where the GPU image keeps it).
py=python3
if ! python3 -c "import torch" >/dev/null 2>&1; then
  for candidate in /opt/*/.venv/bin/python3; do
    [ -x "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1 && { py=$candidate; break; }
  done
fi
say "python: $(command -v "$py" || echo "$py")"
# NVIDIA's libraries: from that Python's wheels (nvidia/<name>/lib) where they are, else the toolkit's.
cuda_libs=""
for dir in $("$py" - <<'PY' 2>/dev/null
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
for root in roots:
    for d in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
        print(d)
PY
) /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib /usr/local/cuda/lib64 /usr/local/cuda/lib; do
  [ -d "$dir" ] || continue
  case ":$cuda_libs:" in *":$dir:"*) ;; *) cuda_libs="$cuda_libs:$dir" ;; esac
done
export LD_LIBRARY_PATH="$work/bundle/lib$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "loader path: $LD_LIBRARY_PATH"

failed=0
say "== 1. the machine"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee -a "$log"
else
  say "nvidia-smi: not installed here"
fi

say "== 2. the CUDA backend's tests"
# Each step has a time limit (timeout exits 124), so that one that hangs leaves the others their time.
timeout 240 "$bin/cuda_tests" --gtest_output="json:$out/cuda_tests.json" > "$out/cuda_tests.txt" 2>&1
rc=$?
grep -E "^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|Skipped|Failure" "$out/cuda_tests.txt" | tee -a "$log"
[ $rc -eq 0 ] || { failed=1; say "cuda_tests: exit $rc (full output: cuda_tests.txt)"; }

say "== 3. trainrr on the GPU, end to end"
e2e_failed=0
e2e() {  # name, expected exit codes (space-separated), command...
  local name=$1 expected=$2; shift 2
  local t0=$(date +%s)
  timeout 90 "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  local ok=0
  for e in $expected; do [ "$rc" = "$e" ] && ok=1; done
  say "-- $name: exit $rc in $(( $(date +%s) - t0 )) s$([ $ok = 1 ] || echo "  (expected $expected)")"
  head -n 12 "$out/$name.txt" | sed 's/^/   /' | tee -a "$log" >/dev/null
  head -n 6 "$out/$name.txt" | sed 's/^/   /'
  [ $ok = 1 ] || e2e_failed=1
}
for run in "digits_cnn:examples/digits_cnn.toml:--set train.epochs=3" "mlp:bench/configs/mlp.toml:--set train.epochs=1" \
           "convnet:bench/configs/convnet.toml:--set train.epochs=1"; do
  name=${run%%:*}; rest=${run#*:}; config=${rest%%:*}; extra=${rest#*:}
  for policy in default deterministic autotune; do
    trace="$out/$name-$policy.trr"
    # shellcheck disable=SC2086
    e2e "record-$name-$policy" 0 "$bin/trainrr" record "$config" --set runtime.device=cuda \
      --set runtime.policy=$policy $extra -o "$trace"
    [ -f "$trace" ] || continue
    e2e "replay-$name-$policy-forced" 0 "$bin/trainrr" replay "$trace"
    e2e "replay-$name-$policy-free" "0 1" "$bin/trainrr" replay "$trace" --force none
  done
  [ -f "$out/$name-deterministic.trr" ] &&
    e2e "replay-$name-gpu-on-cpu" "0 1" "$bin/trainrr" replay "$out/$name-deterministic.trr" --set runtime.device=cpu
  [ -f "$out/$name-default.trr" ] && e2e "show-$name-default" 0 "$bin/trainrr" show "$out/$name-default.trr"
  # Every kernel CUPTI saw is attributed to the op that launched it, and none was dropped.
  if [ -f "$out/show-$name-default.txt" ]; then
    kernels=$(grep -m1 "^GPU kernels:" "$out/show-$name-default.txt")
    say "   $name: ${kernels:-no GPU kernels line in show}"
    case "$kernels" in
      "GPU kernels: "[0-9]*" in "*) echo "$kernels" | grep -q "outside every op\|dropped" && e2e_failed=1 ;;
      *) e2e_failed=1 ;;
    esac
  fi
done
# Autotune recorded twice: where the timings picked other kernels, diff names them and their timings.
if [ -f "$out/digits_cnn-autotune.trr" ]; then
  e2e "record-digits_cnn-autotune-again" 0 "$bin/trainrr" record examples/digits_cnn.toml --set runtime.device=cuda \
    --set runtime.policy=autotune --set train.epochs=3 -o "$out/digits_cnn-autotune-again.trr"
  [ -f "$out/digits_cnn-autotune-again.trr" ] && e2e "diff-digits_cnn-autotune-twice" "0 1" "$bin/trainrr" diff \
    "$out/digits_cnn-autotune.trr" "$out/digits_cnn-autotune-again.trr"
fi
# The other shipped examples: a GPU run (deterministic), its forced replay there, and its replay on the CPU.
for name in digits_mlp digits_bn breast_cancer; do
  trace="$out/$name-gpu.trr"
  e2e "record-$name" 0 "$bin/trainrr" record "examples/$name.toml" --set runtime.device=cuda \
    --set runtime.policy=deterministic -o "$trace"
  [ -f "$trace" ] || continue
  e2e "replay-$name-forced" 0 "$bin/trainrr" replay "$trace"
  e2e "replay-$name-gpu-on-cpu" "0 1" "$bin/trainrr" replay "$trace" --set runtime.device=cpu
done
# The kernels CUPTI saw, attributed to each op (level op keeps each kernel; show --kernels lists them).
e2e "record-digits_cnn-kernels" 0 "$bin/trainrr" record examples/digits_cnn.toml --set runtime.device=cuda \
  --set train.epochs=1 --level op -o "$out/kernels.trr"
[ -f "$out/kernels.trr" ] && e2e "show-kernels-digits_cnn" 0 "$bin/trainrr" show --kernels "$out/kernels.trr"
# A level-op GPU trace replayed on the CPU, here where the GPU is: the recorded side of the divergent step is
# re-executed on the GPU, so the report gives the first element that differs and its distance in ULPs.
e2e "record-digits_cnn-op-deterministic" 0 "$bin/trainrr" record examples/digits_cnn.toml --set runtime.device=cuda \
  --set runtime.policy=deterministic --set train.epochs=1 --level op -o "$out/op-deterministic.trr"
[ -f "$out/op-deterministic.trr" ] && e2e "replay-digits_cnn-op-gpu-on-cpu" "0 1" "$bin/trainrr" replay \
  "$out/op-deterministic.trr" --set runtime.device=cpu
if grep -q "^diverged at step" "$out/replay-digits_cnn-op-gpu-on-cpu.txt" 2>/dev/null; then
  if grep -q "first differing element:.* ULP" "$out/replay-digits_cnn-op-gpu-on-cpu.txt"; then
    say "   the GPU-on-CPU report gives the element and its ULPs:$(grep -m1 "first differing element" "$out/replay-digits_cnn-op-gpu-on-cpu.txt")"
  else
    say "   the GPU-on-CPU report diverged without the element's ULPs (expected them here, where the GPU is)"
    e2e_failed=1
  fi
fi
[ $e2e_failed -eq 0 ] || failed=1
# Traces are large: keep the reports, not the traces.
rm -f "$out"/*.trr

say "== 4. step time on the GPU against PyTorch"
timeout 120 "$bin/step_bench" --device cuda --configs bench/configs --workloads mlp,convnet --threads 1 --reps 3 \
  --json "$out/step_trainrr_gpu.json" 2>&1 | tee -a "$log"
timeout 120 "$py" bench/pytorch_step.py --device cuda --workloads mlp,convnet --threads 1 --reps 3 \
  --json "$out/step_pytorch_gpu.json" > /dev/null 2>> "$log"
python3 - "$out/step_trainrr_gpu.json" "$out/step_pytorch_gpu.json" <<'PY' 2>&1 | tee -a "$log"
import json, sys
try:
    mine = json.load(open(sys.argv[1]))["results"]
    torch = {r["workload"]: r["ms_per_step"] for r in json.load(open(sys.argv[2]))["results"]}
except (OSError, ValueError, KeyError) as e:
    sys.exit(f"step time: no comparison ({e})")
for r in mine:
    t = torch.get(r["workload"])
    if t:
        print(f"{r['workload']:8s} {r['policy']:13s} trainrr {r['ms_per_step']:8.4f} ms/step, "
              f"PyTorch {t:8.4f} ms/step, ratio {r['ms_per_step'] / t:.3f}")
PY

say "== 5. what gathering the kernels with CUPTI costs a recording (level step), on the GPU"
timeout 150 "$bin/trace_bench" --sections kernels --device cuda --configs bench/configs --reps 5 --min-ms 300 \
  --work "$work/trace_bench" > "$out/trace_bench_kernels.txt" 2>&1
rc=$?
grep -v "^trace_bench: traces in" "$out/trace_bench_kernels.txt" | tee -a "$log"
[ $rc -eq 0 ] || { failed=1; say "trace_bench: exit $rc"; }

say "== summary"
# gtest's own totals: "[  PASSED  ] N tests.", "[  SKIPPED ] N tests, listed below:", "N FAILED TESTS".
count() { local n; n=$(sed -n "s/$1/\1/p" "$out/cuda_tests.txt" | tail -n 1); echo "${n:-0}"; }
say "cuda_tests: $(count '^\[  PASSED  \] \([0-9]*\) test.*') passed, $(count '^\[  SKIPPED \] \([0-9]*\) test.*') skipped," \
  "$(count '^ *\([0-9]*\) FAILED TEST.*') failed; wall $(( $(date +%s) - started )) s"
rm -rf "$work"
exit $failed
