#!/usr/bin/env bash
# The main job: installs what is missing, builds trainrr, records the breast-cancer example and replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target trainrr
mkdir -p out
./build/trainrr record examples/breast_cancer.toml -o out/breast_cancer.trr --checkpoint-every 50
./build/trainrr replay out/breast_cancer.trr --html out/breast_cancer.html
