"""The xend management API: one route per operation, each a thin call into the
services of ``api.services``.  Transport lives in ``server``; meaning lives in the
domain manager; this table only names, types and forwards.  The server checks every
argument against the declared types (``api.params``) before a handler runs, so a
handler may trust that a "string" is a str and an optional value is absent or set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dom0.api.services import Services, snapshot
from dom0.errors import ConfigError, VmError
from dom0.model.config import DomainConfig
from dom0.model.state import STATE_FILTER_NAMES

Handler = Callable[[Services[Any], dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    name: str
    summary: str
    #: parameter name -> JSON schema type ("string", "integer", "boolean", "object", "array")
    params: dict[str, str]
    required: tuple[str, ...]
    handler: Handler


ROUTES: dict[str, Route] = {}


def route(_name: str, summary: str, required: tuple[str, ...] = (), /,
          **params: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES[_name] = Route(_name, summary, params, required, fn)
        return fn
    return register


def _is_dom0(ident: Any) -> bool:
    return str(ident) in ("0", "Domain-0")


def _config(a: dict[str, Any]) -> DomainConfig:
    """The ``config`` object as a valid DomainConfig.  A wrongly shaped one (a disk
    that is not an object, a string where a number goes) is the caller's error, not
    xend's: checked here, at the boundary, before it reaches the manager."""
    try:
        cfg = DomainConfig.from_dict(a["config"])
        cfg.validate()
        return cfg
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ConfigError(f"Invalid domain configuration: {type(exc).__name__}: {exc}") \
            from None


def _names(a: dict[str, Any]) -> list[str]:
    """A list of domain names or IDs (an ID may come as a JSON number)."""
    return [str(n) for n in a.get("names", [])]


# ---- domains ---------------------------------------------------------------


@route("domain.list", "Domains with their state; Domain-0 included unless filtered out",
       state="string", names="array")
