#!/usr/bin/env bash
# Installs laic into PREFIX:
#   PREFIX/lib/liblaic.so, PREFIX/lib/liblaic.a
#   PREFIX/include/laic.h, PREFIX/include/laic.hpp
#   PREFIX/lib/pkgconfig/laic.pc
#   PREFIX/lib/cmake/laic/laicConfig.cmake, laicConfigVersion.cmake  (targets laic::laic,
#   laic::laic_static)
# Usage: scripts/install.sh PREFIX   (builds with `cargo build --release --lib` first; set
# LAIC_NO_BUILD=1 to install what target/release already holds). Needs no cmake.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
PREFIX=$(cd "$1" && pwd)
cd "$ROOT"

if [ "${LAIC_NO_BUILD:-0}" != 1 ]; then
    cargo build --release --lib
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# What a static link of a Rust library needs from the system on Linux/glibc (what
# `rustc --print native-static-libs` reports for this crate); tests/cpp_consumer links the
# static library with exactly these, so a new requirement fails there.
STATIC_LIBS="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

install -d "$PREFIX/lib/pkgconfig" "$PREFIX/lib/cmake/laic" "$PREFIX/include"
install -m 755 "$TARGET_DIR/liblaic.so" "$PREFIX/lib/liblaic.so"
install -m 644 "$TARGET_DIR/liblaic.a" "$PREFIX/lib/liblaic.a"
install -m 644 include/laic.h bindings/cpp/laic.hpp "$PREFIX/include/"

cat > "$PREFIX/lib/pkgconfig/laic.pc" <<PC
prefix=$PREFIX
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: laic
Description: Language-assisted Image Clustering (GradNorm noun filtering) with a C ABI
Version: $VERSION
Libs: -L\${libdir} -llaic
Libs.private: $STATIC_LIBS
Cflags: -I\${includedir}
PC

CMAKE_STATIC_LIBS=$(printf '%s' "$STATIC_LIBS" | sed -e 's/-l//g' -e 's/ /;/g')
cat > "$PREFIX/lib/cmake/laic/laicConfig.cmake" <<CM
# CMake package config of laic $VERSION (written by scripts/install.sh).
#   find_package(laic REQUIRED)
#   target_link_libraries(app PRIVATE laic::laic)          # shared library
#   target_link_libraries(app PRIVATE laic::laic_static)   # static library
# The C++ header laic.hpp needs C++17 (std::span overloads with C++20).
# Relocatable: paths are computed from this file's location.
get_filename_component(_laic_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET laic::laic)
  add_library(laic::laic SHARED IMPORTED)
  set_target_properties(laic::laic PROPERTIES
    IMPORTED_LOCATION "\${_laic_prefix}/lib/liblaic.so"
    IMPORTED_SONAME "liblaic.so"
    INTERFACE_INCLUDE_DIRECTORIES "\${_laic_prefix}/include")
endif()

if(NOT TARGET laic::laic_static)
  add_library(laic::laic_static STATIC IMPORTED)
  set_target_properties(laic::laic_static PROPERTIES
    IMPORTED_LOCATION "\${_laic_prefix}/lib/liblaic.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "\${_laic_prefix}/include"
    INTERFACE_LINK_LIBRARIES "$CMAKE_STATIC_LIBS")
endif()

set(laic_VERSION "$VERSION")
set(laic_INCLUDE_DIRS "\${_laic_prefix}/include")
set(laic_LIBRARIES laic::laic)
unset(_laic_prefix)
CM

cat > "$PREFIX/lib/cmake/laic/laicConfigVersion.cmake" <<CM
# Version check of laic $VERSION: compatible when the requested version is not newer and has
# the same major version (same major.minor while the major is 0).
set(PACKAGE_VERSION "$VERSION")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  string(REGEX MATCH "^[0-9]+" _have_major "\${PACKAGE_VERSION}")
  string(REGEX MATCH "^[0-9]+\\\\.[0-9]+" _have_minor "\${PACKAGE_VERSION}")
  if(_have_major STREQUAL "0")
    set(_same "\${PACKAGE_FIND_VERSION_MAJOR}.\${PACKAGE_FIND_VERSION_MINOR}" )
    if(_same STREQUAL _have_minor)
      set(PACKAGE_VERSION_COMPATIBLE TRUE)
    else()
      set(PACKAGE_VERSION_COMPATIBLE FALSE)
    endif()
  elseif(PACKAGE_FIND_VERSION_MAJOR STREQUAL _have_major)
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  endif()
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
# A 64-bit library: refuse 32-bit consumers.
if(NOT "\${CMAKE_SIZEOF_VOID_P}" STREQUAL "" AND NOT CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(PACKAGE_VERSION "\${PACKAGE_VERSION} (64bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
CM
echo "laic $VERSION installed in $PREFIX"
