"""xm block-* and network-*: a running domain's disks and vifs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dom0.cli.commands import nargs, parse_args, xend
from dom0.errors import OptionError, UsageError, XendError

# ---- block devices -------------------------------------------------------------


def cmd_block_attach(args: list[str]) -> int:
    nargs("block-attach", args, 4, 5)
    if len(args) == 5 and args[4] not in ("0", "Domain-0"):
        raise OptionError("Only Domain-0 can be a block backend")
    xend().domain_block_attach(dom=args[0], uname=args[1], dev=args[2], mode=args[3])
    return 0


def cmd_block_configure(args: list[str]) -> int:
    nargs("block-configure", args, 4, 5)
    xend().domain_block_configure(dom=args[0], uname=args[1], dev=args[2], mode=args[3])
    return 0


def cmd_block_detach(args: list[str]) -> int:
    nargs("block-detach", args, 2, 3)
    xend().domain_block_detach(dom=args[0], dev=args[1], force=_force(args))
    return 0


def cmd_block_list(args: list[str]) -> int:
    from dom0.cli import format

    return _list_devices(args, "block-list", xend().domain_block_list, format.block_list)


def _list_devices(args: list[str], command: str, fetch: Callable[..., list[dict[str, Any]]],
                  table: Callable[[list[dict[str, Any]]], str]) -> int:
    """The shape every ``xm <class>-list <Domain> [--long]`` shares (spec §1.3): one
    domain, a table or (``--long``) each device's SXP, nothing at all for no device."""
    from dom0.cli import format

    opts, rest = parse_args(args, command)
    if not rest:
        raise OptionError("No domain parameter given")
    if len(rest) > 1:
        raise OptionError("No multiple domain parameters allowed")
    devices = fetch(dom=rest[0])
    text = format.device_long(devices) if "long" in opts else table(devices)
    if text:
        print(text)
    return 0


def _force(args: list[str]) -> bool:
    """The optional third word of ``xm block-detach``/``network-detach``: ``-f|--force``,
    anything else is ignored with a note, as xm did."""
    if len(args) < 3:
        return False
    if args[2] in ("-f", "--force"):
        return True
    print(f"Ignoring option {args[2]}")
    return False


# ---- network interfaces ----------------------------------------------------------


def cmd_network_attach(args: list[str]) -> int:
    from dom0.model.devices import ATTACH_KEYS

    if not args:
        raise UsageError("'xm network-attach' requires at least 1 argument.\n")
    options = {}
    for word in args[1:]:
        key, eq, value = word.partition("=")
        if not eq or key not in ATTACH_KEYS:
            raise XendError(f"Invalid argument: {word}")
        options[key] = value
    xend().domain_network_attach(dom=args[0], options=options)
    return 0


def cmd_network_detach(args: list[str]) -> int:
    nargs("network-detach", args, 2, 3)
    force = _force(args)
    xend().domain_network_detach(dom=args[0], devid=int(args[1]), force=force)
    return 0


def cmd_network_list(args: list[str]) -> int:
    from dom0.cli import format

    return _list_devices(args, "network-list", xend().domain_network_list, format.network_list)


# ---- virtual TPMs ------------------------------------------------------------------


def cmd_vtpm_list(args: list[str]) -> int:
    from dom0.cli import format

    return _list_devices(args, "vtpm-list", xend().domain_vtpm_list, format.vtpm_list)
# ---- USB ---------------------------------------------------------------------------


def cmd_usb_add(args: list[str]) -> int:
    nargs("usb-add", args, 2, 2)
    xend().domain_usb_add(dom=args[0], dev=args[1])
    return 0


def cmd_usb_del(args: list[str]) -> int:
    nargs("usb-del", args, 2, 2)
    xend().domain_usb_del(dom=args[0], dev=args[1])
    return 0
