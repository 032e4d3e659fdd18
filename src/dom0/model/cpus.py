"""CPU lists as Xen wrote them (``0-3,5,^1``), and the Affinity column of
``xm vcpu-list``.  Dependency-free: xm imports it on its fast path."""

from __future__ import annotations

from dom0.errors import ConfigError

#: no host has more CPUs than Linux's largest NR_CPUS; a bound keeps ``0-10**12`` from
#: building a set of 10^12 numbers (the check would run for hours, then run out of memory)
MAX_CPU = 8191


def parse_cpu_list(spec: str, max_cpus: int = 64) -> list[int]:
    """``"0-3,5,^1"`` -> ``[0, 2, 3, 5]`` (spec §1.2 vcpu-pin); ``all`` is every CPU."""
    spec = str(spec).strip()
    if spec == "all":
        return list(range(max_cpus))
    chosen: set[int] = set()
    removed: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        target = chosen
        if part.startswith("^"):
            target, part = removed, part[1:]
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                if hi > MAX_CPU:
                    raise ValueError
                target.update(range(lo, hi + 1))
            else:
                cpu = int(part)
                if cpu > MAX_CPU:
                    raise ValueError
                target.add(cpu)
        except ValueError:
            shown = spec if len(spec) <= 64 else spec[:64] + "..."
            raise ConfigError(f"Invalid CPU list: {shown}") from None
    return sorted(chosen - removed)


def format_cpu_list(cpus: list[int], nr_cpus: int) -> str:
    """The CPU Affinity column of ``xm vcpu-list``: ``any cpu``, ``no cpus`` or ranges."""
    present = sorted(set(cpus))
    if not present:
        return "no cpus"
    if set(range(nr_cpus)) <= set(present):
        return "any cpu"
    ranges = []
    start = prev = present[0]
    for c in present[1:] + [None]:  # type: ignore[list-item]
        if c is not None and c == prev + 1:
            prev = c
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(ranges)
