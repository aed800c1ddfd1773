#!/bin/bash
# Prove roles/hf_models on a Debian 13 test container against the fake hub, then remove the container.
#   LLAMAFLEET_SMOLLM2_GGUF=... tests/roles/hf_models_container/run_in_container.sh [IMAGE]
# Steps: converge (downloads, split parts, gated repo with a token), idempotence
# (nothing changed, nothing downloaded), check mode with one more model (reports its bytes, changes nothing).
# Set HFM_WHEELHOUSE to a directory of wheels to install huggingface_hub offline.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
image=${1:-localhost/llamafleet-debian13:latest}
name=hfm-proof-$$
py=${PYTHON:-$(command -v python3)}  # the project venv's when run through make or with it on PATH
bin=$(dirname "$py")
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/molecule/containers.conf}
work=$(mktemp -d)
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  [ -n "${hub_pid:-}" ] && kill "$hub_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$py" "$root/tests/support/serve_fakehub.py" "${LLAMAFLEET_SMOLLM2_GGUF:?set LLAMAFLEET_SMOLLM2_GGUF}" "$work/endpoint" &
hub_pid=$!
for _ in $(seq 100); do [ -s "$work/endpoint" ] && break; sleep 0.2; done
export HFM_ENDPOINT=$(cat "$work/endpoint")
export HFM_WHEELHOUSE=${HFM_WHEELHOUSE:-}

# Host networking: the container reaches the fake hub on the machine's 127.0.0.1 (and the package archives).
podman run -d --name "$name" --network host --systemd=always \
  -v /sys/fs/cgroup/unified:/sys/fs/cgroup/unified:rw "$image" /sbin/init >/dev/null
for _ in $(seq 60); do
  state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break;; esac
  sleep 1
done

printf '%s ansible_connection=containers.podman.podman ansible_python_interpreter=/usr/bin/python3\n' "$name" >"$work/inventory"
play() {
  ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks \
  ANSIBLE_ROLES_PATH="$root/roles" ANSIBLE_CONFIG="$root/ansible.cfg" \
    "$bin/ansible-playbook" -i "$work/inventory" "$here/converge.yml" "$@"
}
one='[{"repo": "llamafleet/smollm2-GGUF", "file": "SmolLM2-135M-Instruct-Q4_1.gguf"},
      {"repo": "llamafleet/smollm2-GGUF", "file": "split/smollm2-00001-of-00003.gguf", "dest_dir": "/var/lib/llamafleet/split"}]'
two='[{"repo": "llamafleet/smollm2-GGUF", "file": "SmolLM2-135M-Instruct-Q4_1.gguf"},
      {"repo": "llamafleet/smollm2-GGUF", "file": "split/smollm2-00001-of-00003.gguf", "dest_dir": "/var/lib/llamafleet/split"},
      {"repo": "llamafleet/gated-GGUF", "file": "SmolLM2-135M-Instruct-Q4_1.gguf", "dest_dir": "/var/lib/llamafleet/gated"}]'

echo "== converge"
HFM_MODELS=$one play | tee "$work/converge.log"
echo "== idempotence"
HFM_MODELS=$one play | tee "$work/idem.log"
grep -Eq 'changed=0 +unreachable=0 +failed=0' "$work/idem.log" || { echo "FAIL: second run changed something"; exit 1; }
echo "== check mode on the converged host"
HFM_MODELS=$one play --check --diff | tee "$work/check0.log"
grep -Eq 'changed=0 +unreachable=0 +failed=0' "$work/check0.log" || { echo "FAIL: check mode reports changes"; exit 1; }
echo "== check mode with one more (gated) model"
HFM_MODELS=$two play --check --diff | tee "$work/check.log"
grep -q 'gated-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf: would download 93.8 MiB' "$work/check.log" &&
  grep -q 'bytes_to_download: 98362432' "$work/check.log" || { echo "FAIL: check mode did not report the bytes"; exit 1; }
grep -Eq 'changed=2 +unreachable=0 +failed=0' "$work/check.log" || { echo "FAIL: check mode must report the new dir and model"; exit 1; }
podman exec "$name" test ! -e /var/lib/llamafleet/gated/SmolLM2-135M-Instruct-Q4_1.gguf
echo "== the gated model without the token file fails with one clear line, before any byte moves"
if HFM_MODELS=$two play -e hf_models_token_file= >"$work/gated.log" 2>&1; then echo "FAIL: gated repo without token passed"; exit 1; fi
grep -q "host $name: repo llamafleet/gated-GGUF: the repo is gated" "$work/gated.log" ||
  { cat "$work/gated.log"; echo "FAIL: no clear gated message"; exit 1; }
grep "the repo is gated" "$work/gated.log" | head -1
podman exec "$name" sh -c 'test -z "$(ls -A /var/lib/llamafleet/gated)"'
echo "== converge with the gated model (token file)"
HFM_MODELS=$two play
podman exec "$name" sh -c 'cd /var/lib/llamafleet && sha256sum models/*.gguf gated/*.gguf && cat split/*.gguf | sha256sum && ls -la models split gated'
echo "PASS"
