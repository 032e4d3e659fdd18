"""The xm subcommands.  Each takes the words after its name and returns an exit
status; errors are raised (dom0.errors) and mapped to output in ``cli.main``.
Heavy imports stay inside the commands that need them."""

from __future__ import annotations

import os
import sys
import time

from dom0.cli import opts as optparse
from dom0.client import XendClient
from dom0.errors import InvalidDomain, OptionError, UsageError, XendError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _client() -> XendClient:
    return XendClient()


def _getopt(args: list[str], command: str) -> tuple[dict[str, str], list[str]]:
    """The command's options as declared in ``cli.main.COMMANDS``: ({long name:
    value}, operands)."""
    from dom0.cli.main import BY_NAME

    return optparse.parse_options(args, BY_NAME[command].options)


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
    client = _client()
    if managed:
        client.domain_new(config=cfg.to_dict())
        return 0
    info = client.domain_create(config=cfg.to_dict(), paused=opts.paused or opts.console)
    if not opts.quiet:
        print(f"Started domain {info['name']} (id={info['domid']})")
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


def cmd_start(args: list[str]) -> int:
    opts, rest = _getopt(args, "start")
    _nargs("start", rest, 1)
    client = _client()
    paused = "paused" in opts
    console = "console_autoconnect" in opts
    info = client.domain_start(dom=rest[0], paused=paused or console)
    if console:
        return _console_then_unpause(client, info, keep_paused=paused)
    return 0


def cmd_delete(args: list[str]) -> int:
    _nargs("delete", args, 1)
    _client().domain_delete(dom=args[0])
    return 0


# ---- simple verbs -----------------------------------------------------------


def _verb(method: Callable[[XendClient, str], None], command: str) -> Any:
    """A command taking one domain and calling one route with it."""
    def run(args: list[str]) -> int:
        _nargs(command, args, 1)
        method(_client(), args[0])
        return 0
    run.__name__ = f"cmd_{command}"
    return run


cmd_destroy = _verb(lambda c, dom: c.domain_destroy(dom=dom), "destroy")
cmd_pause = _verb(lambda c, dom: c.domain_pause(dom=dom), "pause")
cmd_unpause = _verb(lambda c, dom: c.domain_unpause(dom=dom), "unpause")
cmd_reset = _verb(lambda c, dom: c.domain_reset(dom=dom), "reset")


def cmd_rename(args: list[str]) -> int:
    _nargs("rename", args, 2)
    _client().domain_rename(dom=args[0], name=args[1])
    return 0


def cmd_sysrq(args: list[str]) -> int:
    _nargs("sysrq", args, 2)
    _client().domain_sysrq(dom=args[0], key=args[1])
    return 0


def cmd_domid(args: list[str]) -> int:
    _nargs("domid", args, 1)
    info = _client().domain_info(dom=args[0])
    if info.get("domid") is None:
        print("None")
    else:
        print(info["domid"])
    return 0


def cmd_domname(args: list[str]) -> int:
    _nargs("domname", args, 1)
    print(_client().domain_info(dom=args[0])["name"])
    return 0


# ---- shutdown / reboot -------------------------------------------------------


def cmd_shutdown(args: list[str]) -> int:
    opts, rest = _getopt(args, "shutdown")
    if "help" in opts:
        raise UsageError("")
    mode = "poweroff"
    if "halt" in opts:
        mode = "halt"
    if "reboot" in opts:
        mode = "reboot"
    return _shutdown(rest, mode, "all" in opts, "wait" in opts, "shutdown")


def cmd_reboot(args: list[str]) -> int:
    opts, rest = _getopt(args, "reboot")
    return _shutdown(rest, "reboot", "all" in opts, "wait" in opts, "reboot")


def _shutdown(rest: list[str], mode: str, all_: bool, wait: bool, command: str) -> int:
    client = _client()
    if all_:
        if rest:
            raise UsageError(f"'xm {command}' takes no domain with -a")
        targets = [d for d in client.domain_list()
                   if d["domid"] not in (None, 0) and d["state"] and "s" not in d["state"]]
    else:
        _nargs(command, rest, 1)
        targets = [client.domain_info(dom=rest[0])]
    started = [client.domain_shutdown(dom=str(d["domid"]), mode=mode) for d in targets]
    if not wait:
        return 0
    for info in started:
        _wait_shutdown(client, info, mode)
    print("All domains rebooted" if mode == "reboot" else "All domains terminated")
    return 0


