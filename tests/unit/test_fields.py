"""dom0.model.fields: the config field table.  Walks the table to check that every
field travels through each edge derived from it (config-file variables, create -n
SXP and back, JSON), and shows that a new field is one declaration."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dom0.cli.configfile import VARIABLES, build_config, parse_create_args, resolve_variables
from dom0.errors import ConfigError, OptionError
from dom0.model import sxp
from dom0.model.config import DEFAULT_ACTIONS, DiskSpec, DomainConfig, VifSpec
from dom0.model.fields import VARS_BY_NAME, XM_VARIABLES, Place, Spec, xm

FIELDS = dataclasses.fields(DomainConfig)
SPECS: dict[str, Spec] = {f.name: f.metadata["xm"] for f in FIELDS}
HINTS = typing.get_type_hints(DomainConfig)

#: fields that are one xm variable converted to the field's type (no derivation)
PLAIN = [name for name, spec in SPECS.items() if spec.var and spec.derive is None]
#: fields printed as (key value) at the top level or inside the image
KEYED = [name for name, spec in SPECS.items() if spec.place in (Place.TOP, Place.IMAGE)]

# atoms SXP can print and read back; no surrounding blanks (config text is not stripped,
# but the command-line word and the SXP atom must be the same string)
TEXT = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)


def reads(spec: Spec) -> tuple[str, ...]:
    return ((spec.var,) if spec.var else ()) + spec.reads


def strategy(name: str) -> st.SearchStrategy[Any]:
    """Values of the field's declared type (CPU-list syntax is validate()'s business)."""
    hint = HINTS[name]
    args = typing.get_args(hint)
    if hint is str:
        return TEXT
    if hint is int:
        return st.integers(-(2**31), 2**31)
    if set(args) == {int, type(None)}:
        return st.none() | st.integers(-(2**31), 2**31)
    if set(args) == {str, type(None)}:
        return st.none() | TEXT
    if set(args) == {str, list[str], type(None)}:
        return st.none() | TEXT | st.lists(TEXT, max_size=4)
    raise AssertionError(f"no strategy for {name}: {hint}")


# ---- the table itself ---------------------------------------------------------------


def test_every_field_has_a_spec_and_names_real_xm_variables() -> None:
    for name, spec in SPECS.items():
        for var in reads(spec):
            assert var in VARS_BY_NAME, (name, var)
    # xm 3.4's 94, Xen 4.0's maxvcpus (issue 10 item 3) and Xen 4's bios (issue 11)
    assert len(XM_VARIABLES) == len(VARS_BY_NAME) == 94 + 2


def test_consumed_variables_are_exactly_what_xm_3_4_preprocess_read() -> None:
    # the hand-kept set build_config had before the table; every other variable lands in `other`
    consumed = {v for spec in SPECS.values() for v in reads(spec)}
    assert consumed == {
        "name", "uuid", "memory", "maxmem", "vcpus", "maxvcpus", "vcpu_avail", "cpu_weight",
        "cpu_cap",
        "cpus", "cpu", "builder", "kernel", "ramdisk", "root", "extra", "features",
        "bootloader", "restart", "on_poweroff", "on_reboot", "on_crash", "on_xend_start",
        "on_xend_stop", "ip", "gateway", "netmask", "hostname", "interface", "dhcp",
        "nfs_server", "nfs_root", "videoram", "disk", "vif", "nics",
        # issue 11: a PV domain's screen (vfb, or the top-level vnc/sdl lines)
        "vfb", "vnc", "sdl", "vncunused", "vncdisplay", "vnclisten", "vncpasswd", "display",
        "xauthority",
        # issue 12: the virtual TPM
        "vtpm",
        # issue 11: USB (a controller, its devices)
        "usb", "usbdevice",
        # issue 11: the HVM image (model/hvm.py), and loader/bios naming its firmware
        "loader", "bios", "device_model", "pae", "boot", "fda", "fdb", "timer_mode",
        "localtime", "serial", "stdvga", "isa", "nographic", "soundhw", "rtc_timeoffset",
        "monitor", "acpi", "apic", "keymap", "hpet", "guest_os_type", "hap", "viridian",
        "pci_msitranslate", "vpt_align", "pci_power_mgmt", "xen_platform_pci"}


def test_variables_table_keeps_its_shape_for_help_config() -> None:
    assert list(VARIABLES)[:4] == ["name", "uuid", "builder", "kernel"]
    assert VARIABLES["memory"] == ("I", 128)
    assert VARIABLES["vcpu_avail"] == ("N", None)
    assert VARIABLES["interface"] == ("S", "eth0")
    assert VARIABLES["disk"] == ("L", [])
    assert VARIABLES["usb"] == ("B", 0)
    assert list(VARIABLES)[-1] == "s3_integrity"


def test_default_actions_come_from_the_table() -> None:
    assert DEFAULT_ACTIONS == {name: spec.xend_default for name, spec in SPECS.items()
                               if spec.xend_default is not None}
    assert list(DEFAULT_ACTIONS) == ["on_poweroff", "on_reboot", "on_crash"]


def test_every_keyed_field_has_a_distinct_sxp_key() -> None:
    keys = [SPECS[n].sxp or n for n in KEYED]
    assert len(keys) == len(set(keys))


# ---- every field through every edge ------------------------------------------------------


@pytest.mark.parametrize("name", KEYED)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_each_field_round_trips_through_sxp_and_json(name: str, data: st.DataObject) -> None:
    value = data.draw(strategy(name))
    cfg = dataclasses.replace(DomainConfig(name="vm", kernel="/k"), **{name: value})
    form = cfg.to_sxp()
    assert DomainConfig.from_sxp(form) == cfg
    assert DomainConfig.from_sxp(sxp.parse_one(sxp.pretty(form))) == cfg
    assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", PLAIN)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_each_plain_field_comes_from_its_command_line_word(name: str,
                                                            data: st.DataObject) -> None:
    value = data.draw(strategy(name).filter(lambda v: v is not None))
    var = SPECS[name].var
    _, values = resolve_variables(parse_create_args([f"{var}={value}"]))
    cfg = build_config(values)
    assert getattr(cfg, name) == value
    assert var not in cfg.other


def test_device_fields_round_trip() -> None:
    cfg = DomainConfig(name="vm", kernel="/k",
                       disks=[DiskSpec("phy:a", "xvda", "w", "0"), DiskSpec("file:/b", "xvdb")],
                       vifs=[VifSpec({"bridge": "br0", "mac": "00:16:3e:00:00:01"}), VifSpec()])
    assert DomainConfig.from_sxp(cfg.to_sxp()) == cfg
    assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert build_config({"name": "vm", "kernel": "/k", "disk": ["phy:a,xvda,w,0",
                                                                  "file:/b,xvdb,r"],
                         "vif": ["bridge=br0,mac=00:16:3e:00:00:01", ""]}).disks == cfg.disks


def test_unmodelled_variables_land_in_other_unless_default() -> None:
    unread = {v.name for v in XM_VARIABLES} - {v for s in SPECS.values() for v in reads(s)}
    # the HVM part (issue 11) reads 25 of xm 3.4's variables, and loader
    assert len(unread) == 94 - 36 - 9 - 2 - 26 and {"opengl", "pci"} <= unread
    words = ["opengl=1", "shadow_memory=8", "pci=00:1d.0"]
    _, values = resolve_variables(parse_create_args(words))
    assert build_config(values).other == {"opengl": "1", "shadow_memory": 8,
                                          "pci": ["00:1d.0"], "s3_integrity": 1}


# ---- a new field is one declaration ------------------------------------------------------


@dataclass
class WithShadow(DomainConfig):
    """What modelling xm's ``shadow_memory`` takes: this one line (plus its behaviour)."""

    shadow_memory: int = field(default=0, metadata=xm(
        var="shadow_memory", sxp="shadow_memory", check=lambda v, cfg: _nonneg(v)))


