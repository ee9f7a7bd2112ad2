#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine, here, and packs it into build-gpu/bundle.tar.gz:
# trainrr, the CUDA backend's tests (cuda_tests) and the benchmarks of step time (step_bench) and of CUPTI's cost to a
# recording (trace_bench --sections kernels), with every shared library they need from this machine
# except the C library, libstdc++ and libgcc, which the GPU machine has. The CUDA runtime is linked in
# statically; cuBLASLt and cuDNN are opened at run time from the GPU machine's own CUDA libraries (NVIDIA's Python
# wheels there), so none of NVIDIA's libraries travel. The GPU machine has no package archive: this is how the
# project's dependencies (Cap'n Proto, OpenBLAS, toml++, ...) get there.
#
#   scripts/gpu-bundle.sh        then, on the GPU machine: scripts/gpu-check.sh (carrying build-gpu/bundle.tar.gz)
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
tar -C build-gpu -czf build-gpu/bundle.tar.gz bundle
echo "bundle: $(du -h build-gpu/bundle.tar.gz | cut -f1) ($(ls "$stage/lib" | wc -l) libraries), commit $(cut -c1-12 "$stage/COMMIT")"
echo "carry build-gpu/bundle.tar.gz and run scripts/gpu-check.sh there"
