"""xm's output formats (spec §1.3): pure functions from API data to text."""

from __future__ import annotations

import time

from dom0.model.cpus import format_cpu_list

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:  # kept off xm's fast path (xm list): only -l needs them at run time
    from typing import Any

    from dom0.model.sxp import Sxp

LIST_HEADER = "%-40s %5s %5s %5s %10s %9s" % ("Name", "ID", "Mem", "VCPUs", "State", "Time(s)")


def list_rows(domains: list[dict[str, Any]]) -> str:
    lines = [LIST_HEADER]
    for d in domains:
        domid = "" if d.get("domid") is None else str(d["domid"])
        vcpus = d.get("online_vcpus") or d.get("vcpus") or 0
        lines.append("%-40s %5s %5d %5d %10s %8.1f" % (
            d["name"], domid, d["memory"], vcpus, d.get("state") or "", d.get("cpu_time") or 0.0))
    return "\n".join(lines)


def list_label_rows(domains: list[dict[str, Any]], labels: dict[str, str]) -> str:
    """``xm list --label``: a Label column; rows sorted by label, case-insensitively
    (spec §1.3).  *labels* maps a domain's name to its label text."""
    lines = [LIST_HEADER + " %-10s" % "Label"]
    rows = sorted(domains, key=lambda d: labels.get(d["name"], "").lower())
    for d in rows:
        domid = "" if d.get("domid") is None else str(d["domid"])
        vcpus = d.get("online_vcpus") or d.get("vcpus") or 0
        lines.append("%-40s %5s %5d %5d %10s %8.1f %10s" % (
            d["name"], domid, d["memory"], vcpus, d.get("state") or "",
            d.get("cpu_time") or 0.0, labels.get(d["name"], "")))
    return "\n".join(lines)


def domain_sxp(d: dict[str, Any]) -> list[Sxp]:
    """The ``(domain ...)`` form of ``xm list -l``.  ``(domid ..)`` and ``(name ..)``
    are direct children, so pretty-printing puts each on its own line, as the
    xendomains script requires."""
    from dom0.model.config import DomainConfig

    out: list[Sxp] = ["domain"]
    if d.get("domid") is not None:
        out.append(["domid", str(d["domid"])])
    out.append(["uuid", d["uuid"]])
    cfg = DomainConfig.from_dict(d["config"]) if d.get("config") else None
    out.append(["vcpus", str(d["vcpus"])])
    if cfg:
        out += cfg.sxp_fields("cpus")
    out.append(["name", d["name"]])
    if cfg:  # xend's view: an action the config left unset is printed as its default
        out += cfg.sxp_fields("on_poweroff", "on_reboot", "on_crash", effective=True)
    out.append(["maxmem", str(d.get("maxmem", d["memory"]))])
    out.append(["memory", str(d["memory"])])
    if cfg:
        out += cfg.sxp_fields("on_xend_start", "on_xend_stop")
    if d.get("start_time") is not None:
        out.append(["start_time", "%.2f" % d["start_time"]])
    out.append(["cpu_time", "%.6f" % (d.get("cpu_time") or 0.0)])
    out.append(["online_vcpus", str(d.get("online_vcpus", 0))])
    if cfg:
        out += cfg.sxp_fields("cpu_weight", "cpu_cap")
        # an HVM screen's password sits in the image (as -n prints it): not shown here
        out.append(["image", [c for c in cfg.image_sxp()
                              if not (isinstance(c, list) and c[:1] == ["vncpasswd"])]])
    out.append(["status", str(d.get("status", 0))])
    if d.get("state"):
        out.append(["state", d["state"]])
    if d.get("shutdown_reason"):
        out.append(["shutdown_reason", d["shutdown_reason"]])
    if d.get("crash_reason"):  # dom0's own: why xend keeps it crashed (not Xen's key)
        out.append(["crash_reason", d["crash_reason"]])
    if cfg:
        devices = cfg.device_sxp()
        if cfg.hvm is not None and d.get("vnc"):  # Xen listed an HVM screen as a vfb too
            devices.append(["device", ["vfb", ["vnc", "1"]]])
        out += _with_vnc_location(devices, d.get("vnc"))
    if d.get("console") or d.get("crash_reason"):
        # a domain kept crashed has no console to attach to, but its log is kept
        console: list[Sxp] = ["console", ["protocol", "vt100"]]
        if d.get("console"):
            console.append(["location", d["console"]])
        if d.get("console_log"):
            console.append(["log", d["console_log"]])
        out.append(["device", console])
    return out


def _with_vnc_location(devices: list[Sxp], location: str | None) -> list[Sxp]:
    """Xen's running vfb shows where its VNC server listens: ``(location host:port)``;
    the password is not shown (Xen's xenstore kept it from unprivileged readers)."""
    out: list[Sxp] = []
    for dev in devices:
        form = dev[1] if isinstance(dev, list) and len(dev) > 1 else None
        if isinstance(form, list) and form and form[0] == "vfb":
            form = [c for c in form if not (isinstance(c, list) and c[:1] == ["vncpasswd"])]
            if location:
                form.append(["location", location])
                location = None
            dev = ["device", form]
        out.append(dev)
    return out


