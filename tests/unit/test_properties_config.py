"""Properties of the config-file edge (issue 9 item 12): ``VAR=VALUE`` words, the
values a config file's script leaves behind, and the disk/vif grammars.  Whatever
they hold, xm gets a typed config or an error of dom0's own (which it prints as one
line), never another exception; and a config it accepts travels as JSON and back
unchanged (the API's, the store's and the save file's type check accepts it)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fuzzing import budget, target
from hypothesis import given
from hypothesis import strategies as st

from dom0.cli.configfile import VARIABLES, parse_create_args
from dom0.devices import vbd, vif
from dom0.errors import ConfigError, XendError
from dom0.model.config import DomainConfig
from dom0.model.devices import parse_disk, parse_vif
from dom0.model.usb import parse_usbdevice

NAMES = st.sampled_from(sorted(VARIABLES))
#: what a config script may leave in a variable (evaluate_file keeps str/list/int/float)
SCALARS = (st.text(max_size=20) | st.integers() | st.floats()
           | st.sampled_from(["yes", "no", "1", "0", "", "0-3,^1", "phy:sda,xvda,w",
                              "file:/x,hda,r", "mac=00:16:3e:00:00:01", "restart", "always",
                              "destroy", "preserve", "1e400", "-1", "4294967296"]))
VALUES: Any = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
WORDS = st.builds(lambda n, v: f"{n}={v}", NAMES | st.text(max_size=8), st.text(max_size=20))


@budget(300)
@given(st.lists(WORDS | st.text(max_size=20), max_size=6))
def test_var_value_words(words: list[str]) -> None:
    """``xm create`` arguments: options, VAR=VALUE words, config file names."""
    with target("xm create VAR=VALUE words"):
        try:
            parse_create_args(words)
        except XendError:
            pass


def _json_able(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_able(v) for v in value)
    return True


@budget(300)
@given(st.dictionaries(NAMES, VALUES, max_size=12))
def test_evaluated_values_make_a_config_or_an_error(values: dict[str, Any]) -> None:
    """The variables a config file set: a config whose JSON reads back as itself,
    whose validation raises only ConfigError, or an error xm prints."""
    with target("config-file values"):
        merged = {name: default for name, (_, default) in VARIABLES.items()}
        merged.update(values)
        merged.setdefault("name", "vm")
        try:
            cfg = DomainConfig.from_variables(merged)
        except XendError:
            return
        try:
            cfg.validate()
        except XendError:
            pass
        cfg.to_sxp()
        if _json_able(list(values.values())):
            assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


DISK_PARTS = st.sampled_from(["phy:sda7", "file:/tmp/x.img", "tap:aio:/x", "tap:qcow2:/x",
                              "nbd:host:10809", "iscsi://h/iqn/0", "xvda", "hda1",
                              "ioemu:hdc:cdrom", "sda", "w", "r", "w!", "", "0x301", "xvdzz9",
                              ":", "phy:", "tap:", "1" * 40]) | st.text(max_size=12)
DISKS = st.lists(DISK_PARTS, min_size=1, max_size=5).map(",".join) | st.text(max_size=40)


@budget(500)
@given(DISKS)
def test_disk_grammar(entry: str) -> None:
    """A ``disk`` entry: a resolved device, or OptionError/DeviceError."""
    with target("disk grammar"):
        try:
            dev = vbd.parse(parse_disk(entry), check_exists=False)
        except XendError:
            return
        assert 0 <= dev.devid < 2**32
        vbd.argv([dev])


@budget(300)
@given(st.text(max_size=40) | st.sampled_from(["xvda", "hda", "sdp15", "xvdzzzz255", "0x301",
                                               "ioemu:hda:cdrom", "4294967295", "xvda16"]))
def test_device_number(name: str) -> None:
    with target("device names"):
        try:
            number = vbd.device_number(name)
        except XendError:
            return
        assert 0 <= number < 2**32


VIF_ITEMS = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
    ["type", "mac", "bridge", "ip", "script", "backend", "vifname", "rate", "model", "accel",
     "policy", "label", "bogus"]), st.sampled_from(
    ["ioemu", "00:16:3e:00:00:01", "xenbr0", "10.0.0.1", "0", "1", "v" * 16, "a/b", "10Mb/s",
     "1MB/s@20ms", "9" * 30 + "Mb/s", "e1000", ""]) | st.text(max_size=10)) | st.text(max_size=10)
VIFS = st.lists(VIF_ITEMS, max_size=6).map(",".join) | st.text(max_size=40)


@budget(500)
@given(VIFS, st.integers(0, 2**16), st.integers(0, 2**16))
def test_vif_grammar(entry: str, devid: int, domid: int) -> None:
    """A ``vif`` entry: a resolved NIC (a tap name the kernel takes), or an error."""
    with target("vif grammar"):
        try:
            nic = vif.resolve(parse_vif(entry), devid, domid)
        except XendError:
            return
        assert 0 < len(nic.vifname.encode()) <= vif.MAX_IFNAME
        assert nic.rate is None or nic.rate >= 0
        vif.argv([nic])


HEX = st.text("0123456789abcdefABCDEF", max_size=6)
USB_HOST = st.builds(lambda a, sep, b: f"host:{a}{sep}{b}", HEX, st.sampled_from([":", ".", "::"]),
                     HEX)
USB_WORDS = USB_HOST | st.sampled_from(["tablet", "Mouse", "keyboard", "host:"]) | \
    st.text(max_size=16)


@budget(300)
@given(USB_WORDS)
def test_usbdevice_grammar(text: str) -> None:
    """``usbdevice`` and ``xm usb-add``'s device: a device whose text reads back as
    itself and whose machine ID QEMU accepts, or the one-line ConfigError."""
    with target("usbdevice"):
        try:
            dev = parse_usbdevice(text)
        except ConfigError as exc:
            assert "\n" not in str(exc).replace(text, "")
            return
        assert parse_usbdevice(str(dev)) == dev
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9.\-_]*", dev.device_id), dev.device_id
