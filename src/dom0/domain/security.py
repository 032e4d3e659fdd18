"""The access control policy as the domain layer applies it: which label each domain
carries (its config's ``access_control``), the running domains' labels that Chinese Wall
and policy updates are judged against, and the answers the management API gives
(getpolicy, labels, resources, dry-run).  The decisions are dom0.security's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dom0.errors import SecurityError
from dom0.model.config import DomainConfig
from dom0.model.labels import POLICY_TYPE, Label, parse_access_control, parse_label
from dom0.net import framefilter
from dom0.security import policy as policymod
from dom0.security.acm import AccessControl
from dom0.security.resources import canonical

#: (name, config) of every domain that runs (or is paused): what policies are judged by
RunningConfigs = Callable[[], Iterable[tuple[str, DomainConfig]]]
#: (config, host-side vif names) of every running domain: whose frames meet on bridges
RunningVifs = Callable[[], Iterable[tuple[DomainConfig, list[str]]]]


def label_of(cfg: DomainConfig) -> Label | None:
    """The domain's label: its config's ``access_control`` variable (kept in ``other``)."""
    return parse_access_control(list(cfg.other.get("access_control") or []))


class DomainSecurity:
    def __init__(self, acm: AccessControl, running: RunningConfigs,
                 running_vifs: RunningVifs | None = None) -> None:
        self.acm = acm
        self._running = running
        self._running_vifs = running_vifs
        #: whether the bridge filter table may exist (so that it is removed once)
        self._filtering = True

    def running_labels(self, excluding: str | None = None) -> list[tuple[str, Label | None]]:
        return [(name, label_of(cfg)) for name, cfg in self._running() if name != excluding]

    # ---- enforcement (create, start, restore, incoming migration, attach) -----------

    def check_start(self, cfg: DomainConfig) -> None:
        """What a domain gains when it starts: the right to run beside the running
        domains, and its disks.  (Its networks are checked where each vif's bridge is
        known: when the vif is plugged.)"""
        label = label_of(cfg)
        self.acm.check_run(label, self.running_labels(excluding=cfg.name))
        for disk in cfg.disks:
            self.acm.check_disk(label, disk.uname)

    def check_disk(self, cfg: DomainConfig, uname: str) -> None:
        self.acm.check_disk(label_of(cfg), uname)

    def check_network(self, cfg: DomainConfig, bridge: str) -> None:
        self.acm.check_network(label_of(cfg), bridge)

    def relabel(self, cfg: DomainConfig, label: str | None, policy: str | None,
                running: bool) -> list[str]:
        """The ``access_control`` a domain would carry with *label* (None: unlabelled),
        refused if it is not the active policy's or, for a running domain, if the new
        label breaks the Chinese Wall or loses one of its disks."""
        if label is None:
            if running and self.acm.active is not None:
                raise SecurityError("VM is not authorized to run.")
            return []
        active = self.acm.active
        lab = parse_label(label, default_policy=policy or (active.name if active else None))
        self.acm.check_label(lab)
        if active is not None and lab.label not in active.vm_labels:
            raise SecurityError(f"Label '{lab.label}' is not a domain label of policy "
                                f"'{lab.policy}'.")
        entries = [lab.access_control()]
        if running:
            trial = DomainConfig.from_dict({**cfg.to_dict(),
                                            "other": {**cfg.other, "access_control": entries}})
            self.check_start(trial)
        return entries

    def admit_vif(self, cfg: DomainConfig, bridge: str) -> None:
        """A vif of this domain is about to join *bridge*."""
        self.acm.check_network(label_of(cfg), bridge)

    def refresh_frame_filter(self, plugging: dict[str, DomainConfig] | None = None,
                             unplugging: str | None = None) -> None:
        """Bring the bridges' frame filter in line with the policy and the vifs of the
        running domains (plus one being plugged, minus one being unplugged).  Without
        a policy there is no filter at all."""
        if self._running_vifs is None:
            return
        vifs: dict[str, frozenset[str]] = {}
        if self.acm.active is not None:
            for cfg, names in self._running_vifs():
                for name in names:
                    vifs[name] = self.ste_types(cfg) or frozenset()
            for name, cfg in (plugging or {}).items():
                vifs[name] = self.ste_types(cfg) or frozenset()
            vifs.pop(unplugging or "", None)
        if vifs or self._filtering:
            framefilter.apply(vifs)
        self._filtering = bool(vifs)

    def ste_types(self, cfg: DomainConfig) -> frozenset[str] | None:
        """The STE types a domain's frames carry on a bridge; None with no policy."""
        p = self.acm.active
        if p is None:
            return None
        label = label_of(cfg)
        if label is None or label.policy != p.name or label.label not in p.vm_labels:
            return frozenset()
        return p.vm_labels[label.label].ste

    # ---- the management API -------------------------------------------------------

    def policy_info(self) -> dict[str, Any] | None:
        p = self.acm.active
        if p is None:
            return None
        return {"name": p.name, "version": p.version, "reference": p.reference,
                "type": POLICY_TYPE, "bootstrap": p.bootstrap, "xml": p.xml}

    def set_policy(self, xml: str) -> dict[str, Any]:
        self.acm.set_policy(xml, self.running_labels())
        self.refresh_frame_filter()
        info = self.policy_info()
        assert info is not None  # just installed
        return info

    def reset_policy(self) -> None:
        self.acm.reset_policy(self.running_labels())
        self.refresh_frame_filter()

    def dump_policy(self) -> str:
        p = self.acm.active
        if p is None:
            raise SecurityError("'NULL' policy. Nothing to dump.")
        return policymod.dump(p)

    def labels(self, xml: str | None, kind: str) -> list[str]:
        """Label names of the named policy (its XML, read by xm) or the active one."""
        if xml is not None:
            return policymod.parse(xml).labels(kind)
        if self.acm.active is None:
            raise SecurityError("No policy active, you must specify a <policy>")
        return self.acm.active.labels(kind)

    def resources(self) -> list[dict[str, str]]:
        return [{"resource": r, "type": lab.type, "policy": lab.policy, "label": lab.label}
                for r, lab in self.acm.resources.items()]

    def set_resource_label(self, resource: str, label: str, policy: str | None) -> None:
        active = self.acm.active
        if active is None:
            raise SecurityError("No policy is installed.")
        lab = parse_label(label, default_policy=policy or active.name)
        self.acm.check_label(lab)
        if lab.label not in active.res_labels:
            raise SecurityError(f"Label '{lab.label}' is not a resource label of policy "
                                f"'{lab.policy}'.")
        self.acm.resources.add(canonical(resource), lab)

    def remove_resource_label(self, resource: str) -> None:
        self.acm.resources.remove(canonical(resource))

    def resource_label(self, resource: str) -> str:
        lab = self.acm.resources.get(canonical(resource))
        if lab is None:
            raise SecurityError("Resource not labeled")
        return str(lab)

    def dry_run(self, cfg: DomainConfig) -> dict[str, Any]:
        """``xm dry-run``: would this domain and its disks be permitted (spec §8.1)?"""
        p, label = self.acm.active, label_of(cfg)
        lines, ok = ["Checking domain:"], True
        if p is None:
            if label is not None:
                lines += [f"   {cfg.name}: DENIED", "   --> Security off, but domain labeled"]
                ok = False
            else:
                lines.append(f"   {cfg.name}: PERMITTED")
        elif label is None:
            lines += [f"   {cfg.name}: DENIED", "   --> Domain not labeled"]
            ok = False
        elif label.policy != p.name or label.label not in p.vm_labels:
            lines += [f"   {cfg.name}: DENIED", f"   --> dom: {_show(label)}"]
            ok = False
        else:
            lines.append(f"   {cfg.name}: PERMITTED")
        lines.append("Checking resources:")
        for disk in cfg.disks:
            try:
                self.acm.check_disk(label, disk.uname) if p is not None else \
                    self._off_resource(disk.uname)
                lines.append(f"   {disk.uname}: PERMITTED")
            except SecurityError:
                ok = False
                res = self.acm.resources.get(_canonical_or_same(disk.uname))
                lines += [f"   {disk.uname}: DENIED",
                          f"   --> res: {_show(res) if res else 'unlabeled'}",
                          f"   --> dom: {_show(label) if label else 'unlabeled'}"]
        lines.append("Dry Run: PASSED" if ok else "Dry Run: FAILED")
        return {"lines": lines, "passed": ok}

    def _off_resource(self, uname: str) -> None:
        if self.acm.resources.get(_canonical_or_same(uname)) is not None:
            raise SecurityError(f"Security is off, but '{uname}' is labeled")


def _canonical_or_same(uname: str) -> str:
    try:
        return canonical(uname)
    except SecurityError:
        return uname


def _show(label: Label) -> str:
    return f"{label.label} ({label.type}:{label.policy})"

