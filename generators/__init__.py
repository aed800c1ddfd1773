"""llamafleet generators: a typed host description in, the files a host needs out.

The layers, each importing only those below it (``tests/test_layers.py`` keeps it so):

- leaves: :mod:`~generators.errors`, :mod:`~generators.data` (the one loader of ``generators/data``),
  :mod:`~generators.merge`;
- :mod:`~generators.spec`: parse and validate the inventory's host description;
- :mod:`~generators.facts`: what the host is and reports (GPUs, distro, CUDA toolchain, memory);
- :mod:`~generators.plan`: every decision once (layout, servers, builds, proxy, clients, memory fit);
- :mod:`~generators.render`: pure text from the plan;
- :mod:`~generators.manifest`: the typed contract the roles read;
- :mod:`~generators.pipeline`, :mod:`~generators.cli`, :mod:`~generators.inventory`: the edges (hostvars in,
  files out); the Ansible action plugin in roles/preflight is a thin shim over the pipeline.
"""

__all__ = ["SpecError"]

from generators.errors import SpecError
