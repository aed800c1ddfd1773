"""The plan layer: every decision about a host made once, from its description (spec) and its facts.

:func:`plan_host` returns a :class:`HostPlan`: the layout (paths, unit names), each server's GPU, device name,
bind and client addresses and command line, the builds with their CMake flags and CUDA toolchain plan, the
SSE-repair proxy, Ollama's drop-in and the agent clients. The memory fit (:mod:`generators.plan.fit`) plans each
server's memory from the same plan.
"""

from __future__ import annotations

from generators.plan.host import HostPlan, plan_host

__all__ = ["HostPlan", "plan_host"]
