#!/usr/bin/env bash
# Installs the Debian packages trainrr builds with, if any is missing. Run as root (or with sudo).
set -euo pipefail
packages=(build-essential cmake pkg-config capnproto libcapnp-dev libtomlplusplus-dev librandom123-dev
          libxxhash-dev libzstd-dev libcli11-dev libfmt-dev libopenblas-dev libgtest-dev libgmock-dev
          libbenchmark-dev)
if [[ "${TRAINRR_WITH_FUZZ:-0}" == 1 ]]; then packages+=(clang-14 libclang-rt-14-dev); fi
# The browser that renders the HTML report in the test suite (scripts/render-report.sh), and the JSON parser
# that checks --json output made from hostile traces (tests/untrusted_trace_test.cc).
if [[ "${TRAINRR_WITH_BROWSER:-0}" == 1 ]]; then packages+=(chromium python3); fi
# Other CPU models for the replay tests (qemu-x86_64-static -cpu Nehalem ...).
if [[ "${TRAINRR_WITH_QEMU:-0}" == 1 ]]; then packages+=(qemu-user-static); fi
# Holds an export at one system call so that the tests can interrupt it there (tests/trace_cli_test.cc).
if [[ "${TRAINRR_WITH_STRACE:-0}" == 1 ]]; then packages+=(strace); fi
# Data-parallel training over Open MPI.
if [[ "${TRAINRR_WITH_MPI:-0}" == 1 ]]; then packages+=(openmpi-bin libopenmpi-dev); fi
# The Python module (import trainrr) and its tests.
if [[ "${TRAINRR_WITH_PYTHON:-0}" == 1 ]]; then packages+=(python3 python3-dev pybind11-dev python3-numpy python3-pytest); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
