"""llamafleet generators: a typed host description in, the files a host needs out.

The package is pure: :mod:`generators.spec` validates a host description, :mod:`generators.render`
turns it into text. Reading inventories and writing files live at the edges (:mod:`generators.inventory`,
:mod:`generators.cli`); the Ansible action plugin in roles/preflight is a thin shim over the same code.
"""

__all__ = ["SpecError"]

from generators.errors import SpecError