def _wait_shutdown(client: XendClient, info: dict[str, Any], mode: str) -> None:
    name, domid, uuid = info["name"], info["domid"], info["uuid"]
    while True:
        try:
            now = client.domain_info(dom=uuid)
        except InvalidDomain:
            now = None
        if mode == "reboot":
            if now is None or now.get("domid") is None:
                print(f"Domain {name} destroyed for failing to reboot")
                return
            if now["domid"] != domid:
                print(f"Domain {name} rebooted")
                return
        elif now is None or now.get("domid") != domid or now.get("state", "").find("s") >= 0:
            print(f"Domain {name} terminated")
            return
        time.sleep(0.1)


# ---- list and friends -----------------------------------------------------


def cmd_list(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = _getopt(args, "list")
    if "vcpus" in opts:
        print("Command list -v is deprecated.  Please use xm vcpu-list instead.",
              file=sys.stderr)
        return cmd_vcpu_list(rest)
    state = opts.get("state")
    if state and rest:
        raise OptionError("You may specify either a state or a particular VM, but not both")
    domains = _client().domain_list(state=state.lower() if state else None, names=rest)
    if "long" in opts:
        print(format.list_long(domains))
    else:
        print(format.list_rows(domains))
    return 0


def cmd_uptime(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = _getopt(args, "uptime")
    domains = _client().domain_list(names=rest)
    text = format.uptime(domains, "short" in opts)
    if text:
        print(text)
    return 0


def cmd_vcpu_list(args: list[str]) -> int:
    from dom0.cli import format

    entries = _client().domain_vcpus(names=args)
    print(format.vcpu_list(entries, os.cpu_count() or 1))
    return 0


def cmd_info(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = _getopt(args, "info")
    if rest:
        raise UsageError("'xm info' takes no arguments")
    client = _client()
    if "config" in opts:
        print(format.info(client.node_config(), width=38))
    else:
        print(format.info(client.node_info()))
    return 0


def cmd_dmesg(args: list[str]) -> int:
    opts, rest = _getopt(args, "dmesg")
    if rest:
        raise UsageError("'xm dmesg' takes no arguments")
    sys.stdout.write(_client().node_dmesg(clear="clear" in opts))
    return 0


def cmd_log(args: list[str]) -> int:
    _nargs("log", args, 0)
    sys.stdout.write(_client().node_log())
    return 0


def cmd_dump_core(args: list[str]) -> int:
    opts, rest = _getopt(args, "dump-core")
    crash, reset = "crash" in opts, "reset" in opts
    if crash and reset:
        raise OptionError("You may not specify more than one '-CR' option")
    _nargs("dump-core", rest, 1, 2)
    filename = os.path.abspath(rest[1]) if len(rest) > 1 else None
    print(f"Dumping core of domain: {rest[0]} ...")
    _client().domain_dump(dom=rest[0], file=filename,
                         live="live" in opts, crash=crash, reset=reset)
    return 0


def cmd_console(args: list[str]) -> int:
    from dom0.cli import console

    opts, rest = _getopt(args, "console")
    quiet = "quiet" in opts
    _nargs("console", rest, 1)
    try:
        info = _client().domain_info(dom=rest[0])
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


# ---- save / restore / suspend / resume ----------------------------------------------


def cmd_save(args: list[str]) -> int:
    opts, rest = _getopt(args, "save")
    _nargs("save", rest, 2)
    path = os.path.abspath(rest[1])
    if not os.access(os.path.dirname(path), os.W_OK):
        raise XendError(f"xm save: Unable to create file {rest[1]}")
    _client().domain_save(dom=rest[0], file=path,
                          checkpoint="checkpoint" in opts)
    return 0


def cmd_restore(args: list[str]) -> int:
    opts, rest = _getopt(args, "restore")
    _nargs("restore", rest, 1)
    path = os.path.abspath(rest[0])
    if not os.access(path, os.R_OK):
        raise XendError(f"xm restore: Unable to read file {rest[0]}")
    _client().domain_restore(file=path, paused="paused" in opts)
    return 0


def cmd_suspend(args: list[str]) -> int:
    _nargs("suspend", args, 1)
    _client().domain_suspend(dom=args[0])
    return 0


def cmd_resume(args: list[str]) -> int:
    opts, rest = _getopt(args, "resume")
    _nargs("resume", rest, 1)
    _client().domain_resume(dom=rest[0], paused="paused" in opts)
    return 0


# ---- migrate -----------------------------------------------------------------------


def cmd_migrate(args: list[str]) -> int:
    opts, rest = _getopt(args, "migrate")
    _nargs("migrate", rest, 2)
    port = opts.get("port")
    client = _client()
    job = client.domain_migrate(dom=rest[0], host=rest[1],
                                port=int(port) if port else None,
                                live="live" in opts,
                                ssl=True if "ssl" in opts else None)
    return _follow_migration(client, job, rest[0], rest[1])


def _follow_migration(client: XendClient, job: str, dom: str, host: str) -> int:
    """Progress: a bar with an ETA on a terminal, a line a second otherwise."""
    tty = sys.stdout.isatty()
    shown_prediction = False
    seen_events = 0
    last_line = 0.0
    while True:
        st = client.domain_migrate_status(job=job)
        if st["prediction"] and not shown_prediction:
            print(st["prediction"])
            shown_prediction = True
        for event in st["events"][seen_events:]:
            print(("\n" if tty else "") + f"not converging: {event}")
        seen_events = len(st["events"])
        if st["done"]:
            if tty:
                print()
            if st["error"]:
                raise XendError(st["error"])
            downtime = st["downtime_ms"]
            stream = st.get("stream_s")
            print(f"Migrated {dom} to {host}: total {st['total_s']:.2f} s, downtime "
                  f"{downtime if downtime is not None else '?'} ms"
                  + (f" (QEMU's stream {stream:.2f} s, {st['transferred'] / 2**20:.0f} MiB)"
                     if stream is not None else ""))
            return 0
        if st["phase"] == "transferring" and st["total"]:
            eta = "--" if st["eta_s"] is None else f"{st['eta_s']:.1f} s"
            sent = min(st["transferred"], st["total"])
            frac = sent / st["total"]
            text = (f"[{'#' * int(frac * 30):<30}] {sent / 2**20:7.1f} MiB sent, "
                    f"{st['remaining'] / 2**20:7.1f} MiB left, ETA {eta}")
            now = time.monotonic()
            if tty:
                print("\r" + text, end="", flush=True)
            elif now - last_line >= 1.0:
                print(text, flush=True)
                last_line = now
        time.sleep(0.2)


# ---- block devices -------------------------------------------------------------


def cmd_block_attach(args: list[str]) -> int:
    _nargs("block-attach", args, 4, 5)
    if len(args) == 5 and args[4] not in ("0", "Domain-0"):
        raise OptionError("Only Domain-0 can be a block backend")
    _client().domain_block_attach(dom=args[0], uname=args[1], dev=args[2], mode=args[3])
    return 0


def cmd_block_configure(args: list[str]) -> int:
    _nargs("block-configure", args, 4, 5)
    _client().domain_block_configure(dom=args[0], uname=args[1], dev=args[2], mode=args[3])
    return 0


def cmd_block_detach(args: list[str]) -> int:
    _nargs("block-detach", args, 2, 3)
    force = False
    if len(args) == 3:
        if args[2] in ("-f", "--force"):
            force = True
        else:
            print(f"Ignoring option {args[2]}")
    _client().domain_block_detach(dom=args[0], dev=args[1], force=force)
    return 0


def cmd_block_list(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = _getopt(args, "block-list")
    if not rest:
        raise OptionError("No domain parameter given")
    if len(rest) > 1:
        raise OptionError("No multiple domain parameters allowed")
    devices = _client().domain_block_list(dom=rest[0])
    text = format.device_long(devices) if "long" in opts else format.block_list(devices)
    if text:
        print(text)
    return 0


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
    _client().domain_network_attach(dom=args[0], options=options)
    return 0


def cmd_network_detach(args: list[str]) -> int:
    _nargs("network-detach", args, 2, 3)
    force = len(args) == 3 and args[2] in ("-f", "--force")
    if len(args) == 3 and not force:
        print(f"Ignoring option {args[2]}")
    _client().domain_network_detach(dom=args[0], devid=int(args[1]), force=force)
    return 0


def cmd_network_list(args: list[str]) -> int:
    from dom0.cli import format

    opts, rest = _getopt(args, "network-list")
    if not rest:
        raise OptionError("No domain parameter given")
    if len(rest) > 1:
        raise OptionError("No multiple domain parameters allowed")
    vifs = _client().domain_network_list(dom=rest[0])
    text = format.device_long(vifs) if "long" in opts else format.network_list(vifs)
    if text:
        print(text)
    return 0


def _nargs(command: str, args: list[str], lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if lo <= len(args) <= hi:
        return
    if lo == hi:
        raise UsageError(f"'xm {command}' requires {lo} argument{'s' if lo != 1 else ''}.\n")
    raise UsageError(f"'xm {command}' requires between {lo} and {hi} arguments.\n")
