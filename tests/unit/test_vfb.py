"""A PV domain's screen: the vfb grammar (spec §3.5), the top-level vnc/sdl lines,
what QEMU is given, and how ``xm list -l`` shows it."""

from __future__ import annotations

import pytest

from dom0.backends.machine import Display
from dom0.backends.qemu.argv import display_argv
from dom0.cli import format as fmt
from dom0.domain.settings import DomainSettings
from dom0.domain.spec import display
from dom0.errors import ConfigError, OptionError
from dom0.model import sxp
from dom0.model.config import DomainConfig, VfbSpec
from dom0.model.devices import parse_vfb


def cfg(**values: object) -> DomainConfig:
    return DomainConfig.from_variables({"name": "g", "kernel": "/k", **values})


def test_vfb_grammar_keeps_order_and_reads_the_legacy_type() -> None:
    assert parse_vfb("vnc=1,vncdisplay=3").options == {"vnc": "1", "vncdisplay": "3"}
    assert parse_vfb("type=vnc,vnclisten=0.0.0.0").options == {"vnc": "1",
                                                               "vnclisten": "0.0.0.0"}
    assert parse_vfb("type=sdl").sdl and not parse_vfb("type=sdl").vnc
    with pytest.raises(OptionError, match="^configuration option colour unknown to vfbs$"):
        parse_vfb("vnc=1,colour=red")
    with pytest.raises(OptionError, match="Invalid vfb type: spice"):
        parse_vfb("type=spice")


def test_vfb_in_create_n_and_back_from_sxp() -> None:
    c = cfg(vfb=["vnc=1,vncdisplay=3"])
    assert c.to_sxp()[-1] == ["device", ["vfb", ["vnc", "1"], ["vncdisplay", "3"]]]
    back = DomainConfig.from_sxp(sxp.parse_one(sxp.to_string(c.to_sxp())))
    assert back.vfbs == c.vfbs
    assert DomainConfig.from_dict(c.to_dict()).vfbs == [VfbSpec({"vnc": "1",
                                                                "vncdisplay": "3"})]


def test_top_level_vnc_gives_a_pv_domain_a_vfb_but_not_an_hvm_one() -> None:
    assert cfg(vnc=1, vncpasswd="pw").vfbs == [VfbSpec({"vnc": "1", "vncpasswd": "pw"})]
    assert cfg(vnc=0).vfbs == []
    assert cfg(builder="hvm", vnc=1).vfbs == []
    assert cfg().vfbs == []


def test_sdl_carries_xms_x_display_and_authority(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":1")
    monkeypatch.setenv("XAUTHORITY", "/home/u/.Xauthority")
    assert cfg(vfb=["sdl=1"]).vfbs[0].options == {
        "sdl": "1", "display": ":1", "xauthority": "/home/u/.Xauthority"}


def test_display_takes_xend_defaults_where_the_config_names_none() -> None:
    settings = DomainSettings(vnc_listen="127.0.0.2", vncpasswd="xendpw")
    assert display(cfg(), settings) is None
    d = display(cfg(vfb=["vnc=1"]), settings)
    assert d == Display(vnc=True, vnc_listen="127.0.0.2", vnc_display=0, vnc_unused=True,
                        vnc_password="xendpw")
    d = display(cfg(vfb=["vnc=1,vnclisten=::1,vncdisplay=5,vncunused=0,vncpasswd="]),
                settings)
    assert d is not None
    assert (d.vnc_listen, d.vnc_display, d.vnc_unused, d.vnc_password) == ("::1", 5, False, "")
    with pytest.raises(ConfigError, match="Invalid vncdisplay: x"):
        display(cfg(vfb=["vnc=1,vncdisplay=x"]), settings)


def test_qemu_gets_std_vga_and_vnc_without_the_password_on_its_command_line() -> None:
    assert display_argv(None) == ["-display", "none", "-vga", "none"]
    argv = display_argv(Display(vnc=True, vnc_display=2, vnc_password="secret"))
    assert argv == ["-vga", "std", "-display", "none", "-vnc",
                    "127.0.0.1:2,to=99,password=on"]
    assert "secret" not in " ".join(argv)
    assert display_argv(Display(vnc=True, vnc_listen="::1", vnc_unused=False)) == [
        "-vga", "std", "-display", "none", "-vnc", "[::1]:0"]
    assert display_argv(Display(sdl=True)) == ["-vga", "std", "-display", "sdl"]


def test_list_long_shows_where_vnc_listens_and_hides_the_password() -> None:
    c = cfg(vfb=["vnc=1,vncpasswd=secret"])
    info = {"name": "g", "uuid": "u", "domid": 3, "vcpus": 1, "memory": 96,
            "config": c.to_dict(), "vnc": "127.0.0.1:5901"}
    forms = fmt.domain_sxp(info)
    assert ["device", ["vfb", ["vnc", "1"], ["location", "127.0.0.1:5901"]]] in forms
    assert "secret" not in fmt.list_long([info])
