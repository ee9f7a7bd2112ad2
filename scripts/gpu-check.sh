#!/usr/bin/env bash
# The GPU checks, in one run on a GPU machine: unpacks the bundle that scripts/gpu-bundle.sh built
# (build-gpu/bundle.tar.gz), points trainrr's binaries at the machine's CUDA libraries (NVIDIA's Python wheels
# there), and runs, most informative first, each section only while time is left:
#   machine  nvidia-smi, and where cuBLASLt, cuDNN, CUPTI and NVRTC are found;
#   tests    the CUDA backend's tests (cuda_tests): every device op against the CPU's, device Philox bit for bit,
#            cuDNN's engines, CUPTI. On a GPU machine a test that skips for any reason but the GPU or its driver
#            being there (e.g. "no GPU here", "cuDNN does not load", another CUPTI version) fails the check;
#   e2e      digits_cnn, the bench MLP and conv net (1 epoch each) recorded on the GPU under the deterministic and
#            the default policy and replayed there with every choice forced, and the default recording shown
#            (every kernel CUPTI saw attributed to its op, none dropped). Deterministic: the replay must
#            reproduce (exit 0). Default: exit 0, or exit 1 only where the report's cause names a kernel or an
#            order that is declared nondeterministic (atomicAdd reductions, cuDNN engines with
#            CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC: forcing the kernel cannot force the order threads arrive in);
#   cpu      GPU against CPU: digits_cnn recorded at level op (deterministic) and replayed on the CPU, whose report
#            must give the first differing element and its ULPs where it diverges; show --kernels of it; the MLP's
#            and conv net's deterministic recordings replayed on the CPU;
#   autotune the three recorded under autotune and replayed forced (exit 0, or 1 with a declared-nondeterministic
#            cause); digits_cnn's default and autotune recordings replayed free (--force none); digits_cnn
#            recorded under autotune again and diffed with the first;
#   examples digits_mlp, digits_bn and breast_cancer (short) recorded on the GPU (deterministic), replayed forced
#            there (exit 0) and on the CPU;
#   step     step time of the bench MLP and conv net: trainrr on the GPU (default, deterministic), PyTorch on the
#            same GPU (float32, TF32 off; run without the bundle's libraries on its loader path), and trainrr on
#            this machine's CPU;
#   cupti    what gathering the kernels with CUPTI costs a recording at level step (trace_bench --sections
#            kernels, 3 repetitions).
#
# The device call (the bundle is git-ignored, so it travels only when carry names it):
#   scripts/gpu-bundle.sh      # here, on the build machine, at the commit to test; then check:
#   ls -la build-gpu/bundle.tar.gz
#   run(command="bash scripts/gpu-check.sh", carry=["build-gpu/bundle.tar.gz"], timeout_s=540)
# and give_back right after, unless rerunning at once. The script stops starting work at its deadline
# (GPU_CHECK_DEADLINE_S, default 480 s after it starts; every command's own time limit is cut to what is left),
# so it ends well inside timeout_s=540. Where status's budget_left_s allows, a rerun of part of it on the still
# warm machine, e.g. the tests alone with a narrower filter: command="GPU_CHECK_SECTIONS=machine,tests
# GTEST_FILTER='CudnnConv*' GPU_CHECK_DEADLINE_S=200 bash scripts/gpu-check.sh", same carry, timeout_s=260.
#
# What comes back (the device machine returns at most 8 files from $OUT), written as the run goes, so that a
# run killed at its timeout still returns what it did:
#   $OUT/gpu-check.log      every check's line (passed / FAILED / skipped: why), the head of each report, the
#                           summary;
#   $OUT/cuda_tests.txt     cuda_tests' whole output (gtest's failure messages);
#   $OUT/details.tar.gz     every command's whole output, cuda_tests.json, the step-time JSONs and results.tsv
#                           (check, status, seconds, detail); replaced after every check (a kill while it is
#                           rewritten may leave details.tar.gz.part beside the last whole one).
# Without OUT they go to build-gpu/gpu-check.
#
# Environment:
#   GPU_CHECK_DEADLINE_S  seconds from the start after which no command starts and running ones are cut (480)
#   GPU_CHECK_SECTIONS    comma-separated sections to run (default: all, in the order above)
#   GPU_CHECK_DRY_RUN=1   no GPU needed: the same control flow, deadline and output packaging with the bundle's
#                         binaries on this machine's CPU (runtime.device=cpu). GPU-only checks are reported
#                         "not checked (dry run)"; nothing it prints is a GPU result.
#   GTEST_FILTER          passed on to cuda_tests by gtest itself
# Exit: 0 every check ran and passed; 1 a check failed; 2 it could not start (no bundle, or no GPU and no dry
# run); 3 nothing failed, but some checks were skipped (out of time, cut by the deadline, no PyTorch).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
started=$(date +%s)
deadline_s=${GPU_CHECK_DEADLINE_S:-480}
deadline=$((started + deadline_s))
dry=${GPU_CHECK_DRY_RUN:-0}
sections=${GPU_CHECK_SECTIONS:-all}
out="${OUT:-build-gpu/gpu-check}"
mkdir -p "$out"
log="$out/gpu-check.log"
: > "$log"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
details="$work/gpu-check-details"  # every command's output; packed into $out/details.tar.gz
traces="$work/traces"               # traces stay here: they are large, and only the reports come back
mkdir -p "$details" "$traces"
: > "$details/results.tsv"

