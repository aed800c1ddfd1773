"""``llamafleet_merge``: a thin shim over :func:`generators.merge.merge_text` (the logic is tested there)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from generators.merge import MergeError, merge_text


def llamafleet_merge(existing, fragment, fmt, list_keys=None, keep_user=(), where="existing file"):
    """The user's file text with llamafleet's fragment merged in; an unreadable user file is an error."""
    try:
        return merge_text(existing, fragment, fmt, dict(list_keys or {}), tuple(keep_user or ()), where)
    except MergeError as exc:
        raise AnsibleFilterError(f"{exc}: fix or move it, llamafleet never overwrites a file it cannot read") from exc


class FilterModule:
    def filters(self):
        return {"llamafleet_merge": llamafleet_merge}
