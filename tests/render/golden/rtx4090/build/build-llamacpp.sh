#!/usr/bin/env bash
# Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook.
# Builds llama.cpp b11434 for the cuda backend into /opt/llamafleet/llama.cpp/b11434-cuda.
# CUDA for compute capability 89. Toolchain plan: native
#   because no host probe yet: planned for Ubuntu 24.04's GCC 13 and glibc 2.39 (generators/data/distros.yaml); a run plans again from what the host reports
#   because nvcc 13.2 from NVIDIA's repository (cuda-toolkit), installed by build_deps; it accepts the system GCC 13 (GCC <= 15)
#   because glibc 2.39 has no declaration that clashes with nvcc 13.2's headers
# Backends live side by side: each has its own build dir and versioned prefix; ccache is shared.
# The running build is never touched: the new one is staged beside the prefix, checked (--version, ldd),
# and only then moved into place. Switching `current` is the role's job, after the device check.
set -euo pipefail

src=/var/cache/llamafleet/src/b11434
build_dir=/var/cache/llamafleet/build/b11434-cuda
prefix=/opt/llamafleet/llama.cpp/b11434-cuda
stage="$prefix.staging"
jobs="${LLAMAFLEET_BUILD_JOBS:-$(nproc)}"
export CCACHE_DIR=/var/cache/llamafleet/ccache
export CCACHE_BASEDIR="$src"
export CCACHE_NOHASHDIR=1
export CUDA_HOME=/usr/local/cuda
export CUDACXX=/usr/local/cuda/bin/nvcc
export PATH=/usr/local/cuda/bin:"$PATH"

if [[ -x "$prefix/bin/llama-server" ]]; then
  echo "b11434-cuda is already installed in $prefix"
  exit 0
fi

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "llamafleet: $1 not found: $2" >&2; exit 1; }
}
need cmake "install cmake"
need ccache "install ccache (rebuilds of a new version reuse the objects of the last)"
need nvcc "install the CUDA toolkit (or let llamafleet extract the official CUDA bundle)"
echo "CUDA toolchain plan: native"

cmake -S "$src" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF \
  -DCMAKE_C_COMPILER_LAUNCHER=ccache \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=89 \
  -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
  -DCUDAToolkit_ROOT=/usr/local/cuda \
  -DLLAMA_BUILD_NUMBER=11434

cmake --build "$build_dir" --parallel "$jobs" --target llama-server

rm -rf "$stage"
install -d -m 0755 "$stage/bin"
install -m 0755 "$build_dir/bin/llama-server" "$stage/bin/llama-server"
"$stage/bin/llama-server" --version
# Every shared library must resolve; only the driver's libcuda.so.1 may be left to the host.
if ldd "$stage/bin/llama-server" | grep 'not found' | grep -v '^[[:space:]]*libcuda\.so\.1 ' >&2; then
  echo "llamafleet: $stage/bin/llama-server has unresolved libraries (above)" >&2
  exit 1
fi
mv -T "$stage" "$prefix"
echo "installed b11434-cuda into $prefix"