def list_long(domains: list[dict[str, Any]]) -> str:
    from dom0.model import sxp

    return "\n".join(sxp.pretty(domain_sxp(d)) for d in domains)


def _duration(seconds: float) -> tuple[int, int, int, int]:
    secs = int(seconds)
    days, secs = divmod(secs, 86400)
    hours, secs = divmod(secs, 3600)
    minutes, secs = divmod(secs, 60)
    return days, hours, minutes, secs


def _days(days: int) -> str:
    if not days:
        return ""
    return f"{days} day{'s' if days != 1 else ''}, "


def uptime(domains: list[dict[str, Any]], short: bool, now: float | None = None) -> str:
    lines = []
    if not short:
        lines.append("%-33s %4s %s " % ("Name", "ID", "Uptime"))
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    for d in domains:
        if d.get("domid") is None:
            continue
        days, hours, minutes, secs = _duration(d.get("uptime") or 0.0)
        if short:
            lines.append(" %s up %s%2d:%02d, %s (%s)" % (
                clock, _days(days), hours, minutes, d["name"], d["domid"]))
        else:
            lines.append("%-32s %5s %s%2d:%02d:%02d" % (
                d["name"], d["domid"], _days(days), hours, minutes, secs))
    return "\n".join(lines)


VCPU_HEADER = "%-32s %5s %5s %5s %5s %9s %s" % (
    "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "CPU Affinity")


def vcpu_list(entries: list[dict[str, Any]], nr_cpus: int) -> str:
    lines = [VCPU_HEADER]
    for e in entries:
        domid = "" if e.get("domid") is None else str(e["domid"])
        for v in e["vcpus"]:
            running = v.get("cpu", -1) >= 0
            cpu, state = (str(v["cpu"]), v["state"]) if running else ("", "")
            if v.get("online") is False:  # a vCPU not plugged in: Xen's offline vCPU
                cpu, state = "-", "--p"
            lines.append("%-32s %5s %5d %5s %5s  %8.1f %s" % (
                e["name"], domid, v["number"], cpu, state, v["cpu_time"],
                format_cpu_list(v["affinity"], nr_cpus)))
    return "\n".join(lines)


def info(rows: list[list[Any]], width: int = 23) -> str:
    lines = []
    for key, value in rows:
        if value is None or value == "":
            lines.append(("%-" + str(width) + "s: (none)") % key)
        else:
            lines.append(("%-" + str(width) + "s: %s") % (key, value))
    return "\n".join(lines)


BLOCK_HEADER = "Vdev  BE handle state evt-ch ring-ref BE-path"


def block_list(devices: list[dict[str, Any]]) -> str:
    """``xm block-list`` (spec §1.3); like xm, nothing at all when there is no device."""
    if not devices:
        return ""
    lines = [BLOCK_HEADER]
    for d in devices:
        lines.append("%(idx)-5d  %(backend-id)-3d  %(handle)-3d   %(state)-3d    "
                     "%(event-ch)-3d    %(ring-ref)-5d %(be-path)-30s  " % d)
    return "\n".join(lines)


def device_long(devices: list[dict[str, Any]]) -> str:
    """``--long``: each device as ``[devid, [[key, value] ...]]`` pretty-printed."""
    from dom0.model import sxp

    out = []
    for d in devices:
        pairs: list[Sxp] = [[k, str(v)] for k, v in d.items() if k != "idx"]
        out.append(sxp.pretty([str(d["idx"]), pairs]))
    return "\n".join(out)


VTPM_HEADER = "Idx  BE handle state evt-ch ring-ref BE-path"


def vtpm_list(vtpms: list[dict[str, Any]]) -> str:
    """``xm vtpm-list`` (spec §1.3); nothing at all when there is no device."""
    if not vtpms:
        return ""
    lines = [VTPM_HEADER]
    for d in vtpms:
        lines.append("%(idx)-3d   %(backend-id)-3d  %(handle)-3d   %(state)-3d    "
                     "%(event-ch)-3d    %(ring-ref)-5d %(be-path)-30s  " % d)
    return "\n".join(lines)


NETWORK_HEADER = "Idx BE     MAC Addr.     handle state evt-ch tx-/rx-ring-ref BE-path"


def network_list(vifs: list[dict[str, Any]]) -> str:
    """``xm network-list`` (spec §1.3); nothing at all when there is no device."""
    if not vifs:
        return ""
    lines = [NETWORK_HEADER]
    for d in vifs:
        lines.append("%(idx)-3d %(backend-id)-3d%(mac)-17s    %(handle)-3d   %(state)-3d    "
                     "%(event-ch)-3d   %(tx-ring-ref)-5d/%(rx-ring-ref)-5d   %(be-path)-30s  " % d)
    return "\n".join(lines)
