#!/usr/bin/env bash
# Unpacks gpu-bin/bins.tar.xz (the binaries that scripts/build-gpu-bin.sh packs to fit the
# device tool's carry limit) into gpu-bin/, on the GPU machine; nothing to do without it.
# xz where it is installed, else Python's lzma (the GPU machine has Python for PyTorch).
# Usage (repository root): bash scripts/unpack-gpu-bin.sh
cd "$(dirname "$0")/.." || exit 1
[[ -f gpu-bin/bins.tar.xz ]] || exit 0
if command -v xz >/dev/null 2>&1; then
  tar -C gpu-bin -xJf gpu-bin/bins.tar.xz
else
  python3 -c 'import tarfile; tarfile.open("gpu-bin/bins.tar.xz").extractall("gpu-bin")'
fi || { echo "unpack-gpu-bin: cannot unpack gpu-bin/bins.tar.xz"; exit 1; }
