#!/usr/bin/env bash
# C++ bindings and packaging: scripts/install.sh into a temporary prefix, then the consumer
# project tests/cpp_consumer found (1) through the CMake package config (shared + static,
# C++17 + C++20) and (2) through pkg-config with CMake, and (3) a plain
# `c++ $(pkg-config --cflags --libs laic)` build. Each built program runs its checks.
# cmake comes from PATH, else from `pip install cmake` into .venv-ci (seconds, cached in
# $HOME/.cache/pip; faster than apt-get update + install).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d "${TMPDIR:-/tmp}/laic-cpp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$HOME/.cache/pip} PIP_DISABLE_PIP_VERSION_CHECK=1

if ! command -v cmake >/dev/null; then
    [ -x .venv-ci/bin/pip ] || python3 -m venv .venv-ci
    .venv-ci/bin/pip install -q cmake
    export PATH=$ROOT/.venv-ci/bin:$PATH
fi
echo "== $(cmake --version | head -n1), $(c++ --version | head -n1)"

echo "== install to a temporary prefix"
scripts/install.sh "$PREFIX"

echo "== CMake consumer via find_package(laic) (package config)"
cmake -S tests/cpp_consumer -B "$WORK/build-config" -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$WORK/build-config" -j2
# The program must record the SONAME, not the path liblaic.so was found at.
readelf -d "$WORK/build-config/consumer_cxx17" | grep -q 'NEEDED.*\[liblaic\.so\]'
if readelf -d "$WORK/build-config/consumer_static" | grep -q 'liblaic'; then
    echo "consumer_static depends on liblaic.so" >&2; exit 1
fi
(cd "$WORK/build-config" && ctest --output-on-failure)

echo "== CMake consumer via pkg-config"
PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig cmake -S tests/cpp_consumer -B "$WORK/build-pc" \
    -DLAIC_VIA=pkgconfig -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$WORK/build-pc" -j2
readelf -d "$WORK/build-pc/consumer_cxx17" | grep -q 'NEEDED.*\[liblaic\.so\]'
(cd "$WORK/build-pc" && ctest --output-on-failure)

echo "== plain c++ with pkg-config"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
# shellcheck disable=SC2046
c++ -std=c++17 -O1 -Wall -Wextra -Werror -DLAIC_CLIP_FIXTURES="\"$ROOT/tests/fixtures/clip\"" \
    tests/cpp_consumer/main.cpp -o "$WORK/consumer_pc" \
    $(pkg-config --cflags --libs laic) -Wl,-rpath,"$(pkg-config --variable=libdir laic)"
"$WORK/consumer_pc"

echo "== relocated prefix (package config paths are relative to the config file)"
mv "$PREFIX" "$WORK/moved"
cmake -S tests/cpp_consumer -B "$WORK/build-moved" -DCMAKE_PREFIX_PATH="$WORK/moved" >/dev/null
cmake --build "$WORK/build-moved" -j2 --target consumer_static
"$WORK/build-moved/consumer_static"
echo "== C++ bindings: all consumers passed"
