"""xm's access control commands (spec §8.1): policies, labels, resources, dry-run.

Policies are files on xm's side (``./`` first, then /etc/xen/acm-security/policies, as
xm looked); xm reads the file and xend parses and judges it, so a policy is never parsed
by a client.  Labels of config files (``addlabel ... dom <file>``) are edited here, in
the file, as xm did; everything else is xend's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dom0.cli.commands import nargs, parse_args, xend
from dom0.errors import OptionError, SecurityError, UsageError
from dom0.model.labels import POLICIES_DIR, Label, find_policy_file

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

#: xend's answer for "which policy" when no policy is installed
_NO_POLICY = "No policy is installed."


def _read_policy(name: str) -> str:
    path = find_policy_file(name, Path.cwd(), Path(os.environ.get("XM_ACM_POLICIES_DIR",
                                                                   POLICIES_DIR)))
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityError(f"Cannot read policy file {path}: {exc}") from None


def _active_policy() -> str:
    info = xend().security_policy_get()
    if info is None:
        raise SecurityError(_NO_POLICY)
    return str(info["name"])


# ---- policies -------------------------------------------------------------------


def _print_policy(info: dict[str, Any] | None, dumpxml: bool = False) -> None:
    print("Supported security subsystems   : ACM \n")
    if info is None:
        print(_NO_POLICY)
        return
    print(f"Policy name           : {info['name']}")
    print("Policy type           : ACM")
    print(f"Version of XML policy : {info['version']}")
    print("Policy configuration  : loaded, activated for boot")
    if dumpxml:
        print(info["xml"].rstrip("\n"))


def cmd_setpolicy(args: list[str]) -> int:
    nargs("setpolicy", args, 2)
    if args[0] != "ACM":
        raise SecurityError(f"Unsupported policytype '{args[0]}'.")
    xml = _read_policy(args[1])
    try:
        info = xend().security_policy_set(xml=xml)
    except SecurityError as exc:
        raise SecurityError(f"An error occurred trying to set the policy: {exc}") from None
    print("Successfully set the new policy.")
    _print_policy(info)
    return 0


def cmd_getpolicy(args: list[str]) -> int:
    opts, rest = parse_args(args, "getpolicy")
    if rest:
        raise UsageError("'xm getpolicy' takes no arguments")
    _print_policy(xend().security_policy_get(), "dumpxml" in opts)
    return 0


def cmd_resetpolicy(args: list[str]) -> int:
    nargs("resetpolicy", args, 0)
    xend().security_policy_reset()
    print("Successfully reset the system's policy.")
    return 0


def cmd_dumppolicy(args: list[str]) -> int:
    nargs("dumppolicy", args, 0)
    print(xend().security_policy_dump())
    return 0


# 3.0.3-3.1's commands: there was a compile step and a boot loader entry; here xend
# itself loads the installed policy at every start, so each installs and activates it.


def cmd_makepolicy(args: list[str]) -> int:
    nargs("makepolicy", args, 1)
    xml = _read_policy(args[0])
    xend().security_labels(xml=xml, kind="any")  # xend parses and checks it
    print(f"Policy '{args[0]}' is valid (dom0 needs no compiled policy binary).")
    return 0


def cmd_loadpolicy(args: list[str]) -> int:
    nargs("loadpolicy", args, 1)
    return cmd_setpolicy(["ACM", args[0]])


def cmd_cfgbootpolicy(args: list[str]) -> int:
    nargs("cfgbootpolicy", args, 1, 2)
    cmd_setpolicy(["ACM", args[0]])
    print(f"Policy '{args[0]}' installed: xend loads it at every start.")
    return 0


# ---- labels ---------------------------------------------------------------------


def cmd_labels(args: list[str]) -> int:
    policy = kind = None
    for arg in args:
        if arg.startswith("type="):
            if kind is not None:
                raise OptionError("type is definied twice")
            kind = arg[5:]
            if kind not in ("dom", "res", "any"):
                raise OptionError(f"Unrecognised option: {arg}")
        elif arg.startswith("-") or "=" in arg:
            raise OptionError(f"Unrecognised option: {arg}")
        else:
            if policy is not None:
                raise OptionError("policy is defined twice")
            policy = arg
    xml = _read_policy(policy) if policy else None
    for name in xend().security_labels(xml=xml, kind=kind or "dom"):
        print(name)
    return 0


def _split_policy(word: str | None) -> str | None:
    if word is None:
        return None
    return word[4:] if word.startswith("ACM:") else word


def cmd_addlabel(args: list[str]) -> int:
    nargs("addlabel", args, 3, 4)
    label, kind, target = args[0], args[1], args[2]
    policy = _split_policy(args[3] if len(args) == 4 else None)
    if kind == "dom":
        return _label_config_file(label, target, policy)
    if kind == "res":
        xend().security_resource_label_set(resource=target, label=label, policy=policy)
        return 0
    if kind == "mgt":
        info = xend().domain_relabel(dom=target, label=label, policy=policy)
        which = "domain" if info.get("domid") is not None else "dormant domain"
        print(f"Successfully set the label of {which} '{target}' to '{label}'.")
        return 0
    raise _unknown_kind(kind)


def cmd_rmlabel(args: list[str]) -> int:
    nargs("rmlabel", args, 2)
    kind, target = args
    if kind == "dom":
        path = _config_path(target)
        lines = path.read_text().splitlines(keepends=True)
        hits = [i for i, ln in enumerate(lines) if _is_access_control(ln)]
        if not hits:
            raise SecurityError("Domain not labeled")
        for i in hits:
            lines[i] = "#" + lines[i]
        _rewrite(path, "".join(lines))
        return 0
    if kind == "res":
        xend().security_resource_label_remove(resource=target)
        return 0
    if kind == "mgt":
        xend().domain_relabel(dom=target)
        print(f"Successfully removed label from domain {target}.")
        return 0
    raise _unknown_kind(kind)


def cmd_getlabel(args: list[str]) -> int:
    nargs("getlabel", args, 2)
    kind, target = args
    if kind == "dom":
        label = _file_label(_config_path(target))
        if label is None:
            raise SecurityError("Domain not labeled")
        print(f"policytype=ACM,policy={label.policy},label={label.label}")
        return 0
    if kind == "res":
        print(xend().security_resource_label_get(resource=target))
        return 0
    if kind == "mgt":
        print(next(iter(domain_labels([xend().domain_info(dom=target)]).values())))
        return 0
    raise _unknown_kind(kind)


def _unknown_kind(kind: str) -> Exception:
    """What add/rm/getlabel say of a target kind other than dom, res and mgt: vif
    labels lived in the Xen-API (spec §8.1), anything else is not a kind at all."""
    if kind.startswith("vif-"):
        return SecurityError("Need to be configure for using xen-api.")
    return OptionError(f"Unrecognised option: {kind}")


def cmd_resources(args: list[str]) -> int:
    nargs("resources", args, 0)
    for r in xend().security_resources():
        print(r["resource"])
        print(f"      type: {r['type']}")
        print(f"    policy: {r['policy']}")
        print(f"    label:  {r['label']}")
    return 0


def cmd_dry_run(args: list[str]) -> int:
    from dom0.cli.configfile import config_from_args, parse_create_args

    nargs("dry-run", args, 1)
    _, cfg = config_from_args(parse_create_args([args[0]]))
    report = xend().security_dry_run(config=cfg.to_dict())
    print("\n".join(report["lines"]))
    return 0 if report["passed"] else 255


def domain_labels(domains: list[dict[str, Any]]) -> dict[str, str]:
    """Each listed domain's label as ``xm list --label`` shows it: its config's
    ``access_control``, Domain-0's the policy's bootstrap label, else ``unlabeled``."""
    from dom0.model.labels import parse_access_control

    policy = xend().security_policy_get()
    out = {}
    for d in domains:
        label = parse_access_control(list(
            ((d.get("config") or {}).get("other") or {}).get("access_control") or []))
        if label is not None:
            out[d["name"]] = str(label)
        elif d.get("domid") == 0 and policy is not None:
            out[d["name"]] = f"ACM:{policy['name']}:{policy['bootstrap']}"
        else:
            out[d["name"]] = "unlabeled"
    return out


# ---- config files -----------------------------------------------------------------


def _config_path(name: str) -> Path:
    """The config file: as given, else relative to the current directory, else in
    /etc/xen (the fallback xm meant to have)."""
    candidates = [Path(name)] if os.path.isabs(name) else [Path.cwd() / name,
                                                           Path("/etc/xen") / name]
    for path in candidates:
        if path.is_file():
            return path
    raise SecurityError(f"Configuration file '{name}' not found.")


def _is_access_control(line: str) -> bool:
    return line.lstrip().startswith("access_control") and "=" in line


def _file_values(path: Path) -> dict[str, Any]:
    from dom0.cli.configfile import evaluate_file

    values = evaluate_file(str(path), {})
    if sum(1 for k in ("kernel", "bootloader", "memory", "name") if k in values) < 3:
        raise SecurityError("Invalid configuration file.")
    return values


def _file_label(path: Path) -> Label | None:
    from dom0.model.labels import parse_access_control

    return parse_access_control(list(_file_values(path).get("access_control") or []))


def _label_config_file(label: str, name: str, policy: str | None) -> int:
    path = _config_path(name)
    if _file_label(path) is not None:
        raise SecurityError(f"Config file '{name}' is already labeled.")
    policy = policy or _active_policy()
    xml = None if policy == _current_policy_name() else _read_policy(policy)
    if label not in xend().security_labels(xml=xml, kind="dom"):
        raise SecurityError(f"Label '{label}' is not defined in policy '{policy}'.")
    text = path.read_text()
    if text and not text.endswith("\n"):
        text += "\n"
    _rewrite(path, text + f"access_control = ['{Label(policy, label).access_control()}']\n")
    return 0


def _current_policy_name() -> str | None:
    info = xend().security_policy_get()
    return None if info is None else str(info["name"])


def _rewrite(path: Path, text: str) -> None:
    """Replace the file's content atomically, keeping its mode."""
    tmp = path.with_name(f".{path.name}.xm-{os.getpid()}")
    tmp.write_text(text)
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    sys.stdout.flush()
