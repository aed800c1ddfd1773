# llamafleet: two commands for a newcomer on a fresh machine (Debian/Ubuntu, root or sudo):
#   make demo   provision the built-in demo host (a local podman container) and ask it a question
#   make test   lint, unit and golden tests, then Molecule on Debian 13 and Ubuntu 24.04 test hosts
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export CONTAINERS_CONF ?= $(CURDIR)/molecule/containers.conf
export LLAMAFLEET_CCACHE ?= $(HOME)/.cache/llamafleet/ccache
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-fast deps venv images molecule-hub molecule-vulkan molecule-distros test-upgrade test-gate clean-demo

demo: deps venv
	$(VENV)/bin/ansible-playbook playbooks/demo_host.yml
	$(VENV)/bin/ansible-playbook site.yml -l demo
	@echo
	@echo "llama-server on the demo host: http://127.0.0.1:8080/v1 inside container llamafleet-demo"
	@echo "sample completion (podman exec llamafleet-demo curl ...):"
	@podman exec llamafleet-demo python3 -c "$$DEMO_ASK"

export DEMO_ASK := import json, urllib.request; \
r = urllib.request.Request('http://127.0.0.1:8080/v1/chat/completions', method='POST', \
  headers={'Content-Type': 'application/json'}, \
  data=json.dumps({'model': 'local', 'max_tokens': 40, 'messages': [{'role': 'user', 'content': 'What is llama.cpp?'}]}).encode()); \
print(json.load(urllib.request.urlopen(r, timeout=120))['choices'][0]['message']['content'])

test: deps venv
	bash .ci/test

# The fast tests (under a minute): no llama-server, model, systemd, podman or ansible run (tests/conftest.py).
test-fast: venv
	$(PY) -m pytest -q -m "not integration"

deps:
	@bash .ci/install-deps

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

images:
	bash molecule/images/build-image.sh debian13
	bash molecule/images/build-image.sh ubuntu2404

# The hub scenario alone (part of `make test`): one Debian 13 host fetching its model from a fake hub.
molecule-hub: deps venv
	molecule test -s hub

# Opt-in: the Vulkan backend built for real on Debian 13 and served on Mesa's lavapipe (CPU) device.
molecule-vulkan: deps venv
	molecule test -s vulkan

# Opt-in: Fedora, Arch and Ubuntu images from a container registry (not reachable from our CI).
molecule-distros: deps venv
	molecule test -s distros

clean-demo:
	podman rm -f llamafleet-demo

# Opt-in: three test hosts, a real rolling upgrade between two llama.cpp builds, then a rigged failure
# that must roll back and stop the rollout (see molecule/upgrade/test_rolling_upgrade.py).
test-upgrade: deps venv
	python -m pytest -s -p no:cacheprovider molecule/upgrade/test_rolling_upgrade.py

# Opt-in: one test host benched (playbooks/bench.yml), upgraded through the bench gate, then a deliberately slow
# build (no SIMD) that only the gate can catch, rolled back (see molecule/upgrade/test_bench_gate.py).
test-gate: deps venv
	python -m pytest -s -p no:cacheprovider molecule/upgrade/test_bench_gate.py
