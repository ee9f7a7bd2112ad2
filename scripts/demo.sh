#!/usr/bin/env bash
# The main job: installs what is missing, builds trainrr, then trains the breast-cancer example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DTRAINRR_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)" --target trainrr
./build/trainrr train examples/breast_cancer.toml
