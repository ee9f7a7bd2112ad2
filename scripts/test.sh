#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with ctest (the HTML report's
# rendering in headless Chromium among them: build/report-render holds its screenshots); then the suite again
# under AddressSanitizer and UndefinedBehaviorSanitizer, and the fuzzers of the trace and data readers and of
# the replay's set-up from an untrusted trace, each for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
TRAINRR_WITH_FUZZ=1 TRAINRR_WITH_BROWSER=1 TRAINRR_WITH_QEMU=1 TRAINRR_WITH_MPI=1 TRAINRR_WITH_PYTHON=1 TRAINRR_WITH_STRACE=1 \
  scripts/install-deps.sh
jobs=$(nproc)

echo "== build and test (Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# With clang: GCC 12 takes several times as long to compile the sanitizers' instrumentation at -O3.
echo "== build and test under ASan and UBSan (clang 14)"
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Release \
  -DTRAINRR_SANITIZE=ON -DTRAINRR_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== fuzz the trace reader, the data readers and the replay's set-up (${TRAINRR_FUZZ_SECONDS:-60} s each)"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DTRAINRR_FUZZ=ON -DBUILD_TESTING=OFF -DTRAINRR_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-fuzz -j"$jobs" --target trace_reader_fuzz data_reader_fuzz replay_setup_fuzz
corpus=build-fuzz/corpus
mkdir -p "$corpus"
TRAINRR_FUZZ_CORPUS="$PWD/$corpus" build/traces_tests --gtest_filter='TraceFuzzCorpus.*' >/dev/null
build-fuzz/traces/trace_reader_fuzz "$corpus" -max_total_time="${TRAINRR_FUZZ_SECONDS:-60}" -rss_limit_mb=2048 \
  -print_final_stats=1 2>&1 | tail -n 12
# New inputs go to the first folder (a scratch copy); the shipped seeds stay as they are.
data_corpus=build-fuzz/data-corpus
mkdir -p "$data_corpus"
build-fuzz/data_reader_fuzz "$data_corpus" engine/data/fuzz_corpus -max_total_time="${TRAINRR_FUZZ_SECONDS:-60}" \
  -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 5
# An untrusted trace's header through rebuild_config and the replay's set-up, in a sandbox folder that must
# hold afterwards exactly what it held before.
replay_corpus=build-fuzz/replay-corpus
mkdir -p "$replay_corpus"
# It works in a sandbox folder of its own, so every path it is given is absolute.
build-fuzz/replay_setup_fuzz "$PWD/$replay_corpus" "$PWD/replayer/fuzz_corpus" -artifact_prefix="$PWD/build-fuzz/" \
  -max_total_time="${TRAINRR_FUZZ_SECONDS:-60}" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 5
echo "all stages passed"
