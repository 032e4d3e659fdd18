"""The xm subcommands.  Each takes the words after its name and returns an exit
status; errors are raised (dom0.errors) and mapped to output in ``cli.main``.

This module holds the shared helpers and the commands xm runs most (listing, the
one-word verbs); the others live in submodules that ``cli.main`` imports only to run
one of them, so ``xm list`` compiles and loads only what it uses.  Heavy imports
stay inside the commands that need them."""

from __future__ import annotations

import os
import sys

from dom0.cli import opts as optparse
from dom0.client import XendClient
from dom0.errors import OptionError, UsageError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def xend() -> XendClient:
    """A client of the xend this xm talks to ($XM_SERVER, else the default socket)."""
    return XendClient()


def parse_args(args: list[str], command: str) -> tuple[dict[str, str], list[str]]:
    """The command's options as declared in ``cli.registry.COMMANDS``: ({long name:
    value}, operands)."""
    from dom0.cli.registry import BY_NAME

    return optparse.parse_options(args, BY_NAME[command].options)


def nargs(command: str, args: list[str], lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if lo <= len(args) <= hi:
        return
    if lo == hi:
        raise UsageError(f"'xm {command}' requires {lo} argument{'s' if lo != 1 else ''}.\n")
    raise UsageError(f"'xm {command}' requires between {lo} and {hi} arguments.\n")


# ---- simple verbs -----------------------------------------------------------


def _verb(method: Callable[[XendClient, str], None], command: str) -> Any:
    """A command taking one domain and calling one route with it."""
    def run(args: list[str]) -> int:
        nargs(command, args, 1)
        method(xend(), args[0])
        return 0
    run.__name__ = f"cmd_{command}"
    return run


cmd_destroy = _verb(lambda c, dom: c.domain_destroy(dom=dom), "destroy")
cmd_pause = _verb(lambda c, dom: c.domain_pause(dom=dom), "pause")
cmd_unpause = _verb(lambda c, dom: c.domain_unpause(dom=dom), "unpause")
cmd_reset = _verb(lambda c, dom: c.domain_reset(dom=dom), "reset")


def cmd_rename(args: list[str]) -> int:
    nargs("rename", args, 2)
    xend().domain_rename(dom=args[0], name=args[1])
    return 0


def cmd_sysrq(args: list[str]) -> int:
    nargs("sysrq", args, 2)
    xend().domain_sysrq(dom=args[0], key=args[1])
    return 0


def cmd_domid(args: list[str]) -> int:
    nargs("domid", args, 1)
    info = xend().domain_info(dom=args[0])
    if info.get("domid") is None:
        print("None")
    else:
        print(info["domid"])
    return 0


def cmd_domname(args: list[str]) -> int:
    nargs("domname", args, 1)
    print(xend().domain_info(dom=args[0])["name"])
    return 0



# ---- list and friends -----------------------------------------------------


def cmd_list(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = parse_args(args, "list")
    if "vcpus" in opts:
        print("Command list -v is deprecated.  Please use xm vcpu-list instead.",
              file=sys.stderr)
        return cmd_vcpu_list(rest)
    state = opts.get("state")
    if state and rest:
        raise OptionError("You may specify either a state or a particular VM, but not both")
    domains = xend().domain_list(state=state.lower() if state else None, names=rest)
    if "long" in opts:
        print(format.list_long(domains))
    elif "label" in opts:
        from dom0.cli.commands.security import domain_labels

        print(format.list_label_rows(domains, domain_labels(domains)))
    else:
        print(format.list_rows(domains))
    return 0


def cmd_uptime(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = parse_args(args, "uptime")
    domains = xend().domain_list(names=rest)
    text = format.uptime(domains, "short" in opts)
    if text:
        print(text)
    return 0


def cmd_vcpu_list(args: list[str]) -> int:
    from dom0.cli import format

    entries = xend().domain_vcpus(names=args)
    print(format.vcpu_list(entries, os.cpu_count() or 1))
    return 0


def cmd_info(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = parse_args(args, "info")
    if rest:
        raise UsageError("'xm info' takes no arguments")
    client = xend()
    if "config" in opts:
        print(format.info(client.node_config(), width=38))
    else:
        print(format.info(client.node_info()))
    return 0


def cmd_dmesg(args: list[str]) -> int:
    opts, rest = parse_args(args, "dmesg")
    if rest:
        raise UsageError("'xm dmesg' takes no arguments")
    sys.stdout.write(xend().node_dmesg(clear="clear" in opts))
    return 0


def cmd_log(args: list[str]) -> int:
    nargs("log", args, 0)
    sys.stdout.write(xend().node_log())
    return 0

