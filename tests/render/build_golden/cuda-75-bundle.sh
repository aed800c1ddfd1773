#!/usr/bin/env bash
# Managed by llamafleet: edits here are overwritten; change the inventory and re-run the playbook.
# Installs llama.cpp b11434 for CUDA into /opt/llamafleet/llama.cpp/b11434-cuda from the official image
# ghcr.io/ggml-org/llama.cpp:full-cuda13-b11434 instead of building it. Toolchain plan: bundle
#   because nvcc 13.2 accepts GCC <= 15, the system GCC is 16.1 and no other installed GCC fits (others: none); -allow-unsupported-compiler does not help: nvcc cannot parse newer libstdc++ headers
#   because the official CUDA 13 image's build can run here (glibc 2.43 >= 2.39, driver version not known)
# The extractor (roles/llamacpp/files/llamafleet_bundle.py, stdlib only) pulls with podman, docker or skopeo (whichever is here),
# copies /app's binaries and libraries and the CUDA runtime (cudart, cuBLAS) into a staging dir beside the
# prefix, sets $ORIGIN-relative RPATHs with patchelf, never copies libcuda (the driver's), checks with ldd that
# only libcuda.so.1 is left to the host, and only then moves the staging dir into the prefix.
set -euo pipefail

prefix=/opt/llamafleet/llama.cpp/b11434-cuda
if [[ -x "$prefix/bin/llama-server" ]]; then
  echo "b11434-cuda is already installed in $prefix"
  exit 0
fi
command -v patchelf >/dev/null 2>&1 || { echo "llamafleet: patchelf not found: install patchelf" >&2; exit 1; }

python3 /var/cache/llamafleet/bin/llamafleet-bundle.py \
  --image ghcr.io/ggml-org/llama.cpp:full-cuda13-b11434 \
  --work-dir /var/cache/llamafleet/bundle \
  --prefix "$prefix" \
  --targets llama-server llama-bench
"$prefix/bin/llama-server" --version
echo "installed b11434-cuda (official image) into $prefix"
