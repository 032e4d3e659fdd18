"""xm vcpu-set, vcpu-pin, mem-set, mem-max: a domain's vCPUs and memory."""

from __future__ import annotations

import sys

from dom0.cli.commands import nargs, xend


def parse_memory(text: str) -> int:
    """xm's memory argument (spec §1.1): an integer with an optional k, m or g suffix,
    MiB without one; another letter is ignored with a warning, as xm did.  A bad
    number raises ValueError (``Error: Invalid argument.``)."""
    suffix = text[-1:].lower()
    if suffix.isdigit():
        return int(text)
    number = int(text[:-1])
    if suffix == "k":
        return number // 1024
    if suffix == "g":
        return number * 1024
    if suffix != "m":
        print("ignoring unknown unit")
    return number


def cmd_vcpu_set(args: list[str]) -> int:
    nargs("vcpu-set", args, 2)
    xend().domain_vcpu_set(dom=args[0], vcpus=int(args[1]))
    return 0


def cmd_vcpu_pin(args: list[str]) -> int:
    nargs("vcpu-pin", args, 3)
    vcpu = args[1]
    if vcpu != "all":
        int(vcpu)  # not a number: Error: Invalid argument.
    xend().domain_vcpu_pin(dom=args[0], vcpu=vcpu, cpus=args[2])
    return 0


def cmd_mem_set(args: list[str]) -> int:
    nargs("mem-set", args, 2)
    target = parse_memory(args[1])
    reached = xend().domain_mem_set(dom=args[0], memory=target)
    if reached != target:
        # not an error: the balloon keeps its target and the guest may still get there
        print(f"Domain {args[0]} holds {reached} MiB: the guest has not reached its new "
              f"target of {target} MiB (the balloon stays at it).", file=sys.stderr)
    return 0


def cmd_mem_max(args: list[str]) -> int:
    nargs("mem-max", args, 2)
    xend().domain_mem_max(dom=args[0], memory=parse_memory(args[1]))
    return 0
