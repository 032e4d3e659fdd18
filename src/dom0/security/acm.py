"""xend's access control: the active ACM policy (installed under xend-security-path,
loaded again at every start), the resource labels, and the checks made wherever a
domain gains something: the right to run (Chinese Wall against the running domains),
a disk or a network (Simple Type Enforcement).  Texts are spec §8.4's.

Callers describe the running domains as (name, label) pairs, so this module knows
nothing of the domain table; the domain layer asks it at each entry point."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from dom0.errors import SecurityError
from dom0.model.labels import Label
from dom0.security import policy as policymod
from dom0.security.policy import Policy
from dom0.security.resources import ResourceLabels, canonical

log = logging.getLogger("xend.security")

Running = Iterable[tuple[str, "Label | None"]]


class AccessControl:
    def __init__(self, security_dir: str | Path) -> None:
        self.dir = Path(security_dir)
        self.policy_file = self.dir / "policy.xml"
        self.resources = ResourceLabels(self.dir / "policies" / "resource_labels")
        self.active: Policy | None = self._load()

    def _load(self) -> Policy | None:
        try:
            xml = self.policy_file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return policymod.parse(xml)
        except SecurityError as exc:
            # the file was ours and valid when installed: say so loudly, enforce nothing
            # silently wrong; refusing every domain would be worse than the log line
            log.error("installed policy %s is invalid, no policy loaded: %s",
                      self.policy_file, exc)
            return None

    # ---- the policy --------------------------------------------------------------

    def set_policy(self, xml: str, running: Running) -> Policy:
        """Install and activate a policy; refused if a running domain would break it."""
        new = policymod.parse(xml)
        renamed_from = new.from_policy[0] if new.from_policy else None
        for name, label in running:
            if label is None:
                continue
            if label.policy not in (new.name, renamed_from):
                raise SecurityError(f"Could not set the policy: domain '{name}' is labeled "
                                    f"for policy '{label.policy}'.")
            if label.label not in new.vm_labels:
                raise SecurityError(f"Could not set the policy: label '{label.label}' of "
                                    f"domain '{name}' is not in policy '{new.name}'.")
        self._check_running_cw(new, running)
        self._write(new.xml)
        old, self.active = self.active, new
        if old is not None and renamed_from == old.name and old.name != new.name:
            self.resources.relabel_policy(old.name, new.name)  # an update renamed it
        return new

    def _check_running_cw(self, p: Policy, running: Running) -> None:
        labelled = [(n, lab.label) for n, lab in running if lab is not None]
        for i, (name, a) in enumerate(labelled):
            for other, b in labelled[i + 1:]:
                if p.conflict(a, b):
                    raise SecurityError(f"Could not set the policy: domains '{name}' and "
                                        f"'{other}' are in one conflict set.")

    def reset_policy(self, running: Running) -> None:
        if any(label is not None for _, label in running):
            raise SecurityError("Could not reset the system's policy. Try to halt all guests.")
        self.policy_file.unlink(missing_ok=True)
        self.active = None

    def _write(self, xml: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".policy.", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(xml)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.policy_file)
        except BaseException:
            os.unlink(tmp)
            raise

    # ---- checks -------------------------------------------------------------------

    def check_label(self, label: Label) -> None:
        """A label someone wants to give: of the active policy and defined in it."""
        p = self._require_policy()
        if label.policy != p.name:
            raise SecurityError(f"Security policy ({label.policy}) incompatible with "
                                f"enforced policy ({p.name}).")
        if label.label not in p.vm_labels and label.label not in p.res_labels:
            raise SecurityError(f"Label '{label.label}' is not defined in policy '{p.name}'.")

    def _require_policy(self) -> Policy:
        if self.active is None:
            raise SecurityError("No policy is installed.")
        return self.active

    def check_run(self, label: Label | None, running: Running) -> None:
        """May a domain with this label start beside the running ones?"""
        p = self.active
        if p is None:
            return  # security is off: labels are kept, nothing is enforced
        if label is None:
            raise SecurityError("VM is not authorized to run.")
        if label.policy != p.name:
            raise SecurityError(f"Security policy ({label.policy}) incompatible with "
                                f"enforced policy ({p.name}).")
        if label.label not in p.vm_labels:
            raise SecurityError("VM is not authorized to run.")
        for _, other in running:
            if other is not None and other.label in p.vm_labels \
                    and p.conflict(label.label, other.label):
                raise SecurityError("Domain in conflict set with running domain?")

    def check_disk(self, label: Label | None, uname: str) -> None:
        p = self.active
        if p is None:
            return
        if label is None:
            raise SecurityError(f"VM must have a security label to access block device "
                                f"'{uname}'")
        res = self._resource_label(uname)
        if res is None:
            raise SecurityError(f"Resource '{uname}' is not labeled")
        if res.policy != p.name or res.label not in p.res_labels \
                or not p.may_use(label.label, res.label):
            raise SecurityError(f"VM's access to block device '{uname}' denied")

    def check_network(self, label: Label | None, bridge: str) -> None:
        """A vif on *bridge*.  A bridge labelled as resource ``bridge:<name>`` admits
        only domains holding its type; an unlabelled bridge is shared by any labelled
        domains, and the frame filter keeps apart those without a common type."""
        p = self.active
        if p is None:
            return
        if label is None:
            raise SecurityError("VM must have a security label to access network device")
        res = self.resources.get(f"bridge:{bridge}")
        if res is None:
            return
        if res.policy != p.name or res.label not in p.res_labels \
                or not p.may_use(label.label, res.label):
            raise SecurityError("VM's access to network device denied. Check labeling")

    def _resource_label(self, uname: str) -> Label | None:
        try:
            name = canonical(uname)
        except SecurityError:
            name = uname
        return self.resources.get(name)

    def may_share_frames(self, a: Label | None, b: Label | None) -> bool:
        """May two domains on one bridge exchange frames (a common STE type)?"""
        p = self.active
        if p is None:
            return True
        if a is None or b is None or a.label not in p.vm_labels or b.label not in p.vm_labels:
            return False
        return p.may_share(a.label, b.label)