say() { printf '%s\n' "$*" | tee -a "$log"; }
left() { echo $((deadline - $(date +%s))); }
# The details tarball, written beside and renamed over the last one, so that a kill leaves a whole one.
pack() {
  tar -C "$work" -czf "$out/details.tar.gz.part" gpu-check-details 2>/dev/null &&
    mv -f "$out/details.tar.gz.part" "$out/details.tar.gz"
}
# shellcheck disable=SC2317  # run by the trap
cleanup() { pack; rm -rf "$work"; }
trap cleanup EXIT
trap 'say "gpu-check: stopped by a signal after $(( $(date +%s) - started )) s"; exit 143' TERM INT

passed=0 failed=0 skipped=0 unchecked=0
failed_names="" skipped_names=""
record_result() {  # check, status, seconds, detail
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$details/results.tsv"
}
pass() { passed=$((passed + 1)); record_result "$1" passed "${3:-}" "${2:-}"; say "-- $1: passed${2:+ ($2)}"; }
fail() {
  failed=$((failed + 1)); failed_names="$failed_names $1"; record_result "$1" FAILED "${3:-}" "${2:-}"
  say "-- $1: FAILED${2:+ ($2)}"
}
skip() {
  skipped=$((skipped + 1)); skipped_names="$skipped_names $1"; record_result "$1" skipped "" "$2"
  say "-- $1: skipped: $2"
}
unchecked() { unchecked=$((unchecked + 1)); record_result "$1" "not checked" "" "$2"; say "-- $1: not checked ($2)"; }
selected() { [ "$sections" = all ] || case ",$sections," in *",$1,"*) ;; *) return 1 ;; esac; }
section() {  # name, title: 0 when the section is to run
  if ! selected "$1"; then say "== $1: not selected (GPU_CHECK_SECTIONS=$sections)"; return 1; fi
  say "== $1: $2 ($(left) s left)"
}

