#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian/Ubuntu machine (run as root, or with sudo).
# nvcc and the CUDA libraries are expected from the CUDA toolkit image; without nvcc the CPU
# backend still builds and the CUDA backend is left out.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
# .ci/run builds the Python package in a venv (Debian's python3 ships venv/ensurepip separately).
if ! command -v python3 >/dev/null; then
  need+=(python3 python3-venv python3-dev)
else
  python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
  python3 -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))" 2>/dev/null ||
    need+=(python3-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi
cmake_version=$(cmake --version | head -1 | awk '{print $3}')
if [ "$(printf '%s\n3.25\n' "$cmake_version" | sort -V | head -1)" != "3.25" ]; then
  echo "cmake $cmake_version is older than 3.25 (workflow presets); install a newer one, e.g. pip install cmake" >&2
  exit 1
fi
