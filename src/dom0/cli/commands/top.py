"""xm top: xentop.  With ``-b`` it prints ``-i`` iterations of xentop's batch text
every ``-d`` seconds (standard library only); without, the full-screen view of
cli/top_screen.py (the terminal UI library is imported only then).

Every refresh is one request (``node.figures``): all domains' figures at once."""

from __future__ import annotations

import sys
import time

from dom0.cli import topformat
from dom0.cli.commands import parse_args, xend
from dom0.errors import OptionError
from dom0.model.figures import Snapshot

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from dom0.client import XendClient

DEFAULT_DELAY = 3.0


class TopOptions:
    """What ``xm top``'s options ask for (a plain class: dataclasses cost xm's start)."""

    __slots__ = ("batch", "delay", "iterations", "networks", "vbds", "vcpus",
                 "repeat_header", "full_name")

    def __init__(self, opts: dict[str, str]) -> None:
        self.batch = "batch" in opts
        self.delay = _number(opts.get("delay"), "delay", DEFAULT_DELAY, float)
        self.iterations = int(_number(opts.get("iterations"), "iterations", 0, int))
        self.networks = "networks" in opts
        self.vbds = "vbds" in opts
        self.vcpus = "vcpus" in opts
        self.repeat_header = "repeat-header" in opts
        self.full_name = "full-name" in opts


def _number(text: str | None, what: str, default: float, kind: type) -> float:
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise OptionError(f"invalid {what}: {text}") from None
    if value < 0 or (what == "delay" and value == 0):
        raise OptionError(f"invalid {what}: {text}")
    return float(value)


def fetch(client: XendClient) -> Snapshot:
    return Snapshot.from_dict(client.node_figures())


def cmd_top(args: list[str]) -> int:
    opts, rest = parse_args(args, "top")
    if rest:
        raise OptionError(f"unexpected argument: {rest[0]}")
    options = TopOptions(opts)
    client = xend()
    if options.batch:
        return batch(client, options)
    if not sys.stdout.isatty():
        raise OptionError("xm top needs a terminal; use -b for batch mode")
    from dom0.cli import top_screen

    return top_screen.run(lambda: fetch(client), options)


def batch(client: XendClient, options: TopOptions) -> int:
    """xentop -b: each iteration prints a whole frame; CPU(%) is measured between
    iterations (0.0 in the first, as xentop)."""
    prev: Snapshot | None = None
    done = 0
    while True:
        snap = fetch(client)
        lines = topformat.frame(snap, prev, vcpus=options.vcpus, networks=options.networks,
                                vbds=options.vbds, repeat_header=options.repeat_header,
                                full_name=options.full_name)
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        prev = snap
        done += 1
        if options.iterations and done >= options.iterations:
            return 0
        time.sleep(options.delay)
