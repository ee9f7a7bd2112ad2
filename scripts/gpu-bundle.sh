#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine, here, and packs it into build-gpu/bundle.tar.gz:
# trainrr, the CUDA backend's tests (cuda_tests) and the benchmarks of step time (step_bench) and of CUPTI's cost to a
# recording (trace_bench --sections kernels), with every shared library they need from this machine
# except the C library, libstdc++ and libgcc, which the GPU machine has. The CUDA runtime is linked in
# statically; cuBLASLt and cuDNN are opened at run time from the GPU machine's own CUDA libraries (NVIDIA's Python
# wheels there), so none of NVIDIA's libraries travel. The GPU machine has no package archive: this is how the
# project's dependencies (Cap'n Proto, OpenBLAS, toml++, ...) get there.
#
#   scripts/gpu-bundle.sh        then, on the GPU machine, the device call (build-gpu/ is git-ignored, so the
#                                bundle travels only where carry names it):
#   run(command="bash scripts/gpu-check.sh", carry=["build-gpu/bundle.tar.gz"], timeout_s=540)
# Build it at the commit to test: gpu-check.sh warns where the code differs between the bundle's commit and the
# tree it runs in, and where the bundle was built from uncommitted changes (listed in bundle/DIRTY).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

echo "== build trainrr with the CUDA backend (build-gpu)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTRAINRR_CUDA=ON -DTRAINRR_PYTHON=OFF -DTRAINRR_BENCH=ON \
  -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null
cmake --build build-gpu -j"$jobs" --target trainrr cuda_tests step_bench trace_bench

echo "== pack build-gpu/bundle.tar.gz"
stage=build-gpu/bundle
rm -rf "$stage" build-gpu/bundle.tar.gz
mkdir -p "$stage/bin" "$stage/lib"
cp build-gpu/trainrr build-gpu/cuda_tests build-gpu/bench/step_bench build-gpu/bench/trace_bench "$stage/bin/"
# Every library the binaries load, but the C runtime's own, which must be the GPU machine's.
for bin in "$stage"/bin/*; do
  ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
git rev-parse HEAD > "$stage/COMMIT" 2>/dev/null || echo unknown > "$stage/COMMIT"
# Uncommitted changes to the code (scripts and docs aside) make the commit a wrong name for what was built.
dirty=$(git status --porcelain --untracked-files=no -- . ':(exclude)scripts' ':(exclude)docs' ':(exclude)*.md' \
  2>/dev/null || true)
[ -z "$dirty" ] || printf '%s\n' "$dirty" > "$stage/DIRTY"
tar -C build-gpu -czf build-gpu/bundle.tar.gz bundle
echo "bundle: $(du -h build-gpu/bundle.tar.gz | cut -f1) ($(find "$stage/lib" -type f | wc -l) libraries), commit $(cut -c1-12 "$stage/COMMIT")${dirty:+, with uncommitted changes (bundle/DIRTY)}"
# The working tree and the carried bundle travel together, 64 MiB at most.
tree_kb=$(git ls-files -z | du -ck --files0-from=- 2>/dev/null | tail -n 1 | cut -f1)
bundle_kb=$(du -k build-gpu/bundle.tar.gz | cut -f1)
if [ $((tree_kb + bundle_kb)) -gt $((64 * 1024)) ]; then
  echo "gpu-bundle: the bundle (${bundle_kb} KiB) and the tracked files (${tree_kb} KiB) exceed the 64 MiB a device call carries" >&2
  exit 1
fi
echo "then: run(command=\"bash scripts/gpu-check.sh\", carry=[\"build-gpu/bundle.tar.gz\"], timeout_s=540)"