# The cause replay gives a divergence where a kernel adds in the order its threads arrive (replayer/cause.cc:
# gpu_nondeterminism and classify): "... (declared nondeterministic ...)" for atomicAdd sums and kernels
# registered as nondeterministic, "cuDNN engine N is declared nondeterministic (CUDNN_NUMERICAL_NOTE_...)".
nondeterministic_cause='^  cause: numeric: .*(\(declared nondeterministic|is declared nondeterministic \(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC\))'
# check NAME NEED LIMIT EXPECT COMMAND...: runs COMMAND (its output to details/NAME.txt) when at least NEED
# seconds are left, for at most LIMIT seconds or what is left. EXPECT lists the exit codes that pass; "1nd"
# passes exit 1 only where the report's cause names a kernel or order declared nondeterministic.
# Returns 0 passed, 1 failed, 2 skipped or cut for time.
check() {
  local name=$1 need=$2 limit=$3 expect=$4
  shift 4
  local l cap cut=0
  l=$(left)
  if [ "$l" -lt "$need" ]; then skip "$name" "out of time ($l s left, needs about $need)"; pack; return 2; fi
  cap=$limit
  [ "$l" -lt "$limit" ] && { cap=$l; cut=1; }
  local t0 rc dt file="$details/$name.txt"
  t0=$(date +%s)
  timeout -k 5 "$cap" "$@" > "$file" 2>&1
  rc=$?
  dt=$(($(date +%s) - t0))
  local ok=0 how="" e
  for e in $expect; do
    case $e in
      1nd)
        if [ "$rc" = 1 ] && grep -qE "$nondeterministic_cause" "$file"; then
          ok=1
          how="exit 1: diverged, and the cause is a kernel declared nondeterministic"
        fi ;;
      *) [ "$rc" = "$e" ] && ok=1 ;;
    esac
  done
  local status
  if [ $ok = 1 ]; then
    pass "$name" "${how:-exit $rc}, $dt s" "$dt"; status=0
  elif { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ $cut = 1 ]; then
    skip "$name" "out of time: cut by the deadline after $dt s (it may hang: its output so far is in the details)"
    status=2
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    fail "$name" "timed out after its limit of $limit s (exit $rc)" "$dt"; status=1
  else
    fail "$name" "exit $rc in $dt s, expected ${expect// 1nd/, or 1 with a declared-nondeterministic cause}" "$dt"; status=1
  fi
  [ -n "$how" ] && grep -m1 "^  cause: " "$file" | sed 's/^ */   /' | tee -a "$log"
  # The head of each report (and a long one's tail) to the log; a failure's head to the output too.
  if [ "$(wc -l < "$file")" -le 14 ]; then
    cut -c1-400 "$file" | sed 's/^/   | /' >> "$log"
  else
    { head -n 8 "$file"; echo "..."; tail -n 4 "$file"; } | cut -c1-400 | sed 's/^/   | /' >> "$log"
  fi
  [ $status = 1 ] && head -n 8 "$file" | cut -c1-300 | sed 's/^/   | /'
  pack
  return $status
}
# needs NAME FILE...: skips NAME (0 returned: skipped) where a file it needs was not made.
missing() {
  local name=$1 f
  shift
  for f in "$@"; do
    [ -f "$f" ] || { skip "$name" "$(basename "$f") was not made (see the check that records it)"; return 0; }
  done
  return 1
}

# -- Setup: the bundle, the GPU (or a dry run), the libraries.
bundle=build-gpu/bundle.tar.gz
cannot=""
if [ ! -f "$bundle" ]; then
  cannot="$bundle is missing. It is git-ignored, so the device call must carry it: build it here with
  scripts/gpu-bundle.sh, check it with ls -la build-gpu/bundle.tar.gz, then call
  run(command=\"bash scripts/gpu-check.sh\", carry=[\"build-gpu/bundle.tar.gz\"], timeout_s=540)"
fi
gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then gpu=1
elif [ -e /dev/nvidia0 ]; then gpu=1  # a device node, but nvidia-smi missing or failing: the tests will say more
fi
dry_note=""
if [ "$dry" = 1 ]; then
  dev=cpu
  dry_note="on the CPU, the GPU tests skip; no GPU result"
  say "gpu-check: DRY RUN (GPU_CHECK_DRY_RUN=1): trainrr runs on this machine's CPU; no result here is a GPU's"
elif [ $gpu = 1 ]; then
  dev=cuda
else
  cannot="${cannot:+$cannot
}no GPU here (nvidia-smi is missing or lists none). This check is for the device machine; to exercise its
  control flow and output here, run GPU_CHECK_DRY_RUN=1 bash scripts/gpu-check.sh"
fi
if [ -n "$cannot" ]; then
  say "gpu-check: cannot start: $cannot"
  exit 2
fi
say "gpu-check: deadline ${deadline_s} s (GPU_CHECK_DEADLINE_S), sections: $sections, device: $dev"

tar -C "$work" -xzf "$bundle" || { say "gpu-check: cannot unpack $bundle"; exit 2; }
bin="$work/bundle/bin"
bundle_commit=$(cut -c1-40 "$work/bundle/COMMIT" 2>/dev/null || echo unknown)
tree_commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
say "bundle of commit ${bundle_commit:0:12}, this tree at ${tree_commit:0:12}"
[ -f "$work/bundle/DIRTY" ] && say "WARNING: the bundle was built from a tree with uncommitted changes to:" &&
  sed 's/^/   /' "$work/bundle/DIRTY" | tee -a "$log"
