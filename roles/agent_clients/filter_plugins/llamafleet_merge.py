"""Thin shims over :mod:`generators.merge` (the logic is tested there).

``llamafleet_merge``: the user's file text with llamafleet's fragment merged in; ``llamafleet_merge_problem``: the
one-line reason a user's file cannot be read ("" when it can), checked in a task of its own so the merge itself can
run under ``no_log``; ``llamafleet_changes``: the redacted summary ``--check --diff`` prints instead of the files.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from generators.merge import MergeError, changes, merge_text, parse

_NEVER = "fix or move it, llamafleet never overwrites a file it cannot read"


def llamafleet_merge(existing, fragment, fmt, list_keys=None, keep_user=(), where="existing file"):
    """The user's file text with llamafleet's fragment merged in; an unreadable user file is an error."""
    try:
        return merge_text(existing, fragment, fmt, dict(list_keys or {}), tuple(keep_user or ()), where)
    except MergeError as exc:
        raise AnsibleFilterError(f"{exc}: {_NEVER}") from exc


def llamafleet_merge_problem(existing, fmt, where="existing file"):
    """"" when the user's file parses as ``fmt``, else the one-line reason (the file's text is never quoted)."""
    try:
        parse(existing, fmt, where)
    except MergeError as exc:
        return f"{exc}: {_NEVER}"
    return ""


def llamafleet_changes(existing, fragment, fmt, list_keys=None, keep_user=(), where="existing file"):
    """Top-level keys added/changed/removed and llamafleet's part of the result, secrets redacted."""
    try:
        return changes(existing, fragment, fmt, dict(list_keys or {}), tuple(keep_user or ()), where)
    except MergeError as exc:
        raise AnsibleFilterError(f"{exc}: {_NEVER}") from exc


class FilterModule:
    def filters(self):
        return {
            "llamafleet_merge": llamafleet_merge,
            "llamafleet_merge_problem": llamafleet_merge_problem,
            "llamafleet_changes": llamafleet_changes,
        }
