"""xm sched-credit and xm sched-sedf (spec §1.2, §1.3).

Both first ask xend which scheduler it runs (``xm info``'s ``xen_scheduler``) and
refuse the other one's command, as Xen's xm did.  ``sched-credit`` parses with plain
getopt (options must come first; what follows the first operand is ignored);
``sched-sedf`` takes the domain first, then its options in any order, in ms."""

from __future__ import annotations

import sys

from dom0.cli import opts as optparse
from dom0.cli.commands import nargs, xend
from dom0.client import XendClient
from dom0.errors import OptionError, UsageError, XendError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any

CREDIT_HEADER = "%-33s %4s %6s %4s" % ("Name", "ID", "Weight", "Cap")
SEDF_HEADER = "%-33s %4s %-4s %-4s %-7s %-5s %-6s" % (
    "Name", "ID", "Period(ms)", "Slice(ms)", "Lat(ms)", "Extra", "Weight")
NS_PER_MS = 1_000_000


class WrongScheduler(XendError):
    """xm's own refusal: the message alone, exit 1, no usage (as Xen's check_sched_type)."""

    show_usage = False


def check_scheduler(client: XendClient, wanted: str) -> None:
    current = "unknown"
    for row in client.node_info():
        if len(row) > 1 and row[0] == "xen_scheduler":
            current = str(row[1])
            break
    if current != wanted:
        raise WrongScheduler(f"Xen is running with the {current} scheduler")


def leading_options(args: list[str], options: list[optparse.Option]) -> list[str]:
    """The words plain (non-GNU) getopt reads as options: up to the first operand
    (or ``--``), an option's separate value included."""
    takes_value = {"-" + o.short for o in options if o.short and o.value}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-":
        if args[i] == "--":
            return args[:i + 1]
        if args[i] in takes_value or (args[i].startswith("--") and "=" not in args[i]
                                      and _long_takes_value(args[i], options)):
            i += 1  # its value is the next word
        i += 1
    return args[:i]


def _long_takes_value(word: str, options: list[optparse.Option]) -> bool:
    name = word[2:]
    matches = [o for o in options if o.long == name] or \
        [o for o in options if o.long.startswith(name)]
    return len(matches) == 1 and bool(matches[0].value)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise OptionError(f"invalid literal for int(): '{value}'") from None


def credit_row(name: str, domid: Any, weight: int, cap: int) -> str:
    return "%-32s %5s %6d %4d" % (name, "" if domid is None else domid, weight, cap)


def sedf_row(name: str, domid: int, info: dict[str, Any]) -> str:
    return "%-32s %5d %9.1f %9.1f %7.1f %6d %6d" % (
        name, domid, info["period"] / NS_PER_MS, info["slice"] / NS_PER_MS,
        info["latency"] / NS_PER_MS, info["extratime"], info["weight"])


def _matches(ident: str | None, dom: dict[str, Any]) -> bool:
    return ident is None or ident in (dom["name"], str(dom.get("domid")))


def cmd_sched_credit(args: list[str]) -> int:
    from dom0.cli.registry import BY_NAME

    options = BY_NAME["sched-credit"].options
    client = xend()
    check_scheduler(client, "credit")
    opts, _ = optparse.parse_options(leading_options(args, options), options)
    ident = opts.get("domain")
    weight = _int(opts["weight"]) if "weight" in opts else None
    cap = _int(opts["cap"]) if "cap" in opts else None
    if weight is not None or cap is not None:
        if ident is None:
            raise UsageError("No domain given.")
        client.domain_sched_credit_set(dom=ident, weight=weight, cap=cap)
        return 0
    doms = [d for d in client.domain_list() if _matches(ident, d)]
    if ident is not None and not doms:
        raise UsageError(f"Domain '{ident}' does not exist.")
    print(CREDIT_HEADER)
    for d in doms:
        try:
            info = client.domain_sched_credit_get(dom=d["name"])
        except XendError:
            info = {"weight": -1, "cap": -1}
        print(credit_row(d["name"], d.get("domid"), int(info["weight"]), int(info["cap"])))
    return 0


def sedf_values(opts: dict[str, str]) -> dict[str, int]:
    """The options given, converted as Xen's xm did: ms in, ns out."""
    out: dict[str, int] = {}
    for key in ("period", "slice", "latency"):
        if key in opts:
            out[key] = int(float(opts[key]) * NS_PER_MS)
    if "extratime" in opts:
        out["extratime"] = int(opts["extratime"])
    if "weight" in opts:
        out["weight"] = int(float(opts["weight"]))
    return out


def cmd_sched_sedf(args: list[str]) -> int:
    from dom0.cli.registry import BY_NAME

    client = xend()
    check_scheduler(client, "sedf")
    ident = None
    if args:
        nargs("sched-sedf", args, 1, 11)
        ident, args = args[0], args[1:]
    opts, _ = optparse.parse_options(args, BY_NAME["sched-sedf"].options)
    values = sedf_values(opts)
    doms = [d for d in client.domain_list(state="running") if _matches(ident, d)]
    if ident is not None and not doms:
        raise UsageError(f"Domain '{ident}' does not exist.")
    if values:
        for d in doms:
            client.domain_sched_sedf_set(dom=str(d["domid"]), **values)
        return 0
    print(SEDF_HEADER)
    for d in doms:
        try:
            info = client.domain_sched_sedf_get(dom=str(d["domid"]))
        except XendError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            continue
        print(sedf_row(d["name"], d["domid"], info))
    return 0