if [ "$bundle_commit" != "$tree_commit" ] && [ "$bundle_commit" != unknown ] && [ "$tree_commit" != unknown ]; then
  if ! git cat-file -e "$bundle_commit^{commit}" 2>/dev/null; then
    say "WARNING: the bundle's commit is not in this tree's history: the binaries may not be this tree's code"
  elif ! git diff --quiet "$bundle_commit" HEAD -- . ':(exclude)scripts' ':(exclude)docs' ':(exclude)*.md'; then
    say "WARNING: the code differs between the bundle's commit and this tree: rebuild the bundle (scripts/gpu-bundle.sh)"
  fi
fi

# The Python with PyTorch: python3 on PATH, or a virtual environment's under /opt (where the GPU image keeps it).
py=python3
if ! python3 -c "import torch" >/dev/null 2>&1; then
  py=""
  for candidate in /opt/*/.venv/bin/python3; do
    [ -x "$candidate" ] && "$candidate" -c "import torch" >/dev/null 2>&1 && { py=$candidate; break; }
  done
fi
say "python with PyTorch: ${py:-none}"
# NVIDIA's libraries: from the Python wheels (nvidia/<name>/lib) where they are, else the toolkit's. Only the
# bundle's binaries get them and the bundle's own libraries on their loader path (ld); Python runs without.
cuda_libs=""
for dir in $("${py:-python3}" - <<'PY' 2>/dev/null
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
ld="$work/bundle/lib$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
say "loader path of the bundle's binaries: $ld"
B=(env "LD_LIBRARY_PATH=$ld")  # prefix of every command that runs a bundle binary
trainrr=("${B[@]}" "$bin/trainrr")

# -- machine
if section machine "what the machine is"; then
  if [ $gpu = 1 ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee -a "$log"
  else
    say "nvidia-smi: no GPU listed"
  fi
  for lib in libcublasLt.so.13 libcudnn.so.9 libcupti.so.13 libnvrtc.so.13; do
    where=""
    IFS=: read -ra dirs <<< "${cuda_libs#:}"
    for d in "${dirs[@]}"; do [ -e "$d/$lib" ] && { where="$d/$lib"; break; }; done
    say "$lib: ${where:-not found on the loader path (the ldconfig cache may still have it)}"
  done
  say "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
  pack
fi

# -- tests
tests_ran=0
if section tests "the CUDA backend's tests (cuda_tests)"; then
  l=$(left)
  if [ "$l" -lt 60 ]; then
    skip cuda_tests "out of time ($l s left, needs about 60)"
  else
    cap=210; [ "$l" -lt $cap ] && cap=$l
    t0=$(date +%s)
    # Straight to $out: gtest's failure messages are the first thing the next session needs.
    timeout -k 5 "$cap" "${B[@]}" "$bin/cuda_tests" --gtest_output="json:$details/cuda_tests.json" \
      > "$out/cuda_tests.txt" 2>&1
    rc=$?
    dt=$(($(date +%s) - t0))
    tests_ran=1
    cp "$out/cuda_tests.txt" "$details/cuda_tests.txt"
    grep -E "^\[ *(OK|FAILED|SKIPPED) *\]" "$out/cuda_tests.txt" >> "$log"
    grep -E "^\[  FAILED  \]" "$out/cuda_tests.txt" | sort -u
    # The skips and their reasons, from gtest's output: "[ RUN ] T", "file:line: Skipped", the reason's lines,
    # "[  SKIPPED ] T (N ms)" (its JSON keeps no reason).
    python3 - "$out/cuda_tests.txt" > "$details/cuda_tests_skips.txt" <<'PY'
import re, sys
why = None
for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip("\n")
    if line.startswith("[ RUN      ]"):
        why = None
    elif why is None and re.search(r":\d+: Skipped$", line):
        why = []
    elif line.startswith("[  SKIPPED ] ") and line.endswith(" ms)"):
        test = line[len("[  SKIPPED ] "):].rsplit(" (", 1)[0]
        print(f"{test}\t{' '.join(w for w in (why or []) if w) or '(no reason given)'}")
        why = None
    elif why is not None:
        why.append(line.strip())
PY
    # On a GPU machine, the only skips expected are of the tests written for machines without one.
    unexpected=""
    if [ $gpu = 1 ] && [ "$dry" != 1 ] && [ -f "$details/cuda_tests_skips.txt" ]; then
      unexpected=$(grep -v -e "a GPU is here" -e "this machine has a CUDA driver" "$details/cuda_tests_skips.txt")
    fi
    nskip=$(grep -c . "$details/cuda_tests_skips.txt" 2>/dev/null)
    if [ $rc = 0 ] && [ -n "$unexpected" ]; then
      fail cuda_tests "exit 0, but $(printf '%s\n' "$unexpected" | grep -c .) tests skipped on the GPU machine" "$dt"
      printf '%s\n' "$unexpected" | head -n 20 | sed 's/^/   skipped: /' | tee -a "$log"
    elif [ $rc = 0 ]; then
      pass cuda_tests "exit 0 in $dt s, ${nskip:-?} skipped${dry_note:+: $dry_note}" "$dt"
    elif { [ $rc = 124 ] || [ $rc = 137 ]; } && [ "$cap" -lt 210 ]; then
      skip cuda_tests "out of time: cut by the deadline after $dt s; last test started: $(grep '^\[ RUN' "$out/cuda_tests.txt" | tail -n 1)"
    elif [ $rc = 124 ] || [ $rc = 137 ]; then
      fail cuda_tests "timed out after 210 s; last test started: $(grep '^\[ RUN' "$out/cuda_tests.txt" | tail -n 1)" "$dt"
    else
      fail cuda_tests "exit $rc in $dt s (whole output: cuda_tests.txt)" "$dt"
    fi
    [ $rc = 0 ] || [ -z "$unexpected" ] ||
      printf '%s\n' "$unexpected" | head -n 20 | sed 's/^/   skipped: /' | tee -a "$log"
    if [ -s "$details/cuda_tests_skips.txt" ]; then
      say "   skip reasons (count, reason):"
      cut -f2 "$details/cuda_tests_skips.txt" | sort | uniq -c | sort -rn | head -n 5 | cut -c1-240 | tee -a "$log"
    fi
  fi
  pack
fi

# -- e2e
configs=(digits_cnn mlp convnet)
config_file() {
  case $1 in digits_cnn) echo examples/digits_cnn.toml ;; *) echo "bench/configs/$1.toml" ;; esac
}
record() {  # check name, config name, policy, trace, extra args...: a recording on $dev, 1 epoch
  local name=$1 config=$2 policy=$3 trace=$4
  shift 4
  check "$name" 20 90 0 "${trainrr[@]}" record "$(config_file "$config")" --set "runtime.device=$dev" \
    --set "runtime.policy=$policy" --set train.epochs=1 "$@" -o "$trace"
}
attribution() {  # check name, show's report: every kernel CUPTI saw attributed to an op, none dropped
  local name=$1 file=$2 kernels
  if [ "$dev" != cuda ]; then unchecked "$name" "dry run: a CPU trace has no GPU kernels"; return; fi
  kernels=$(grep -m1 "^GPU kernels:" "$file")
  case "$kernels" in
    "GPU kernels: 0 "*) fail "$name" "no kernel recorded: $kernels" ;;
    "GPU kernels: "[0-9]*" in "*)
      if printf '%s' "$kernels" | grep -q "outside every op\|dropped"; then fail "$name" "$kernels"
      else pass "$name" "$kernels"; fi ;;
    *) fail "$name" "show gave no count of GPU kernels: ${kernels:-no 'GPU kernels:' line}" ;;
  esac
}
if section e2e "trainrr on the GPU, end to end: record, forced replay, kernel attribution"; then
  for c in "${configs[@]}"; do
    t="$traces/$c-deterministic.trr"
    record "record-$c-deterministic" "$c" deterministic "$t"
    missing "replay-$c-deterministic-forced" "$t" ||
      check "replay-$c-deterministic-forced" 20 90 0 "${trainrr[@]}" replay "$t"
    t="$traces/$c-default.trr"
    record "record-$c-default" "$c" default "$t"
    missing "replay-$c-default-forced" "$t" ||
      check "replay-$c-default-forced" 20 90 "0 1nd" "${trainrr[@]}" replay "$t"
    if ! missing "show-$c-default" "$t" && check "show-$c-default" 5 30 0 "${trainrr[@]}" show "$t"; then
      attribution "kernels-attributed-$c" "$details/show-$c-default.txt"
    fi
  done
fi

# -- cpu
if section cpu "the GPU's recordings replayed on the CPU"; then
  t="$traces/digits_cnn-op-deterministic.trr"
  record record-digits_cnn-op-deterministic digits_cnn deterministic "$t" --level op
  if ! missing replay-digits_cnn-op-on-cpu "$t" &&
     check replay-digits_cnn-op-on-cpu 20 90 "0 1" "${trainrr[@]}" replay "$t" --set runtime.device=cpu; then
    f="$details/replay-digits_cnn-op-on-cpu.txt"
    if [ "$dev" != cuda ]; then
      unchecked element-and-ulps "dry run: the GPU side is re-executed only where the GPU is"
    elif grep -q "^diverged at step" "$f"; then
      if grep -q "first differing element:.* ULP" "$f"; then
        pass element-and-ulps "$(grep -m1 "first differing element" "$f" | sed 's/^ *//')"
      else
        fail element-and-ulps "diverged without the element and its ULPs (expected here, where the GPU is)"
      fi
    else
      unchecked element-and-ulps "the CPU replay did not diverge at a step: $(head -n 1 "$f")"
    fi
  fi
  if ! missing show-kernels-digits_cnn "$t" &&
     check show-kernels-digits_cnn 5 30 0 "${trainrr[@]}" show --kernels "$t"; then
    f="$details/show-kernels-digits_cnn.txt"
    if [ "$dev" != cuda ]; then
      unchecked kernels-listed-digits_cnn "dry run: a CPU trace has no GPU kernels"
    elif ! grep -q "Time(%)" "$f" ||
         grep -q "holds no GPU kernel records\|no kernel launches recorded\|outside every op\|CUPTI dropped" "$f"; then
      fail kernels-listed-digits_cnn "$(head -n 2 "$f" | paste -sd' ' -)"
    else
      pass kernels-listed-digits_cnn "$(head -n 1 "$f" | sed 's/^.*: //'), $(sed -n '/Time(%)/,$p' "$f" |
        grep -c '^ *[0-9]') rows of op, kernel and launch shape"
    fi
  fi
  for c in mlp convnet; do
    t="$traces/$c-deterministic.trr"
    missing "replay-$c-deterministic-on-cpu" "$t" ||
      check "replay-$c-deterministic-on-cpu" 20 90 "0 1" "${trainrr[@]}" replay "$t" --set runtime.device=cpu
  done
