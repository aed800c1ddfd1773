#!/usr/bin/python
"""Ansible module: run a planned llama-bench sweep on the host and return every record (``playbooks/bench.yml``).

The controller plans the sweep (``generators/plan/bench.py``: one llama-bench invocation per configuration, its
argv complete) and this module runs it, one invocation after another, as whoever the task becomes (the service
user). Each invocation's JSON output (llama-bench's ``-o json``; llama-batched-bench's ``--output-format jsonl``, one
object per line, for a run whose ``tool`` is ``llama-batched-bench``) is parsed and returned with the run's own
metadata; its stderr
(llama-bench's ``--progress`` lines) and one line per run go to ``log``, which the play tails to print progress
while the module runs in the background (async). A run that fails (out of memory, a refused flag) is returned
with its exit status and the end of its stderr, and the sweep goes on.

Before the sweep, with ``bandwidth_mib`` > 0, it measures the host's memory bandwidth: the best of
``bandwidth_rounds`` copies of a ``bandwidth_mib`` MiB buffer (``bytearray`` slice assignment is one memmove), as
bytes read plus bytes written per second. That is the CPU backend's ceiling for generation (the report divides it
by the bytes read per token); a GPU's ceiling is its catalog bandwidth, which no stdlib probe can measure.

Check mode runs nothing and returns the runs it would make. Stdlib only: it never imports the controller package.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: llamafleet_bench
short_description: Run a planned llama-bench sweep and return the JSON records
options:
  runs:
    description: >-
      one entry per invocation (id, binary, args, env - the server's device environment -, tool - llama-bench
      unless llama-batched-bench -, and metadata returned with its records)
    type: list
    elements: dict
    required: true
  log:
    description: the log file on the host (progress lines and llama-bench's stderr)
    type: path
    required: true
  bandwidth_mib:
    description: size of the memory-bandwidth probe's buffer (0 = no probe)
    type: int
    default: 256
  bandwidth_rounds:
    description: copies timed; the best counts
    type: int
    default: 5
  run_timeout:
    description: seconds one llama-bench invocation may take
    type: int
    default: 1800
"""

TAIL = 2000


def bandwidth(mib: int, rounds: int) -> dict[str, object]:
    """The best copy bandwidth of ``rounds`` copies of ``mib`` MiB, counting bytes read plus bytes written."""
    size = mib * 1024 * 1024
    src = bytearray(os.urandom(1024)) * (size // 1024)
    dst = bytearray(size)
    best = float("inf")
    for _ in range(max(1, rounds)):
        start = time.perf_counter()
        dst[:] = src
        best = min(best, time.perf_counter() - start)
    return {"method": f"bytearray copy of {mib} MiB, best of {rounds} (read + write bytes)", "bytes": size,
            "seconds": best, "gbs": round(2 * size / best / 1e9, 3)}


def parse_records(text: str) -> list[dict[str, object]]:
    """llama-bench's ``-o json`` output: a JSON array of records (one per test)."""
    data = json.loads(text)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("llama-bench -o json did not print a list of records")
    return data


def parse_lines(text: str) -> list[dict[str, object]]:
    """llama-batched-bench's ``--output-format jsonl`` output: one JSON object per line (its other lines skipped)."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    if not records or not all(isinstance(r, dict) and "pl" in r for r in records):
        raise ValueError("llama-batched-bench --output-format jsonl printed no result lines")
    return records


PARSERS = {"llama-bench": parse_records, "llama-batched-bench": parse_lines}


def run_one(run: dict[str, object], log, timeout: int) -> dict[str, object]:
    argv = [str(run["binary"]), *[str(a) for a in run["args"]]]  # type: ignore[union-attr]
    log.write("$ " + " ".join(argv) + "\n")
    log.flush()
    start = time.monotonic()
    try:
        env = {**os.environ, **{str(k): str(v) for k, v in dict(run.get("env") or {}).items()}}  # type: ignore[call-overload]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "rc": None, "error": f"timed out after {timeout} s", "seconds": timeout}
    except OSError as exc:
        return {"ok": False, "rc": None, "error": f"{type(exc).__name__}: {exc}", "seconds": 0.0}
    seconds = round(time.monotonic() - start, 2)
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        return {"ok": False, "rc": proc.returncode, "error": f"exit {proc.returncode}", "seconds": seconds}
    try:
        records = PARSERS[str(run.get("tool") or "llama-bench")](out)
    except ValueError as exc:
        return {"ok": False, "rc": 0, "error": f"unparsable output: {exc}: {out[-TAIL:]}", "seconds": seconds}
    return {"ok": True, "rc": 0, "records": records, "seconds": seconds}


def sweep(runs: list[dict[str, object]], log_path: str, timeout: int, mib: int, rounds: int) -> dict[str, object]:
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    results: list[dict[str, object]] = []
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        bw = None
        if mib > 0:
            log.write(f"llamafleet-bench: measuring memory bandwidth ({mib} MiB copies)\n")
            log.flush()
            bw = bandwidth(mib, rounds)
            log.write(f"llamafleet-bench: bandwidth {bw['gbs']} GB/s\n")
        for i, run in enumerate(runs, 1):
            log.write(f"llamafleet-bench: run {i}/{len(runs)} {run.get('id')} {run.get('label', '')}\n")
            log.flush()
            outcome = run_one(run, log, timeout)
            log.write(f"llamafleet-bench: run {i}/{len(runs)} {'done' if outcome['ok'] else 'FAILED'} "
                      f"in {outcome['seconds']} s\n")
            log.flush()
            results.append({**{k: v for k, v in run.items() if k != "args"}, "args": list(run["args"]),  # type: ignore[call-overload]
                            **outcome})
        log.write(f"llamafleet-bench: finished {len(runs)} runs in {time.monotonic() - started:.1f} s\n")
    return {"results": results, "bandwidth": bw, "seconds": round(time.monotonic() - started, 2)}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "runs": {"type": "list", "elements": "dict", "required": True},
            "log": {"type": "path", "required": True},
            "bandwidth_mib": {"type": "int", "default": 256},
            "bandwidth_rounds": {"type": "int", "default": 5},
            "run_timeout": {"type": "int", "default": 1800},
        },
        supports_check_mode=True,
    )
    p = module.params
    for run in p["runs"]:
        if not isinstance(run.get("binary"), str) or not isinstance(run.get("args"), list):
            module.fail_json(msg=f"run {run.get('id')!r}: needs a binary (string) and args (list)")
        if str(run.get("tool") or "llama-bench") not in PARSERS:
            module.fail_json(msg=f"run {run.get('id')!r}: tool {run.get('tool')!r} is not one of {', '.join(PARSERS)}")
    if module.check_mode:
        module.exit_json(changed=False, results=[], would_run=[r.get("id") for r in p["runs"]], bandwidth=None)
    out = sweep(p["runs"], p["log"], p["run_timeout"], p["bandwidth_mib"], p["bandwidth_rounds"])
    failed = [r["id"] for r in out["results"] if not r["ok"]]  # type: ignore[index, union-attr]
    module.exit_json(changed=False, log=p["log"], failed_runs=failed, **out)


if __name__ == "__main__":
    main()
