"""The xend API's route table, mirrored as typed methods: one per route, named
after it (``domain.create`` -> ``domain_create``), with its parameters as keyword
arguments of the declared types.  A unit test compares this class with
``dom0.api.routes.ROUTES``, so the two cannot drift apart.

Standard library only, and nothing imported at all: it is on xm's start-up path.
An optional argument left as None is sent as JSON null, which the server reads as
absent."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from typing import Any


class XendApi:
    """The typed calls; ``call`` (one request, one reply) is the transport's."""

    def call(self, _route: str, /, **args: Any) -> Any:
        raise NotImplementedError

    def domain_list(self, *, state: str | None = None,
                    names: list[str] | None = None) -> list[dict[str, Any]]:
        """Domains with their state; Domain-0 included unless filtered out."""
        return self.call("domain.list", state=state, names=names)

    def domain_info(self, *, dom: str) -> dict[str, Any]:
        """One domain's information."""
        return self.call("domain.info", dom=dom)

    def domain_create(
            self, *, config: dict[str, Any], paused: bool | None = None) -> dict[str, Any]:
        """Create and start a transient domain."""
        return self.call("domain.create", config=config, paused=paused)

    def domain_new(self, *, config: dict[str, Any]) -> dict[str, Any]:
        """Register (or update) a managed domain."""
        return self.call("domain.new", config=config)

    def domain_delete(self, *, dom: str) -> None:
        """Remove a managed domain."""
        self.call("domain.delete", dom=dom)

    def domain_start(self, *, dom: str, paused: bool | None = None) -> dict[str, Any]:
        """Start a managed domain."""
        return self.call("domain.start", dom=dom, paused=paused)

    def domain_destroy(self, *, dom: str) -> None:
        """Terminate a domain at once."""
        self.call("domain.destroy", dom=dom)

    def domain_shutdown(self, *, dom: str, mode: str | None = None) -> dict[str, Any]:
        """Ask the guest to power off, halt or reboot."""
        return self.call("domain.shutdown", dom=dom, mode=mode)

    def domain_reset(self, *, dom: str) -> None:
        """Hard reset (new domain ID)."""
        self.call("domain.reset", dom=dom)

    def domain_pause(self, *, dom: str) -> None:
        """Pause a domain."""
        self.call("domain.pause", dom=dom)

    def domain_unpause(self, *, dom: str) -> None:
        """Unpause a domain."""
        self.call("domain.unpause", dom=dom)

    def domain_rename(self, *, dom: str, name: str) -> None:
        """Rename a domain."""
        self.call("domain.rename", dom=dom, name=name)

    def domain_sysrq(self, *, dom: str, key: str) -> None:
        """Send a magic SysRq key."""
        self.call("domain.sysrq", dom=dom, key=key)

    def domain_relabel(self, *, dom: str, label: str | None = None,
                       policy: str | None = None) -> dict[str, Any]:
        """Set (or, without a label, remove) a domain's ACM label."""
        return self.call("domain.relabel", dom=dom, label=label, policy=policy)

    def domain_dump(
            self, *, dom: str, file: str | None = None, live: bool | None = None,
            crash: bool | None = None, reset: bool | None = None) -> str:
        """Dump the guest's memory as an ELF core."""
        return self.call("domain.dump", dom=dom, file=file, live=live, crash=crash, reset=reset)

    def domain_vcpus(self, *, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Per-vCPU information of domains."""
        return self.call("domain.vcpus", names=names)

    def domain_vcpu_set(self, *, dom: str, vcpus: int) -> None:
        """Hot-plug or unplug vCPUs until the domain has this many."""
        self.call("domain.vcpu_set", dom=dom, vcpus=vcpus)

    def domain_vcpu_pin(self, *, dom: str, vcpu: str, cpus: str) -> None:
        """Pin vCPU threads (a number or all) to host CPUs (0-3,5,^1 or all)."""
        self.call("domain.vcpu_pin", dom=dom, vcpu=vcpu, cpus=cpus)

    def domain_mem_set(self, *, dom: str, memory: int) -> int:
        """Move the balloon target (MiB); returns the MiB the guest reached."""
        return self.call("domain.mem_set", dom=dom, memory=memory)

    def domain_mem_max(self, *, dom: str, memory: int) -> None:
        """Set the memory ceiling (MiB), within the RAM the domain has."""
        self.call("domain.mem_max", dom=dom, memory=memory)

    def domain_save(self, *, dom: str, file: str, checkpoint: bool | None = None) -> None:
        """Save a domain's state to a file (and destroy it, unless checkpoint)."""
        self.call("domain.save", dom=dom, file=file, checkpoint=checkpoint)

    def domain_restore(self, *, file: str, paused: bool | None = None) -> dict[str, Any]:
        """Restore a domain from a save file."""
        return self.call("domain.restore", file=file, paused=paused)

    def domain_suspend(self, *, dom: str) -> None:
        """Save a managed domain to its checkpoint."""
        self.call("domain.suspend", dom=dom)

    def domain_resume(self, *, dom: str, paused: bool | None = None) -> None:
        """Resume a suspended managed domain."""
        self.call("domain.resume", dom=dom, paused=paused)

    def domain_migrate(
            self, *, dom: str, host: str, port: int | None = None, live: bool | None = None,
            ssl: bool | None = None) -> str:
        """Start migrating a domain to another host; returns a job id."""
        return self.call("domain.migrate", dom=dom, host=host, port=port, live=live, ssl=ssl)

    def domain_migrate_status(self, *, job: str) -> dict[str, Any]:
        """Progress and outcome of a migration job."""
        return self.call("domain.migrate_status", job=job)

    def domain_block_attach(self, *, dom: str, uname: str, dev: str, mode: str) -> None:
        """Attach a virtual block device; returns when the guest has it."""
        self.call("domain.block_attach", dom=dom, uname=uname, dev=dev, mode=mode)

    def domain_block_detach(self, *, dom: str, dev: str, force: bool | None = None) -> None:
        """Detach a virtual block device once the guest released it."""
        self.call("domain.block_detach", dom=dom, dev=dev, force=force)

    def domain_usb_add(self, *, dom: str, dev: str) -> None:
        """Plug a USB device (tablet, mouse, keyboard, host:<vendor>:<product>,
        host:<bus>.<addr>) into a running domain."""
        self.call("domain.usb_add", dom=dom, dev=dev)

    def domain_usb_del(self, *, dom: str, dev: str) -> None:
        """Unplug a USB device from a running domain."""
        self.call("domain.usb_del", dom=dom, dev=dev)

    def domain_block_configure(self, *, dom: str, uname: str, dev: str, mode: str) -> None:
        """Change the medium of a CD-ROM drive."""
        self.call("domain.block_configure", dom=dom, uname=uname, dev=dev, mode=mode)

    def domain_block_list(self, *, dom: str) -> list[dict[str, Any]]:
        """A domain's virtual block devices."""
        return self.call("domain.block_list", dom=dom)

    def domain_network_attach(self, *, dom: str, options: dict[str, Any] | None = None) -> int:
        """Attach a vif; returns its device ID once the guest has it."""
        return self.call("domain.network_attach", dom=dom, options=options)

    def domain_network_detach(self, *, dom: str, devid: int, force: bool | None = None) -> None:
        """Detach a vif once the guest released it."""
        self.call("domain.network_detach", dom=dom, devid=devid, force=force)

    def domain_network_list(self, *, dom: str) -> list[dict[str, Any]]:
        """A domain's vifs."""
        return self.call("domain.network_list", dom=dom)

    def domain_vtpm_list(self, *, dom: str) -> list[dict[str, Any]]:
        """A domain's virtual TPMs."""
        return self.call("domain.vtpm_list", dom=dom)

    def domain_sched_credit_get(self, *, dom: str) -> dict[str, Any]:
        """A domain's credit scheduler weight and cap."""
        return self.call("domain.sched_credit_get", dom=dom)

    def domain_sched_credit_set(self, *, dom: str, weight: int | None = None,
                                cap: int | None = None) -> None:
        """Set a domain's credit weight and/or cap (kept in its config)."""
        self.call("domain.sched_credit_set", dom=dom, weight=weight, cap=cap)

    def domain_sched_sedf_get(self, *, dom: str) -> dict[str, Any]:
        """A domain's SEDF parameters (times in ns)."""
        return self.call("domain.sched_sedf_get", dom=dom)

    def domain_sched_sedf_set(
            self, *, dom: str, period: int | None = None, slice: int | None = None,
            latency: int | None = None, extratime: int | None = None,
            weight: int | None = None) -> None:
        """Set a domain's SEDF parameters (times in ns; the others kept)."""
        self.call("domain.sched_sedf_set", dom=dom, period=period, slice=slice,
                  latency=latency, extratime=extratime, weight=weight)

    def node_info(self) -> list[list[Any]]:
        """Host information rows (xm info)."""
        return self.call("node.info")

    def node_config(self) -> list[list[Any]]:
        """xend's configuration (xm info -c)."""
        return self.call("node.config")

    def node_dmesg(self, *, clear: bool | None = None) -> str:
        """xend's message ring (xm dmesg)."""
        return self.call("node.dmesg", clear=clear)

    def node_figures(self) -> dict[str, Any]:
        """Every domain's figures in one snapshot (xm top)."""
        return self.call("node.figures")

    def node_log(self) -> str:
        """The xend log file (xm log)."""
        return self.call("node.log")

    def security_policy_get(self) -> dict[str, Any] | None:
        """The active access control policy (none: null)."""
        return self.call("security.policy_get")

    def security_policy_set(self, *, xml: str) -> dict[str, Any]:
        """Install and activate a policy (its XML)."""
        return self.call("security.policy_set", xml=xml)

    def security_policy_reset(self) -> None:
        """Remove the policy (no labelled domain may run)."""
        self.call("security.policy_reset")

    def security_policy_dump(self) -> str:
        """The active policy's types and labels (xm dumppolicy)."""
        return self.call("security.policy_dump")

    def security_labels(self, *, kind: str, xml: str | None = None) -> list[str]:
        """Label names of a policy (its XML) or the active one."""
        return self.call("security.labels", xml=xml, kind=kind)

    def security_resources(self) -> list[dict[str, str]]:
        """Labelled resources (xm resources)."""
        return self.call("security.resources")

    def security_resource_label_set(self, *, resource: str, label: str,
                                    policy: str | None = None) -> None:
        """Label a resource."""
        self.call("security.resource_label_set", resource=resource, label=label, policy=policy)

    def security_resource_label_remove(self, *, resource: str) -> None:
        """Remove a resource's label."""
        self.call("security.resource_label_remove", resource=resource)

    def security_resource_label_get(self, *, resource: str) -> str:
        """A resource's label."""
        return self.call("security.resource_label_get", resource=resource)

    def security_dry_run(self, *, config: dict[str, Any]) -> dict[str, Any]:
        """Would a domain and its disks be permitted? (xm dry-run)."""
        return self.call("security.dry_run", config=config)

    def domain_trigger(self, *, dom: str, trigger: str, vcpu: int | None = None) -> None:
        """Send a trigger (nmi, reset, init, s3resume, power) to a domain."""
        self.call("domain.trigger", dom=dom, trigger=trigger, vcpu=vcpu)

    def node_debug_keys(self, *, keys: str) -> None:
        """Run debug keys; their output goes to xm dmesg."""
        self.call("node.debug_keys", keys=keys)
