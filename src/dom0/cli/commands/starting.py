"""xm create, new, start, delete and console: bringing a domain up and attaching to it."""

from __future__ import annotations

import sys

from dom0.cli.commands import nargs, parse_args, xend
from dom0.client import XendClient
from dom0.errors import InvalidDomain, UsageError, XendError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any


# ---- create / new / start / delete ----------------------------------------


def cmd_create(args: list[str]) -> int:
    return _create_or_new(args, managed=False)


def cmd_new(args: list[str]) -> int:
    return _create_or_new(args, managed=True)


def _create_or_new(args: list[str], managed: bool) -> int:
    from dom0.cli import configfile

    opts = configfile.parse_create_args(args)
    if opts.help:
        raise UsageError("")
    if opts.help_config:
        for name, (kind, default) in configfile.VARIABLES.items():
            print(f"{name:<30} {kind} (default {default!r})")
        return 0
    filename, cfg = configfile.config_from_args(opts)
    if filename and not opts.quiet:
        print(f'Using config file "{filename}".')
    if opts.dryrun:
        from dom0.model import sxp

        print(sxp.pretty(cfg.to_sxp()))
        return 0
    client = xend()
    if managed:
        client.domain_new(config=cfg.to_dict())
        return 0
    info = client.domain_create(config=cfg.to_dict(), paused=opts.paused or opts.console)
    if not opts.quiet:
        print(f"Started domain {info['name']} (id={info['domid']})")
    if opts.vncviewer or str(cfg.other.get("vncconsole", "0")) not in ("0", "no", "n"):
        _vnc_viewer(client, info, opts.vncviewer_autopass)
    if opts.console:
        return _console_then_unpause(client, info, keep_paused=opts.paused)
    return 0


def _console_then_unpause(client: XendClient, info: dict[str, Any], keep_paused: bool) -> int:
    """-c: attach first, then let the guest run, so no boot output is missed."""
    from dom0.cli import console

    try:
        sock = console.connect(info["console"], retry_for=10.0)
    except OSError:
        print("Could not start console", file=sys.stderr)
        return 1
    sock.close()
    if not keep_paused:
        client.domain_unpause(dom=str(info["domid"]))
    return console.attach(info["console"], retry_for=10.0)


def _vnc_viewer(client: XendClient, info: dict[str, Any], autopass: bool) -> None:
    """--vncviewer[-autopass] and ``vncconsole=1``: a viewer of its own, left running."""
    from dom0.cli.commands.vnc import run_viewer

    run_viewer(client, info, autopass, wait=False)


def cmd_start(args: list[str]) -> int:
    opts, rest = parse_args(args, "start")
    nargs("start", rest, 1)
    client = xend()
    paused = "paused" in opts
    console = "console_autoconnect" in opts
    info = client.domain_start(dom=rest[0], paused=paused or console)
    if "vncviewer" in opts or "vncviewer-autopass" in opts:
        _vnc_viewer(client, info, "vncviewer-autopass" in opts)
    if console:
        return _console_then_unpause(client, info, keep_paused=paused)
    return 0


def cmd_delete(args: list[str]) -> int:
    nargs("delete", args, 1)
    xend().domain_delete(dom=args[0])
    return 0



def cmd_console(args: list[str]) -> int:
    from dom0.cli import console

    opts, rest = parse_args(args, "console")
    quiet = "quiet" in opts
    nargs("console", rest, 1)
    try:
        info = xend().domain_info(dom=rest[0])
    except InvalidDomain:
        if quiet:
            return 1
        raise
    if not info.get("console"):
        if quiet:
            return 1
        raise XendError(f"Domain '{rest[0]}' is not started")
    try:
        return console.attach(info["console"])
    except OSError as exc:
        raise XendError(f"Could not attach to the console of {rest[0]}: {exc}") from None