def _nonneg(value: int) -> None:
    if value < 0:
        raise ConfigError("shadow_memory must not be negative")


def test_a_new_field_is_one_declaration() -> None:
    _, values = resolve_variables(parse_create_args(["name=vm", "kernel=/k",
                                                     "shadow_memory=8"]))
    cfg = WithShadow.from_variables(values)
    assert isinstance(cfg, WithShadow) and cfg.shadow_memory == 8
    assert "shadow_memory" not in cfg.other  # consumed now: no hand-kept set to update
    form = cfg.to_sxp()
    keys = [c[0] for c in form[1:]]
    assert keys.index("shadow_memory") < keys.index("image")
    assert sxp.child_value(form, "shadow_memory") == "8"
    again = WithShadow.from_sxp(sxp.parse_one(sxp.pretty(form)))
    assert again.shadow_memory == 8 and again.to_sxp() == form
    assert WithShadow.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.validate()
    with pytest.raises(ConfigError, match="^shadow_memory must not be negative$"):
        dataclasses.replace(cfg, shadow_memory=-1).validate()
    with pytest.raises(OptionError, match="^Invalid value: lots$"):
        WithShadow.from_variables({"name": "vm", "shadow_memory": "lots"})
    # the base class is unaffected
    assert "shadow_memory" in build_config(values).other


@settings(max_examples=50, deadline=None)
@given(st.fixed_dictionaries({name: strategy(name) for name in KEYED}))
def test_whole_configs_round_trip(values: dict[str, Any]) -> None:
    cfg = DomainConfig(**values)
    assert DomainConfig.from_sxp(sxp.parse_one(sxp.pretty(cfg.to_sxp()))) == cfg
    assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_sxp_fields_prints_set_or_always_fields_and_xend_defaults_on_request() -> None:
    cfg = DomainConfig(name="x", on_crash="preserve")
    assert cfg.sxp_fields("name", "maxmem", "features", "on_poweroff", "on_crash") == [
        ["name", "x"], ["on_crash", "preserve"]]
    assert cfg.sxp_fields("on_poweroff", "on_reboot", "on_crash", effective=True) == [
        ["on_poweroff", "destroy"], ["on_reboot", "restart"], ["on_crash", "preserve"]]
    assert cfg.sxp_fields("extra") == []
    assert DomainConfig(name="x", extra="q").sxp_fields("extra") == [["args", "q"]]


