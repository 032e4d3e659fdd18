"""ACM label grammar shared by xm and xend (spec §8, §2.3 ``access_control``): a domain's
``access_control = ['policy=P,label=L']`` entry, the ``ACM:<policy>:<label>`` form labels
are shown in, and where a policy of a given name is kept.  The policy itself and the
decisions live on xend's side (dom0.security)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dom0.errors import SecurityError

POLICY_TYPE = "ACM"
#: what xm shows for something without a label
UNLABELED = "__UNLABELED__"
#: Xen's default directory of policies (setpolicy looks in ./ first)
POLICIES_DIR = "/etc/xen/acm-security/policies"


@dataclass(frozen=True)
class Label:
    policy: str
    label: str
    type: str = POLICY_TYPE

    def __str__(self) -> str:
        return f"{self.type}:{self.policy}:{self.label}"

    def access_control(self) -> str:
        """The config file entry (``xm addlabel ... dom``)."""
        return f"policy={self.policy},label={self.label}"


def parse_access_control(entries: list[str]) -> Label | None:
    """A config's ``access_control`` list: none, or exactly one ``policy=P,label=L``."""
    if not entries:
        return None
    if len(entries) > 1:
        raise SecurityError("VM config error: Multiple access_control definitions!")
    fields = {}
    for part in entries[0].split(","):
        key, eq, value = part.strip().partition("=")
        if not eq or key not in ("policy", "label") or not value:
            raise SecurityError(f"Invalid access_control entry: '{entries[0]}'")
        fields[key] = value
    if set(fields) != {"policy", "label"}:
        raise SecurityError(f"Invalid access_control entry: '{entries[0]}'")
    return Label(fields["policy"], fields["label"])


def parse_label(text: str, default_policy: str | None = None) -> Label:
    """``ACM:<policy>:<label>``, ``<policy>:<label>`` or (with a default policy) ``<label>``."""
    parts = text.split(":")
    if len(parts) == 3 and parts[0] == POLICY_TYPE:
        return Label(parts[1], parts[2])
    if len(parts) == 2 and parts[0] != POLICY_TYPE:
        return Label(parts[0], parts[1])
    if len(parts) == 1 and default_policy:
        return Label(default_policy, parts[0])
    raise SecurityError(f"Invalid label '{text}'.")


def policy_filename(name: str) -> str:
    """Where a policy of this name lives below a policies directory (spec §8.2):
    dots become slashes, then ``-security_policy.xml``."""
    if not name or name.startswith(".") or ".." in name or "/" in name:
        raise SecurityError(f"Illegal policy name: '{name}'")
    return name.replace(".", "/") + "-security_policy.xml"


def find_policy_file(name: str, cwd: Path, policies_dir: Path) -> Path:
    """The policy file of *name*: in the current directory first, then in the policies
    directory, as xm setpolicy looked."""
    rel = policy_filename(name)
    for directory in (cwd, policies_dir):
        candidate = directory / rel
        if candidate.is_file():
            return candidate
    raise SecurityError("Could not read policy file from current directory or "
                        f"'{policies_dir}'.")
