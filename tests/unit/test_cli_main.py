"""dom0.cli.main: help, prefix matching, deprecated aliases and the mapping of
errors to output and exit codes (spec §1.1, §9).  No xend is needed: XM_SERVER
points at a socket that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0.cli import commands
from dom0.cli.main import main
from dom0.cli.registry import (
    BY_NAME,
    COMMANDS,
    USAGE_FOOT,
    USAGE_HEAD,
    command_usage,
    resolve,
    short_help,
)
from dom0.client import XendClient
from dom0.errors import InvalidDomain, VmError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NO_XEND = "Error: Unable to connect to xend: No such file or directory. Is xend running?\n"

CaptureFixture = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def no_xend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "no-such-dir" / "xmlrpc.sock")
    monkeypatch.setenv("XM_SERVER", path)
    return path


def test_no_args_prints_short_help_and_fails(capsys: CaptureFixture) -> None:
    assert main([]) == 1
    out = capsys.readouterr().out
    assert out.startswith(USAGE_HEAD)
    assert "Common 'xm' commands:" in out
    assert USAGE_FOOT in out
    assert out == short_help() + "\n"
    assert " %-18s %s\n" % ("list", BY_NAME["list"].description) in out
    assert " %-18s " % "domid" not in out  # not a common command


def test_usage_banner_texts() -> None:
    assert USAGE_HEAD == ("Usage: xm <subcommand> [args]\n\n"
                          "Control, list, and manipulate Xen guest instances.\n")
    assert USAGE_FOOT == ("<Domain> can either be the Domain Name or Id.\n"
                          "For more help on 'xm' see the xm(1) man page.\n"
                          "For more help on 'xm create' see the xmdomain.cfg(5)  man page.\n")


@pytest.mark.parametrize("word", ["help", "--help", "-h"])
def test_help_lists_every_command(capsys: CaptureFixture, word: str) -> None:
    assert main([word]) == 0
    out = capsys.readouterr().out
    assert out.startswith(USAGE_HEAD)
    for cmd in COMMANDS:
        assert " %-18s %s\n" % (cmd.name, cmd.description) in out


def test_help_long_includes_options(capsys: CaptureFixture) -> None:
    assert main(["help", "--long"]) == 0
    assert "   %-30s %s" % ("-l, --long", "Output all VM details in SXP") in \
        capsys.readouterr().out


def test_help_for_one_command(capsys: CaptureFixture) -> None:
    assert main(["help", "destroy"]) == 0
    assert capsys.readouterr().out == command_usage(BY_NAME["destroy"]) + "\n"


def test_help_for_unknown_command(capsys: CaptureFixture) -> None:
    assert main(["help", "frobnicate"]) == 1
    assert "Error: Subcommand frobnicate not found!" in capsys.readouterr().err


def test_command_help_prints_usage_and_fails(capsys: CaptureFixture) -> None:
    assert main(["list", "--help"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("Usage: xm list [options] [Domain, ...]\n\n"
                          "List information about all/some domains.\n")
    assert "  %-30s %-43s\n" % ("-l, --long", "Output all VM details in SXP") in out


def test_command_dash_h(capsys: CaptureFixture) -> None:
    assert main(["destroy", "-h"]) == 1
    assert capsys.readouterr().out.startswith("Usage: xm destroy <Domain>\n")


def test_prefix_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_list(args: list[str]) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(commands, "cmd_list", fake_list)
    assert main(["li", "-l"]) == 0
    assert calls == [["-l"]]


def test_resolve_rules() -> None:
    assert resolve("list") is BY_NAME["list"]
    assert resolve("li") is BY_NAME["list"]
    assert resolve("unp") is BY_NAME["unpause"]
    assert resolve("l") is None  # a one-letter prefix never matches
    assert resolve("do") is None  # ambiguous: domid, domname
    assert resolve("re") is None  # ambiguous: reboot, reset, rename
    assert resolve("lists") is None


@pytest.mark.parametrize("word", ["l", "frobnicate", "do"])
def test_unknown_subcommand(capsys: CaptureFixture, word: str) -> None:
    assert main([word]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"Error: Subcommand {word} not found!\n")
    assert USAGE_HEAD in captured.err
    assert captured.out == ""


def test_missing_argument(capsys: CaptureFixture) -> None:
    assert main(["destroy"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: 'xm destroy' requires 1 argument.\n")
    assert "Usage: xm destroy <Domain>" in err


def test_missing_arguments_plural(capsys: CaptureFixture) -> None:
    assert main(["rename", "a"]) == 1
    assert capsys.readouterr().err.startswith("Error: 'xm rename' requires 2 arguments.\n")


def test_argument_range(capsys: CaptureFixture) -> None:
    assert main(["dump-core", "a", "b", "c"]) == 1
    assert capsys.readouterr().err.startswith(
        "Error: 'xm dump-core' requires between 1 and 2 arguments.\n")


def test_xend_not_running(capsys: CaptureFixture) -> None:
    assert main(["list"]) == 1
    captured = capsys.readouterr()
    assert captured.err == NO_XEND
    assert captured.out == ""


def test_xend_not_running_httpu_uri(capsys: CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                    no_xend: str) -> None:
    monkeypatch.setenv("XM_SERVER", "httpu://" + no_xend)
    assert main(["destroy", "x"]) == 1
    assert capsys.readouterr().err == NO_XEND


def test_list_state_and_names_conflict(capsys: CaptureFixture) -> None:
    assert main(["list", "--state=running", "vm1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "Error: You may specify either a state or a particular VM, but not both\n")


@pytest.mark.parametrize("old, new", [
    ("balloon", "mem-set"), ("set-vcpus", "vcpu-set"), ("vif-list", "network-list"),
    ("vbd-create", "block-attach"), ("vbd-destroy", "block-detach"), ("vbd-list", "block-list"),
])
def test_deprecated_alias(capsys: CaptureFixture, old: str, new: str) -> None:
    main([old, "vm1", "64"])
    err = capsys.readouterr().err
    assert err.startswith(f"Command {old} is deprecated.  Please use xm {new} instead.\n")


def test_invalid_domain_exit_code_3(capsys: CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def call(self: XendClient, route: str, /, **args: object) -> object:
        raise InvalidDomain(str(args["dom"]))

    monkeypatch.setattr(XendClient, "call", call)
    assert main(["destroy", "ghost"]) == 3
    assert capsys.readouterr().err == "Error: Domain 'ghost' does not exist.\n"


def test_xend_error_shows_usage(capsys: CaptureFixture,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    def call(self: XendClient, route: str, /, **args: object) -> object:
        raise VmError("Domain is not running")

    monkeypatch.setattr(XendClient, "call", call)
    assert main(["pause", "vm1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: Domain is not running\nUsage: xm pause <Domain>\n")


def test_value_error_is_invalid_argument(capsys: CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def bad(args: list[str]) -> int:
        raise ValueError("x")

    monkeypatch.setattr(commands, "cmd_info", bad)
    assert main(["info"]) == 1
    assert capsys.readouterr().err.startswith("Error: Invalid argument.\n")


def test_unexpected_error_has_no_traceback(capsys: CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def bad(args: list[str]) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(commands, "cmd_info", bad)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err == "Unexpected error: RuntimeError: kaboom\n"


def test_interrupted(capsys: CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def bad(args: list[str]) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "cmd_info", bad)
    assert main(["info"]) == 1
    assert capsys.readouterr().out == "Interrupted.\n"


# ---- xm create -n needs no xend -----------------------------------------------------


def test_create_dry_run(capsys: CaptureFixture, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "xmexample1").write_text(
        'kernel = "/boot/vmlinuz-2.6.10-xenU"\nmemory = 64\nname = "ExampleDomain"\n'
        "disk = ['phy:hda1,hda1,w']\nvif = ['']\nroot = \"/dev/hda1 ro\"\nextra = \"4\"\n")
    monkeypatch.chdir(tmp_path)
    assert main(["create", "-n", "-f", "xmexample1"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0] == 'Using config file "./xmexample1".'
    assert out[1] == "(vm"
    assert out[-2:] == [")", ""]


def test_create_dry_run_quiet(capsys: CaptureFixture) -> None:
    assert main(["create", "-q", "-n", str(EXAMPLES / "xmexample2"), "vmid=1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("(vm\n    (name VM1)\n")
    assert "Using config file" not in out


def test_create_config_error_printed_once(capsys: CaptureFixture) -> None:
    assert main(["create", "-n", str(EXAMPLES / "xmexample2"), "vmid=0"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "Error: vmid - \n"


def test_create_missing_file(capsys: CaptureFixture, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["create", "-n", "--path=" + str(tmp_path), "nosuch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: Unable to open config file: nosuch\n")


def test_every_command_has_a_handler() -> None:
    from dom0.cli.main import _handler

    for cmd in COMMANDS:
        if cmd.name != "help":
            assert callable(_handler(cmd.name)), cmd.name