def test_device_sxp_disks_then_vifs() -> None:
    cfg = DomainConfig(name="x", vifs=[VifSpec({"bridge": "b"})], disks=[DiskSpec("p", "d")])
    assert cfg.device_sxp() == [["device", ["vbd", ["uname", "p"], ["dev", "d"], ["mode", "r"]]],
                                ["device", ["vif", ["bridge", "b"]]]]


# ---- JSON edge: every value checked against its field's declared type (issue 9 item 4) ----



@pytest.mark.parametrize(("data", "where", "expected"), [
    ({"cpus": 3}, "cpus", "string or array of string or null"),
    ({"cpus": ["1", 2]}, "cpus", "string or array of string or null"),
    ({"memory": "12"}, "memory", "integer"),
    ({"vcpus": True}, "vcpus", "integer"),
    ({"maxmem": 1.5}, "maxmem", "integer or null"),
    ({"name": None}, "name", "string"),
    ({"kernel": ["/boot/x"]}, "kernel", "string"),
    ({"disks": {"uname": "file:/x"}}, "disks", "array of object"),
    ({"disks": [{"uname": 1, "dev": "xvda"}]}, r"disks\[0\]\.uname", "string"),
    ({"disks": [{"uname": "file:/x", "dev": "xvda", "backend": 0}]}, r"disks\[0\]\.backend",
     "string or null"),
    ({"disks": ["file:/x,xvda,w"]}, r"disks\[0\]", "object"),
    ({"vifs": [{"options": {"mac": 3}}]}, r"vifs\[0\]\.options\.mac", "string"),
    ({"vifs": [{"devid": "0"}]}, r"vifs\[0\]\.devid", "integer or null"),
    ({"other": []}, "other", "object"),
    ({"image_extra": "videoram=4"}, "image_extra", "object"),
])
def test_from_dict_checks_each_value_against_its_declared_type(
        data: dict[str, Any], where: str, expected: str) -> None:
    """Before: {"cpus": 3} was accepted (and booted), "12" for memory was a TypeError
    later, true passed for vcpus, an integer disk uname passed."""
    with pytest.raises(ConfigError, match=f"^Invalid type for {where}: expected {expected}, got "):
        DomainConfig.from_dict({"name": "x", **data})


def test_from_dict_device_keys_checked_not_a_type_error() -> None:
    with pytest.raises(ConfigError, match=r"^Missing configuration key: disks\[0\]\.uname$"):
        DomainConfig.from_dict({"disks": [{"dev": "xvda"}]})
    with pytest.raises(ConfigError, match=r"^Unknown configuration keys: disks\[0\]\.zz$"):
        DomainConfig.from_dict({"disks": [{"uname": "a", "dev": "b", "zz": 1}]})
    with pytest.raises(ConfigError, match="^Invalid type for config: expected object, got array$"):
        DomainConfig.from_dict([])  # type: ignore[arg-type]


def test_from_dict_accepts_every_json_value_of_the_declared_types() -> None:
    cfg = DomainConfig.from_dict({
        "name": "x", "memory": 64, "maxmem": None, "cpus": ["0", "1"], "vcpus": 2,
        "other": {"anything": [1, {"b": None}]}, "image_extra": {"videoram": 4},
        "disks": [{"uname": "file:/x", "dev": "xvda"}], "vifs": [{"options": {"mac": "m"}}]})
    assert cfg.cpus == ["0", "1"] and cfg.disks == [DiskSpec("file:/x", "xvda")]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([f.name for f in FIELDS]),
       st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6))
def test_from_dict_never_fails_but_with_config_error(name: str, value: Any) -> None:
    """Any JSON value in any field: a config whose fields have their types, or ConfigError."""
    try:
        cfg = DomainConfig.from_dict({"name": "x", name: value})
    except ConfigError:
        return
    for f in FIELDS:  # what was accepted is what the dataclass declares
        assert f.name in ("disks", "vifs") or _plain_fits(getattr(cfg, f.name), HINTS[f.name])


def _plain_fits(value: Any, tp: Any) -> bool:
    """The outer type only (items were checked on the way in)."""
    if value is None:
        return type(None) in typing.get_args(tp)
    members = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    bases = [typing.get_origin(b) or b for b in members if b is not type(None)]
    return any(isinstance(value, b) and not (isinstance(value, bool) and b is int)
               for b in bases)


def test_found_empty_device_form_is_ignored() -> None:
    """Found by the SXP property test: ``(vm (device ()))`` was an IndexError."""
    assert DomainConfig.from_sxp(sxp.parse_one("(vm (name x) (device ()))")).disks == []
