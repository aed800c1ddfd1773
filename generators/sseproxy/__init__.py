"""SSE-repair proxy in front of llama-server (llama.cpp #22722), with zero-drop upstream restarts.

:mod:`generators.sseproxy.rechunk` is the pure re-chunking logic; :mod:`generators.sseproxy.server` the aiohttp
proxy; ``python3 -m generators.sseproxy`` runs it. The package imports nothing from the rest of ``generators`` and
nothing but aiohttp outside the standard library: hosts get it alone, under /opt/llamafleet/sseproxy.
"""

__all__ = ["FILES"]

# The files a host gets (the sse_proxy role copies exactly these).
FILES = ("__init__.py", "__main__.py", "rechunk.py", "server.py")
