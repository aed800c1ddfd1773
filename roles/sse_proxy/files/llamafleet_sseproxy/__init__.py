"""The proxy in front of llama-server: requests wait out upstream restarts, broken streams end with an error event.

Measured (README "The proxy in front of llama-server"): through it, a restart fails only the request in flight;
b11434's streams never cut a character or escape between events, so the stream repair (a guard, written for
llama.cpp #22722's report, which did not reproduce) passes them byte for byte.

:mod:`llamafleet_sseproxy.rechunk` is the pure re-chunking logic; :mod:`llamafleet_sseproxy.server` the aiohttp
proxy; ``python3 -m llamafleet_sseproxy`` runs it. It is a host program, shipped by the sse_proxy role (this
directory is ``roles/sse_proxy/files/llamafleet_sseproxy``): it imports nothing from the controller package
``generators`` and nothing but aiohttp (and uvloop where installed) outside the standard library. Hosts get it
alone, as ``<install_dir>/llamafleet_sseproxy/`` (install_dir /opt/llamafleet/sseproxy, on the unit's PYTHONPATH).
"""

__all__ = ["FILES"]

# The files a host gets (the sse_proxy role copies exactly these).
FILES = ("__init__.py", "__main__.py", "rechunk.py", "server.py")
