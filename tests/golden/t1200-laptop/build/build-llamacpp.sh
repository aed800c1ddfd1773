#!/usr/bin/env bash
# Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook.
# Builds llama.cpp b11434 for the vulkan backend into /opt/llamafleet/llama.cpp/b11434-vulkan.
# The running build is never touched: the new one is staged beside it and moved into place only after
# its own --version check passes. Switching `current` is the role's job, after the flag check.
set -euo pipefail

src=/var/cache/llamafleet/src/b11434
build_dir=/var/cache/llamafleet/build/b11434-vulkan
prefix=/opt/llamafleet/llama.cpp/b11434-vulkan
stage="$prefix.staging"
export CCACHE_DIR=/var/cache/llamafleet/ccache
export CCACHE_BASEDIR="$src"
export CCACHE_NOHASHDIR=1

if [[ -x "$prefix/bin/llama-server" ]]; then
  echo "b11434-vulkan is already installed in $prefix"
  exit 0
fi

cmake -S "$src" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_NUMBER=11434 \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DGGML_VULKAN=ON

cmake --build "$build_dir" --parallel "$(nproc)" --target llama-server

rm -rf "$stage"
install -d -m 0755 "$stage/bin"
install -m 0755 "$build_dir/bin/llama-server" "$stage/bin/llama-server"
"$stage/bin/llama-server" --version
mv -T "$stage" "$prefix"
echo "installed b11434-vulkan into $prefix"
