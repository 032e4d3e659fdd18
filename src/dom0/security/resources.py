"""The resource label file (spec §8.3): which policy and label each resource (a disk's
uname, a ``vlan:<id>``) carries.

The file keeps Xen's shape, a Python assignment ``resources = {name: ('ACM', policy,
label)}``, so an administrator's existing file reads as it did; but it is read as data
(``ast.literal_eval``), never executed, and written atomically (a crash leaves the old
file or the new one, never half of one)."""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

from dom0.errors import SecurityError
from dom0.model.labels import Label as ResourceLabel


def canonical(resource: str) -> str:
    """A resource's canonical name (Xen's unify_resname): ``phy:`` relative names gain
    ``/dev/``, ``tap:`` needs its subtype, files must be absolute and exist, VLAN IDs are
    1-4095; other kinds are taken as written."""
    kind, colon, rest = resource.partition(":")
    if not colon:
        raise SecurityError(f"Resource spec '{resource}' contains no ':' delimiter")
    if kind == "tap":
        sub, colon, path = rest.partition(":")
        if not colon or not sub:
            raise SecurityError(f"Resource spec '{resource}' contains no tap subtype")
        return f"tap:{sub}:{_file(path)}"
    if kind == "phy":
        return "phy:" + (rest if rest.startswith("/") else "/dev/" + rest)
    if kind == "file":
        return "file:" + _file(rest)
    if kind == "vlan":
        try:
            vid = int(rest)
        except ValueError:
            raise SecurityError("Invalid resource.") from None
        if not 1 <= vid <= 4095:
            raise SecurityError(f"VLAN ID {vid} out of range.")
        return f"vlan:{vid}"
    return resource


def _file(path: str) -> str:
    if not path.startswith("/") or not os.path.exists(path):
        raise SecurityError("Invalid resource.")
    return os.path.realpath(path)


class ResourceLabels:
    """The file, loaded; every change is written back at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._labels = read(path)

    def get(self, resource: str) -> ResourceLabel | None:
        return self._labels.get(resource)

    def items(self) -> list[tuple[str, ResourceLabel]]:
        return sorted(self._labels.items())

    def add(self, resource: str, label: ResourceLabel) -> None:
        old = self._labels.get(resource)
        if old is not None:
            raise SecurityError(f"'{resource}' is already labeled with '{old.label}'.")
        self._labels[resource] = label
        write(self.path, self._labels)

    def remove(self, resource: str) -> None:
        if resource not in self._labels:
            raise SecurityError("Resource not labeled")
        del self._labels[resource]
        write(self.path, self._labels)

    def relabel_policy(self, old: str, new: str) -> None:
        """A policy update renamed the policy: labels follow it."""
        changed = {r: ResourceLabel(new, lab.label, lab.type) for r, lab in self._labels.items()
                   if lab.policy == old}
        if changed:
            self._labels.update(changed)
            write(self.path, self._labels)


def read(path: Path) -> dict[str, ResourceLabel]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecurityError(f"Cannot read the resource label file {path}: {exc.strerror}") \
            from None
    return parse(text, str(path))


def parse(text: str, where: str = "resource_labels") -> dict[str, ResourceLabel]:
    """``resources = {...}`` as data; 3.0.x's 2-tuples ``(policy, label)`` read as ACM."""
    bad = SecurityError(f"The resource label file {where} is not a resources = {{...}} "
                        "dictionary.")
    try:
        tree = ast.parse(text, where)
    except (SyntaxError, ValueError):
        raise bad from None
    value = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "resources"):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                raise bad from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad
    labels = {}
    for name, entry in value.items():
        if not isinstance(name, str) or not isinstance(entry, tuple) \
                or not all(isinstance(x, str) for x in entry):
            raise bad
        if len(entry) == 3:
            labels[name] = ResourceLabel(entry[1], entry[2], entry[0])
        elif len(entry) == 2:
            labels[name] = ResourceLabel(entry[0], entry[1])
        else:
            raise bad
    return labels


def render(labels: dict[str, ResourceLabel]) -> str:
    lines = ["resources = {"]
    for name, lab in sorted(labels.items()):
        lines.append(f"    {name!r}: ({lab.type!r}, {lab.policy!r}, {lab.label!r}),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(path: Path, labels: dict[str, ResourceLabel]) -> None:
    """Write the whole file atomically: a temporary file beside it, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".resource_labels.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(render(labels))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