async def domain_list(x: Services[Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    state = a.get("state")
    names = _names(a)
    if state and state not in STATE_FILTER_NAMES:
        raise VmError(f"Invalid state: {state}")
    out = []
    others = [n for n in names if not _is_dom0(n)]
    if (not names and state in (None, "all", "running")) or len(others) < len(names):
        out.append(x.host.dom0_info())
    out += [d.info() for d in x.domains.select(state, others if names else None)]
    return out


@route("domain.info", "One domain's information", ("dom",), dom="string")
async def domain_info(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    if _is_dom0(a["dom"]):
        return x.host.dom0_info()
    return x.domains.lookup(a["dom"]).info()


@route("domain.create", "Create and start a transient domain", ("config",),
       config="object", paused="boolean")
async def domain_create(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await x.domains.create(_config(a), bool(a.get("paused")))).info()


@route("domain.new", "Register (or update) a managed domain", ("config",), config="object")
async def domain_new(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await x.domains.new(_config(a))).info()


@route("domain.delete", "Remove a managed domain", ("dom",), dom="string")
async def domain_delete(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.delete(a["dom"])


@route("domain.start", "Start a managed domain", ("dom",), dom="string", paused="boolean")
async def domain_start(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await x.domains.start_managed(a["dom"], bool(a.get("paused")))).info()


@route("domain.destroy", "Terminate a domain at once", ("dom",), dom="string")
async def domain_destroy(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.destroy(a["dom"])


@route("domain.shutdown", "Ask the guest to power off, halt or reboot", ("dom",),
       dom="string", mode="string")
async def domain_shutdown(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await x.domains.shutdown(a["dom"], a.get("mode") or "poweroff")).info()


@route("domain.reset", "Hard reset (new domain ID)", ("dom",), dom="string")
async def domain_reset(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.reset(a["dom"])


@route("domain.pause", "Pause a domain", ("dom",), dom="string")
async def domain_pause(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.pause(a["dom"])


@route("domain.unpause", "Unpause a domain", ("dom",), dom="string")
async def domain_unpause(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.unpause(a["dom"])


@route("domain.rename", "Rename a domain", ("dom", "name"), dom="string", name="string")
async def domain_rename(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.rename(a["dom"], a["name"])


@route("domain.sysrq", "Send a magic SysRq key", ("dom", "key"), dom="string", key="string")
async def domain_sysrq(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.sysrq(a["dom"], a["key"])


@route("domain.relabel", "Set (or, without a label, remove) a domain's ACM label", ("dom",),
       dom="string", label="string", policy="string")
async def domain_relabel(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await x.domains.relabel(a["dom"], a.get("label"), a.get("policy"))).info()


@route("domain.dump", "Dump the guest's memory as an ELF core", ("dom",), dom="string",
       file="string", live="boolean", crash="boolean", reset="boolean")
async def domain_dump(x: Services[Any], a: dict[str, Any]) -> str:
    return await x.domains.dump_core(a["dom"], a.get("file"), bool(a.get("live")),
                                     bool(a.get("crash")), bool(a.get("reset")))


@route("domain.vcpus", "Per-vCPU information of domains", names="array")
async def domain_vcpus(x: Services[Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    names = _names(a)
    out = []
    if not names or any(_is_dom0(n) for n in names):
        out.append({"name": "Domain-0", "domid": 0, "vcpus": x.host.dom0_vcpus()})
    for dom in x.domains.select(None, [n for n in names if not _is_dom0(n)] if names else None):
        out.append({"name": dom.name, "domid": dom.domid if dom.active else None,
                    "vcpus": x.domains.vcpu_info(dom)})
    return out


# ---- vCPUs and memory (issue 10) ----------------------------------------------------


def _not_dom0(ident: str) -> None:
    if _is_dom0(ident):
        raise VmError("Domain-0 is the host: its CPUs and memory are not set through xend")


@route("domain.vcpu_set", "Hot-plug or unplug vCPUs until the domain has this many",
       ("dom", "vcpus"), dom="string", vcpus="integer")
async def domain_vcpu_set(x: Services[Any], a: dict[str, Any]) -> None:
    _not_dom0(a["dom"])
    await x.domains.vcpu_set(a["dom"], a["vcpus"])


@route("domain.vcpu_pin", "Pin vCPU threads (a number or all) to host CPUs (0-3,5,^1 or all)",
       ("dom", "vcpu", "cpus"), dom="string", vcpu="string", cpus="string")
async def domain_vcpu_pin(x: Services[Any], a: dict[str, Any]) -> None:
    _not_dom0(a["dom"])
    await x.domains.vcpu_pin(a["dom"], a["vcpu"], a["cpus"])


@route("domain.mem_set", "Move the balloon target (MiB); returns the MiB the guest reached",
       ("dom", "memory"), dom="string", memory="integer")
async def domain_mem_set(x: Services[Any], a: dict[str, Any]) -> int:
    _not_dom0(a["dom"])
    return await x.domains.mem_set(a["dom"], a["memory"])


@route("domain.mem_max", "Set the memory ceiling (MiB), within the RAM the domain has",
       ("dom", "memory"), dom="string", memory="integer")
async def domain_mem_max(x: Services[Any], a: dict[str, Any]) -> None:
    _not_dom0(a["dom"])
    await x.domains.mem_max(a["dom"], a["memory"])


# ---- save and restore --------------------------------------------------------


@route("domain.save", "Save a domain's state to a file (and destroy it, unless checkpoint)",
       ("dom", "file"), dom="string", file="string", checkpoint="boolean")
async def domain_save(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.save(a["dom"], a["file"], bool(a.get("checkpoint")))


@route("domain.restore", "Restore a domain from a save file", ("file",), file="string",
       paused="boolean")
async def domain_restore(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await x.domains.restore(a["file"], bool(a.get("paused")))).info()


@route("domain.suspend", "Save a managed domain to its checkpoint", ("dom",), dom="string")
async def domain_suspend(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.suspend(a["dom"])


@route("domain.resume", "Resume a suspended managed domain", ("dom",), dom="string",
       paused="boolean")
async def domain_resume(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.resume(a["dom"], bool(a.get("paused")))


# ---- live migration ---------------------------------------------------------------


@route("domain.migrate", "Start migrating a domain to another host; returns a job id",
       ("dom", "host"), dom="string", host="string", port="integer", live="boolean",
       ssl="boolean")
async def domain_migrate(x: Services[Any], a: dict[str, Any]) -> str:
    tls = a.get("ssl")
    if tls is None:
        tls = x.relocation.ssl
    default = x.relocation.ssl_port if tls else x.relocation.port
    port = a.get("port") or default
    return x.domains.migrate(a["dom"], a["host"], port, bool(a.get("live")), bool(tls))


@route("domain.migrate_status", "Progress and outcome of a migration job", ("job",),
       job="string")
async def domain_migrate_status(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return x.domains.migration_status(a["job"])


# ---- block devices ----------------------------------------------------------


@route("domain.block_attach", "Attach a virtual block device; returns when the guest has it",
       ("dom", "uname", "dev", "mode"), dom="string", uname="string", dev="string",
       mode="string")
async def block_attach(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.block_attach(a["dom"], a["uname"], a["dev"], a["mode"])


@route("domain.block_detach", "Detach a virtual block device once the guest released it",
       ("dom", "dev"), dom="string", dev="string", force="boolean")
async def block_detach(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.block_detach(a["dom"], a["dev"], bool(a.get("force")))


@route("domain.usb_add", "Plug a USB device (tablet, mouse, keyboard, host:<vendor>:<product>, "
       "host:<bus>.<addr>) into a running domain", ("dom", "dev"), dom="string", dev="string")
async def usb_add(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.usb_add(a["dom"], a["dev"])


@route("domain.usb_del", "Unplug a USB device from a running domain", ("dom", "dev"),
       dom="string", dev="string")
async def usb_del(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.usb_del(a["dom"], a["dev"])


@route("domain.block_configure", "Change the medium of a CD-ROM drive",
       ("dom", "uname", "dev", "mode"), dom="string", uname="string", dev="string",
       mode="string")
async def block_configure(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.block_configure(a["dom"], a["uname"], a["dev"], a["mode"])


@route("domain.block_list", "A domain's virtual block devices", ("dom",), dom="string")
async def block_list(x: Services[Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    return await x.domains.block_list(a["dom"])


# ---- network interfaces ---------------------------------------------------------


@route("domain.network_attach", "Attach a vif; returns its device ID once the guest has it",
       ("dom",), dom="string", options="object")
async def network_attach(x: Services[Any], a: dict[str, Any]) -> int:
    options = a.get("options", {})
    bad = sorted(k for k, v in options.items() if not isinstance(v, str))
    if bad:
        raise VmError(f"domain.network_attach: option {bad[0]} must be a string")
    return await x.domains.network_attach(a["dom"], options)


@route("domain.network_detach", "Detach a vif once the guest released it", ("dom", "devid"),
       dom="string", devid="integer", force="boolean")
async def network_detach(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.network_detach(a["dom"], a["devid"], bool(a.get("force")))


@route("domain.network_list", "A domain's vifs", ("dom",), dom="string")
async def network_list(x: Services[Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    return await x.domains.network_list(a["dom"])


@route("domain.vtpm_list", "A domain's virtual TPMs", ("dom",), dom="string")
async def vtpm_list(x: Services[Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    return await x.domains.vtpm_list(a["dom"])


# ---- CPU scheduling -----------------------------------------------------------------

SEDF_PARAMS = ("period", "slice", "latency", "extratime", "weight")


@route("domain.sched_credit_get", "A domain's credit scheduler weight and cap", ("dom",),
       dom="string")
async def sched_credit_get(x: Services[Any], a: dict[str, Any]) -> dict[str, int]:
    return x.domains.sched_credit_get(a["dom"])


@route("domain.sched_credit_set", "Set a domain's credit weight and/or cap (kept in its config)",
       ("dom",), dom="string", weight="integer", cap="integer")
async def sched_credit_set(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.sched_credit_set(a["dom"], a.get("weight"), a.get("cap"))


@route("domain.sched_sedf_get", "A domain's SEDF parameters (times in ns)", ("dom",),
       dom="string")
async def sched_sedf_get(x: Services[Any], a: dict[str, Any]) -> dict[str, int]:
    return x.domains.sched_sedf_get(a["dom"])


@route("domain.sched_sedf_set", "Set a domain's SEDF parameters (times in ns; the others kept)",
       ("dom",), dom="string", period="integer", slice="integer", latency="integer",
       extratime="integer", weight="integer")
async def sched_sedf_set(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.sched_sedf_set(a["dom"], {k: a[k] for k in SEDF_PARAMS if k in a})


# ---- the host ------------------------------------------------------------


@route("node.info", "Host information rows (xm info)")
async def node_info(x: Services[Any], a: dict[str, Any]) -> list[list[Any]]:
    # in a thread: the first call asks QEMU and dpkg (build provenance), which must not
    # hold up the other requests
    return [list(r) for r in await asyncio.to_thread(x.host.node_info)]


@route("node.config", "xend's configuration (xm info -c)")
async def node_config(x: Services[Any], a: dict[str, Any]) -> list[list[Any]]:
    return [[k, v] for k, v in x.config.items()]


@route("node.dmesg", "xend's message ring (xm dmesg)", clear="boolean")
async def node_dmesg(x: Services[Any], a: dict[str, Any]) -> str:
    text = x.messages.text()
    if a.get("clear"):
        x.messages.clear()
    return text


@route("node.log", "The xend log file (xm log)")
async def node_log(x: Services[Any], a: dict[str, Any]) -> str:
    try:
        with open(x.logfile, errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise VmError(f"Cannot read {x.logfile}: {exc.strerror}") from None


# ---- access control (sHype/ACM, spec §8) -------------------------------------------


@route("security.policy_get", "The active access control policy (none: null)")
async def security_policy_get(x: Services[Any], a: dict[str, Any]) -> dict[str, Any] | None:
    return x.security.policy_info()


@route("security.policy_set", "Install and activate a policy (its XML)", ("xml",), xml="string")
async def security_policy_set(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return x.security.set_policy(a["xml"])


@route("security.policy_reset", "Remove the policy (no labelled domain may run)")
async def security_policy_reset(x: Services[Any], a: dict[str, Any]) -> None:
    x.security.reset_policy()


@route("security.policy_dump", "The active policy's types and labels (xm dumppolicy)")
async def security_policy_dump(x: Services[Any], a: dict[str, Any]) -> str:
    return x.security.dump_policy()


@route("security.labels", "Label names of a policy (its XML) or the active one",
       ("kind",), xml="string", kind="string")
async def security_labels(x: Services[Any], a: dict[str, Any]) -> list[str]:
    return x.security.labels(a.get("xml"), a["kind"])


@route("security.resources", "Labelled resources (xm resources)")
async def security_resources(x: Services[Any], a: dict[str, Any]) -> list[dict[str, str]]:
    return x.security.resources()


@route("security.resource_label_set", "Label a resource", ("resource", "label"),
       resource="string", label="string", policy="string")
async def security_resource_label_set(x: Services[Any], a: dict[str, Any]) -> None:
    x.security.set_resource_label(a["resource"], a["label"], a.get("policy"))


@route("security.resource_label_remove", "Remove a resource's label", ("resource",),
       resource="string")
async def security_resource_label_remove(x: Services[Any], a: dict[str, Any]) -> None:
    x.security.remove_resource_label(a["resource"])


@route("security.resource_label_get", "A resource's label", ("resource",), resource="string")
async def security_resource_label_get(x: Services[Any], a: dict[str, Any]) -> str:
    return x.security.resource_label(a["resource"])


@route("security.dry_run", "Would a domain and its disks be permitted? (xm dry-run)",
       ("config",), config="object")
async def security_dry_run(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return x.security.dry_run(_config(a))


@route("node.figures", "Every domain's figures in one snapshot (xm top)")
async def node_figures(x: Services[Any], a: dict[str, Any]) -> dict[str, Any]:
    return (await snapshot(x.host, x.domains)).to_dict()


# ---- host commands: trigger, debug-keys --------------------------------------


@route("domain.trigger", "Send a trigger (nmi, reset, init, s3resume, power) to a domain",
       ("dom", "trigger"), dom="string", trigger="string", vcpu="integer")
async def domain_trigger(x: Services[Any], a: dict[str, Any]) -> None:
    await x.domains.trigger(a["dom"], a["trigger"], a.get("vcpu", 0))


@route("node.debug_keys", "Run debug keys; their output goes to xm dmesg", ("keys",),
       keys="string")
async def node_debug_keys(x: Services[Any], a: dict[str, Any]) -> None:
    x.domains.debug_keys(a["keys"])


def openapi() -> dict[str, Any]:
    """The OpenAPI description of ``ROUTES`` (kept as docs/openapi.json, tested)."""
    paths: dict[str, Any] = {}
    for r in sorted(ROUTES.values(), key=lambda r: r.name):
        props = {k: {"type": v} for k, v in r.params.items()}
        body: dict[str, Any] = {"type": "object", "properties": props}
        if r.required:
            body["required"] = list(r.required)
        paths[f"/api/{r.name}"] = {"post": {
            "operationId": r.name,
            "summary": r.summary,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": {"description": "result",
                        "content": {"application/json": {"schema": {
                            "type": "object", "properties": {"result": {}}}}}},
                "default": {"description": "error",
                            "content": {"application/json": {"schema": {
                                "$ref": "#/components/schemas/Error"}}}},
            },
        }}
    return {
        "openapi": "3.0.3",
        "info": {"title": "xend management API (dom0)", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {
                "class": {"type": "string"}, "message": {"type": "string"},
                "data": {"type": "object"}}}}}}},
    }
