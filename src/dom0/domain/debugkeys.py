"""``xm debug-keys``: what each key makes our "hypervisor" dump into the message ring
that ``xm dmesg`` prints.

Xen ran a handler per key on its console ring ('q' dumped domains, 'h' listed the
keys).  Our hypervisor is xend plus one QEMU per domain, so the honest dump is of
those: each domain's ID, name, state, QEMU process and memory, and each vCPU's host
thread, the host CPU it last ran on, its thread state, CPU time and affinity."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from dom0.domain.domain import Domain


def _domain_lines(dom: Domain) -> list[str]:
    info = dom.info()
    run = dom.running if dom.active else None
    domid = "-" if run is None else str(run.domid)
    lines = [f"General information for domain {domid} ({info['name']}):",
             f"    uuid={info['uuid']} state={info['power_state']} "
             f"flags={info['state'] or '------'} managed={int(bool(info['managed']))}",
             f"    memory={info['memory']} MiB maxmem={info['maxmem']} MiB "
             f"vcpus={info['vcpus']}"]
    if run is not None:
        lines.append(f"    qemu pid={run.machine.pid} accel={run.machine.accel} "
                     f"cpu_time={info['cpu_time']:.1f}s")
    return lines


def _vcpu_lines(dom: Domain) -> list[str]:
    run = dom.running if dom.active else None
    if run is None:
        return [f"VCPU information for domain - ({dom.name}): not running"]
    lines = [f"VCPU information for domain {run.domid} ({dom.name}):"]
    figures = run.machine.vcpu_figures()
    for n, tid in enumerate(run.machine.vcpu_threads):
        secs, cpu, tstate = figures[n] if n < len(figures) else (0.0, -1, "?")
        try:
            affinity = ",".join(str(c) for c in sorted(os.sched_getaffinity(tid)))
        except OSError:
            affinity = "?"
        lines.append(f"    VCPU{n}: thread={tid} CPU{cpu} state={tstate} "
                     f"time={secs:.1f}s affinity={{{affinity}}}")
    return lines


def _each(domains: Iterable[Domain], dump: Callable[[Domain], list[str]]) -> list[str]:
    out: list[str] = []
    for dom in sorted(domains, key=lambda d: (d.domid is None, d.domid or 0, d.name)):
        out += dump(dom)
    return out or ["no domains"]


#: key -> (what it does, as 'h' lists it, the dump)
KEYS: dict[str, tuple[str, Callable[[Iterable[Domain]], list[str]]]] = {
    "q": ("dump domain (and guest debug) info", lambda ds: _each(ds, _domain_lines)),
    "v": ("dump vCPU threads and the host CPUs they ran on",
          lambda ds: _each(ds, _vcpu_lines)),
}


def _help(_domains: Iterable[Domain]) -> list[str]:
    return [f" '{k}' pressed -> {what}" for k, (what, _) in
            sorted({**KEYS, "h": ("show this message", _help)}.items())]


def run_keys(keys: str, domains: Iterable[Domain], emit: Callable[[str], None]) -> None:
    """Run each key's handler in turn; each line goes to *emit* (the message ring)."""
    table = {**KEYS, "h": ("show this message", _help)}
    domains = list(domains)
    for key in keys:
        if key.isspace():
            continue
        if key not in table:
            emit(f"'{key}' pressed -> no handler ('h' lists the keys)")
            continue
        what, dump = table[key]
        emit(f"'{key}' pressed -> {what}")
        for line in dump(domains):
            emit(line)
