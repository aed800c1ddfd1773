"""``python -m generators``: render a host's files for reading before deploying."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from generators.errors import SpecError
from generators.fit.check import check_host_fits
from generators.fit.cli import add_parser as add_fit_parser
from generators.inventory import host_vars
from generators.render import RenderedFile, render_host
from generators.spec import parse_host


def write_atomic(root: Path, item: RenderedFile) -> None:
    """Write one file via a temporary name, fsync, rename: never a half-written file."""
    target = root / item.path
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(item.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, int(item.mode, 8))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_render(args: argparse.Namespace) -> int:
    spec = parse_host(args.host, host_vars(args.inventory, args.host))
    for warning in check_host_fits(spec, args.host):  # a launch that cannot fit fails here (SpecError)
        print(f"warning: {warning}", file=sys.stderr)
    files = render_host(spec)  # everything is rendered before anything is written
    out = Path(args.out)
    for item in files:
        write_atomic(out, item)
        print(out / item.path)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m generators", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write the files the roles install for one host")
    render.add_argument("--inventory", required=True, help="inventory directory or file, e.g. inventories/demo")
    render.add_argument("--host", required=True, help="inventory host name")
    render.add_argument("--out", required=True, help="directory to write into (created if absent)")
    render.set_defaults(func=cmd_render)
    add_fit_parser(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
