"""An ACM policy: its XML (spec §8.2) read safely into typed values, and the two
decisions it makes.

* Simple Type Enforcement: a domain may use a resource (a disk, a network) only if the
  resource's one STE type is among the domain label's STE types; two domains may share a
  resource only if they share a type.
* Chinese Wall: a domain may not run while a running domain holds a *different* type of
  one of its conflict sets (two domains of the same type may run together).

The XML comes from users and from peers (a migrating domain's host), so it is parsed by
defusedxml (no DTDs, no entities, no external references) and then checked against our
schema before anything reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dom0.errors import SecurityError

NAMESPACE = "http://www.ibm.com"
_NS = "{" + NAMESPACE + "}"
SCHEMA = Path(__file__).with_name("security_policy.xsd")
#: a policy file is bigger than any real policy long before this
MAX_POLICY_BYTES = 1 << 20


@dataclass(frozen=True)
class VmLabel:
    name: str
    ste: frozenset[str] = frozenset()
    chwall: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ResourceLabel:
    name: str
    ste: str


@dataclass(frozen=True)
class Policy:
    name: str
    version: str = "1.0"
    url: str = ""
    reference: str = ""
    date: str = ""
    from_policy: tuple[str, str] | None = None
    ste_types: tuple[str, ...] = ()
    chwall_types: tuple[str, ...] = ()
    #: conflict set name -> its types
    conflicts: dict[str, frozenset[str]] = field(default_factory=dict)
    vm_labels: dict[str, VmLabel] = field(default_factory=dict)
    res_labels: dict[str, ResourceLabel] = field(default_factory=dict)
    #: Domain-0's label
    bootstrap: str = ""
    #: the document as loaded (what getpolicy --dumpxml prints and xend stores)
    xml: str = ""

    # ---- decisions ----------------------------------------------------------------

    def vm_label(self, name: str) -> VmLabel:
        try:
            return self.vm_labels[name]
        except KeyError:
            raise SecurityError(f"Label '{name}' is not defined in policy '{self.name}'.") \
                from None

    def res_label(self, name: str) -> ResourceLabel:
        try:
            return self.res_labels[name]
        except KeyError:
            raise SecurityError(f"Label '{name}' is not defined in policy '{self.name}'.") \
                from None

    def may_use(self, vm: str, resource: str) -> bool:
        """STE: may a domain labelled *vm* use a resource labelled *resource*?"""
        return self.res_label(resource).ste in self.vm_label(vm).ste

    def may_share(self, vm_a: str, vm_b: str) -> bool:
        """STE: may two domains share a resource (a bridge), i.e. have a type in common?"""
        return bool(self.vm_label(vm_a).ste & self.vm_label(vm_b).ste)

    def conflict(self, vm: str, running: str) -> str | None:
        """Chinese Wall: the conflict set that forbids *vm* to run beside *running*, if any."""
        mine, theirs = self.vm_label(vm).chwall, self.vm_label(running).chwall
        for name, types in self.conflicts.items():
            if any(a != b for a in mine & types for b in theirs & types):
                return name
        return None

    def labels(self, kind: str = "dom") -> list[str]:
        """Label names of *kind* dom|res|any, sorted (xm labels)."""
        names: set[str] = set()
        if kind in ("dom", "any"):
            names |= set(self.vm_labels)
        if kind in ("res", "any"):
            names |= set(self.res_labels)
        return sorted(names)


# ---- reading ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def _schema() -> Any:
    import xmlschema

    return xmlschema.XMLSchema(str(SCHEMA))


def parse(document: bytes | str) -> Policy:
    """A policy from its XML; SecurityError (one line) for anything hostile or invalid."""
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    raw = document.encode() if isinstance(document, str) else document
    if len(raw) > MAX_POLICY_BYTES:
        raise SecurityError("Policy file is too large.")
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise SecurityError(f"Refusing the policy: {type(exc).__name__}") from None
    except SafeET.ParseError as exc:
        raise SecurityError(f"Policy is not well-formed XML: {exc}") from None
    errors = list(_schema().iter_errors(root))
    if errors:
        first = errors[0]
        where = f" at {first.path}" if getattr(first, "path", None) else ""
        raise SecurityError(f"Policy does not match the schema{where}: {first.reason}")
    policy = _build(root, raw.decode("utf-8", "replace"))
    _check(policy)
    return policy


def _text(el: Any, tag: str, default: str = "") -> str:
    child = el.find(_NS + tag)
    return (child.text or "").strip() if child is not None else default


def _types(el: Any | None) -> tuple[str, ...]:
    return tuple((t.text or "").strip() for t in el.findall(_NS + "Type")) if el is not None \
        else ()


def _build(root: Any, xml: str) -> Policy:
    header = root.find(_NS + "PolicyHeader")
    frm = header.find(_NS + "FromPolicy")
    ste = root.find(_NS + "SimpleTypeEnforcement")
    cw = root.find(_NS + "ChineseWall")
    conflicts: dict[str, frozenset[str]] = {}
    if cw is not None and cw.find(_NS + "ConflictSets") is not None:
        for c in cw.find(_NS + "ConflictSets").findall(_NS + "Conflict"):
            conflicts[c.get("name")] = frozenset(_types(c))
    template = root.find(_NS + "SecurityLabelTemplate")
    subjects = template.find(_NS + "SubjectLabels")
    objects = template.find(_NS + "ObjectLabels")
    vms: dict[str, VmLabel] = {}
    for vl in subjects.findall(_NS + "VirtualMachineLabel") if subjects is not None else ():
        name = _text(vl, "Name")
        if name in vms:
            raise SecurityError(f"Label '{name}' is defined twice.")
        vms[name] = VmLabel(
            name,
            frozenset(t for el in vl.findall(_NS + "SimpleTypeEnforcementTypes")
                      for t in _types(el)),
            frozenset(t for el in vl.findall(_NS + "ChineseWallTypes") for t in _types(el)))
    res: dict[str, ResourceLabel] = {}
    for rl in objects.findall(_NS + "ResourceLabel") if objects is not None else ():
        name = _text(rl, "Name")
        if name in res:
            raise SecurityError(f"Label '{name}' is defined twice.")
        res[name] = ResourceLabel(name, _types(rl.find(_NS + "SimpleTypeEnforcementTypes"))[0])
    return Policy(
        name=_text(header, "PolicyName"), version=_text(header, "Version", "1.0"),
        url=_text(header, "PolicyUrl"), reference=_text(header, "Reference"),
        date=_text(header, "Date"),
        from_policy=(_text(frm, "PolicyName"), _text(frm, "Version")) if frm is not None
        else None,
        ste_types=_types(ste.find(_NS + "SimpleTypeEnforcementTypes")) if ste is not None
        else (),
        chwall_types=_types(cw.find(_NS + "ChineseWallTypes")) if cw is not None else (),
        conflicts=conflicts, vm_labels=vms, res_labels=res,
        bootstrap=subjects.get("bootstrap") if subjects is not None else "", xml=xml)


def _check(p: Policy) -> None:
    """What the schema cannot say: every type a label or conflict set names is declared,
    and Domain-0's bootstrap label exists."""
    ste, cw = set(p.ste_types), set(p.chwall_types)
    for name, types in p.conflicts.items():
        if types - cw:
            raise SecurityError(f"Conflict set '{name}' names undeclared Chinese Wall type "
                                f"'{sorted(types - cw)[0]}'.")
    for vm in p.vm_labels.values():
        if vm.ste - ste:
            raise SecurityError(f"Label '{vm.name}' names undeclared STE type "
                                f"'{sorted(vm.ste - ste)[0]}'.")
        if vm.chwall - cw:
            raise SecurityError(f"Label '{vm.name}' names undeclared Chinese Wall type "
                                f"'{sorted(vm.chwall - cw)[0]}'.")
    for r in p.res_labels.values():
        if r.ste not in ste:
            raise SecurityError(f"Label '{r.name}' names undeclared STE type '{r.ste}'.")
    if p.vm_labels and p.bootstrap not in p.vm_labels:
        raise SecurityError(f"The bootstrap label '{p.bootstrap}' is not defined.")


def dump(p: Policy) -> str:
    """``xm dumppolicy``: each component's types and the label-by-type matrix (1: the
    label holds the type), Domain-0's label marked, as xensec_tool's dump showed them."""
    out = [f"Policy name           : {p.name}", f"Version of XML policy : {p.version}", ""]
    for title, types, of in (("Chinese Wall policy:", p.chwall_types, "chwall"),
                             ("Simple Type Enforcement policy:", p.ste_types, "ste")):
        out += [title, "=" * len(title), f"Max Types     = {len(types)}."]
        if of == "chwall":
            out.append(f"Max ConfSets  = {len(p.conflicts)}.")
            for name, members in sorted(p.conflicts.items()):
                out.append(f"   conflict set {name}: {' '.join(sorted(members))}")
        out.append("Types: " + " ".join(types))
        width = max((len(n) for n in p.vm_labels), default=0)
        for name, vm in sorted(p.vm_labels.items()):
            held = vm.chwall if of == "chwall" else vm.ste
            row = " ".join("1" if t in held else "0" for t in types)
            mark = "  <-- Domain-0" if name == p.bootstrap else ""
            out.append(f"   {name:<{width}}  {row}{mark}")
        out.append("")
    return "\n".join(out)