fi

# -- autotune
if section autotune "autotune, free replays, autotune twice"; then
  for c in "${configs[@]}"; do
    t="$traces/$c-autotune.trr"
    record "record-$c-autotune" "$c" autotune "$t"
    missing "replay-$c-autotune-forced" "$t" ||
      check "replay-$c-autotune-forced" 20 90 "0 1nd" "${trainrr[@]}" replay "$t"
  done
  # Free: where the heuristics, timings or atomics differ, the report names them.
  for p in default autotune; do
    t="$traces/digits_cnn-$p.trr"
    missing "replay-digits_cnn-$p-free" "$t" ||
      check "replay-digits_cnn-$p-free" 20 90 "0 1" "${trainrr[@]}" replay "$t" --force none
  done
  t="$traces/digits_cnn-autotune-again.trr"
  record record-digits_cnn-autotune-again digits_cnn autotune "$t"
  missing diff-digits_cnn-autotune-twice "$t" "$traces/digits_cnn-autotune.trr" ||
    check diff-digits_cnn-autotune-twice 10 60 "0 1" "${trainrr[@]}" diff "$traces/digits_cnn-autotune.trr" "$t"
fi

# -- examples
if section examples "the other shipped examples"; then
  for run in digits_mlp:2 digits_bn:1 breast_cancer:2; do
    name=${run%%:*} epochs=${run#*:}
    t="$traces/$name-deterministic.trr"
    check "record-$name" 20 90 0 "${trainrr[@]}" record "examples/$name.toml" --set "runtime.device=$dev" \
      --set runtime.policy=deterministic --set "train.epochs=$epochs" -o "$t"
    missing "replay-$name-forced" "$t" || check "replay-$name-forced" 20 90 0 "${trainrr[@]}" replay "$t"
    missing "replay-$name-on-cpu" "$t" ||
      check "replay-$name-on-cpu" 20 90 "0 1" "${trainrr[@]}" replay "$t" --set runtime.device=cpu
  done
fi
rm -rf "$traces"

# -- step
if section step "step time: trainrr on the GPU, PyTorch on the GPU, trainrr on the CPU"; then
  j="$details/step_trainrr_$dev.json"
  check "step-trainrr-$dev" 45 120 0 "${B[@]}" "$bin/step_bench" --device "$dev" --configs bench/configs \
    --workloads mlp,convnet --threads 1 --reps 3 --min-ms 200 --json "$j"
  if [ -z "$py" ]; then
    skip step-pytorch "no Python with PyTorch here"
  else
    # PyTorch with the machine's own libraries: the bundle's (Debian's) are on no loader path of its.
    check "step-pytorch-$dev" 45 100 0 "$py" bench/pytorch_step.py --device "$dev" --workloads mlp,convnet \
      --threads 1 --reps 3 --min-ms 200 --json "$details/step_pytorch_$dev.json"
  fi
  cores=$(nproc); [ "$cores" -gt 16 ] && cores=16
  if [ "$dev" = cuda ]; then
    check step-trainrr-cpu 40 90 0 "${B[@]}" "$bin/step_bench" --device cpu --configs bench/configs \
      --workloads mlp,convnet --threads "$cores" --reps 3 --min-ms 200 --json "$details/step_trainrr_cpu.json"
  fi
  python3 - "$dev" "$details/step_trainrr_$dev.json" "$details/step_pytorch_$dev.json" \
    "$details/step_trainrr_cpu.json" <<'PY' 2>&1 | tee -a "$log"
import json, sys
def rows(path):
    try:
        return json.load(open(path))["results"]
    except (OSError, ValueError, KeyError):
        return []
dev, mine, torch, cpu = sys.argv[1], rows(sys.argv[2]), rows(sys.argv[3]), rows(sys.argv[4])
if not mine:
    sys.exit("step time: no trainrr results to compare")
torch = {r["workload"]: r["ms_per_step"] for r in torch}
cpu = {(r["workload"], r["policy"]): r for r in cpu if dev == "cuda"}
for r in mine:
    line = f"{r['workload']:8s} {r['policy']:13s} trainrr ({dev}) {r['ms_per_step']:8.4f} ms/step"
    t = torch.get(r["workload"])
    line += f", PyTorch {t:8.4f}, ratio {r['ms_per_step'] / t:.3f}" if t else ", no PyTorch figure"
    c = cpu.get((r["workload"], r["policy"]))
    if c:
        line += f"; trainrr on the CPU ({c['threads']} threads) {c['ms_per_step']:8.4f}, GPU speedup {c['ms_per_step'] / r['ms_per_step']:.2f}x"
    print(line)
PY
  pack
fi

# -- cupti
if section cupti "what gathering the kernels with CUPTI costs a recording (level step)"; then
  if [ "$dev" != cuda ]; then
    unchecked trace_bench-kernels "dry run: the section needs a GPU"
  elif check trace_bench-kernels 90 150 0 "${B[@]}" "$bin/trace_bench" --sections kernels --device cuda \
         --configs bench/configs --reps 3 --min-ms 150 --trainrr "$bin/trainrr" --work "$work/trace_bench"; then
    grep -v "^trace_bench: traces in" "$details/trace_bench-kernels.txt" | tail -n 20 | tee -a "$log"
  fi
fi

# -- summary
say "== summary"
count() { local n; n=$(sed -n "s/$1/\1/p" "$out/cuda_tests.txt" 2>/dev/null | tail -n 1); echo "${n:-0}"; }
[ $tests_ran = 1 ] &&
  say "cuda_tests: $(count '^\[  PASSED  \] \([0-9]*\) test.*') passed, $(count '^\[  SKIPPED \] \([0-9]*\) test.*') skipped," \
    "$(count '^ *\([0-9]*\) FAILED TEST.*') failed"
say "checks: $passed passed, $failed failed, $skipped skipped or cut for time, $unchecked not checked;" \
  "wall $(($(date +%s) - started)) s of a ${deadline_s} s deadline${dry_note:+; DRY RUN: $dry_note}"
[ -n "$failed_names" ] && say "failed:$failed_names"
[ -n "$skipped_names" ] && say "skipped:$skipped_names"
files=""
for f in "$out"/*; do case $f in *.part) ;; *) files="$files ${f##*/}" ;; esac; done
say "files in ${out}:$files (details.tar.gz: every command's output, results.tsv)"
if [ $failed -gt 0 ]; then exit 1; fi
if [ $skipped -gt 0 ]; then exit 3; fi
exit 0
