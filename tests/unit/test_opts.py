"""dom0.cli.opts: xm's GNU-style option parser, checked against getopt.gnu_getopt
(what xm 3.4 used)."""

from __future__ import annotations

import getopt
from pathlib import Path

import pytest

from dom0.cli import opts
from dom0.cli.registry import BY_NAME, COMMANDS, command_usage, long_help, short_help
from dom0.errors import OptionError

SHORT = "waRp:cl"
LONG = ["wait", "all", "reboot", "path=", "port=", "console", "long", "label"]


def parse(args: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    return opts.parse(args, SHORT, LONG)


def test_bundled_short_flags() -> None:
    assert parse(["-waR", "dom"]) == ([("-w", ""), ("-a", ""), ("-R", "")], ["dom"])


def test_short_value_attached_or_separate() -> None:
    assert parse(["-p8002"]) == ([("-p", "8002")], [])
    assert parse(["-p", "8002", "x"]) == ([("-p", "8002")], ["x"])
    assert parse(["-wp", "v"]) == ([("-w", ""), ("-p", "v")], [])
    assert parse(["-wpv", "x"]) == ([("-w", ""), ("-p", "v")], ["x"])
    # the value ends the bundle, even if it looks like flags
    assert parse(["-pwR"]) == ([("-p", "wR")], [])


def test_short_value_may_look_like_an_option() -> None:
    assert parse(["-p", "-w"]) == ([("-p", "-w")], [])
    assert parse(["-p", "--"]) == ([("-p", "--")], [])


def test_long_with_equals_or_separate_value() -> None:
    assert parse(["--path=/a:/b"]) == ([("--path", "/a:/b")], [])
    assert parse(["--path", "/a:/b"]) == ([("--path", "/a:/b")], [])
    assert parse(["--path="]) == ([("--path", "")], [])
    assert parse(["--path=a=b"]) == ([("--path", "a=b")], [])


def test_unambiguous_long_prefix() -> None:
    assert parse(["--wa", "--rebo", "--con", "--pa=x", "--po", "1"]) == (
        [("--wait", ""), ("--reboot", ""), ("--console", ""), ("--path", "x"),
         ("--port", "1")], [])


def test_exact_long_name_beats_longer_ones() -> None:
    assert opts.parse(["--list"], "", ["list", "listen"]) == ([("--list", "")], [])
    assert opts.parse(["--listen"], "", ["list", "listen"]) == ([("--listen", "")], [])
    with pytest.raises(OptionError, match="^option --lis not a unique prefix$"):
        opts.parse(["--lis"], "", ["list", "listen"])


@pytest.mark.parametrize("args, message", [
    (["--p"], "option --p not a unique prefix"),
    (["--l"], "option --l not a unique prefix"),
    (["--colour"], "option --colour not recognized"),
    (["--wait=1"], "option --wait must not have an argument"),
    (["--path"], "option --path requires argument"),
    (["-x"], "option -x not recognized"),
    (["-wx"], "option -x not recognized"),
    (["-p"], "option -p requires argument"),
    (["-w-"], "option -- not recognized"),
    (["-:"], "option -: not recognized"),
])
def test_errors(args: list[str], message: str) -> None:
    with pytest.raises(OptionError) as e:
        parse(args)
    assert str(e.value) == message
    # and the wording is getopt's
    with pytest.raises(getopt.GetoptError) as g:
        getopt.gnu_getopt(args, SHORT, LONG)
    assert str(g.value) == message


def test_double_dash_ends_options() -> None:
    assert parse(["-w", "--", "-R", "--all", "x"]) == ([("-w", "")], ["-R", "--all", "x"])
    assert parse(["--"]) == ([], [])
    assert parse(["a", "--", "--"]) == ([], ["a", "--"])


def test_interleaved_operands() -> None:
    assert parse(["a", "-w", "b", "--path", "/p", "c", "-R"]) == (
        [("-w", ""), ("--path", "/p"), ("-R", "")], ["a", "b", "c"])


def test_lone_dash_is_an_operand() -> None:
    assert parse(["-", "-w"]) == ([("-w", "")], ["-"])


def test_nothing() -> None:
    assert parse([]) == ([], [])
    assert opts.parse(["x"], "", []) == ([], ["x"])


@pytest.mark.parametrize("args", [
    [], ["dom"], ["-waR", "dom"], ["-p8002"], ["-p", "8002", "x"], ["-wp", "v"], ["-pwR"],
    ["--path=/a", "x", "--wait"], ["--path", "/a"], ["--wa", "--lo", "--rebo"],
    ["--lon", "--lab"], ["a", "-w", "b", "--", "-R", "--x"], ["-", "-w"], ["--path="],
    ["-p", "--"], ["--pa=x"], ["--con"], ["-c", "-l", "dom", "-a"], ["x", "y", "-Rw", "z"],
    ["--port", "-w", "d"], ["-lp", "", "d"], ["--all", "--", "--all"],
])
def test_same_as_gnu_getopt(args: list[str]) -> None:
    pairs, rest = getopt.gnu_getopt(args, SHORT, LONG)
    assert parse(args) == (pairs, rest)


# ---- options declared once (cli.registry.COMMANDS) -------------------------------------

GOLDEN_HELP = Path(__file__).parent / "golden" / "xm_help.txt"

#: the getopt strings xm's commands used before their options were declared once
GETOPT_BEFORE = {
    "console": ("q", ["quiet"]),
    "create": ("hqf:F:npcxs", ["help", "help_config", "quiet", "path=", "defconfig=",
                               "config=", "dryrun", "paused", "console_autoconnect",
                               "xmldryrun", "skipdtd", "vncviewer", "vncviewer-autopass"]),
    "start": ("pc", ["paused", "console_autoconnect", "vncviewer", "vncviewer-autopass"]),
    "dump-core": ("LCR", ["live", "crash", "reset"]),
    "list": ("lv", ["long", "label", "state=", "vcpus"]),
    "migrate": ("lp:n:s", ["live", "port=", "node=", "ssl"]),
    "reboot": ("aw", ["all", "wait"]),
    "restore": ("p", ["paused"]),
    "resume": ("p", ["paused"]),
    "save": ("c", ["checkpoint"]),
    "shutdown": ("awHRh", ["all", "wait", "halt", "reboot", "help"]),
    "uptime": ("s", ["short"]),
    "sched-credit": ("d:w:c:", ["domain=", "weight=", "cap="]),
    "sched-sedf": ("p:s:l:e:w:", ["period=", "slice=", "latency=", "extratime=", "weight="]),
    "top": ("bd:i:nxvrf", ["batch", "delay=", "iterations=", "networks", "vbds", "vcpus",
                           "repeat-header", "full-name"]),
    "block-list": ("l", ["long"]),
    "network-list": ("l", ["long"]),
    "vtpm-list": ("l", ["long"]),
    "dmesg": ("c", ["clear"]),
    "info": ("c", ["config"]),
    "getpolicy": ("", ["dumpxml"]),
    "vncviewer": ("h", ["autopass", "vncviewer-autopass", "help"]),
}


@pytest.mark.parametrize("command", sorted(GETOPT_BEFORE))
def test_declared_options_give_the_same_parser(command: str) -> None:
    short, long = opts.spec(BY_NAME[command].options)
    want_short, want_long = GETOPT_BEFORE[command]
    assert sorted(short.replace(":", "")) == sorted(want_short.replace(":", ""))
    assert {c for i, c in enumerate(short) if short[i + 1:i + 2] == ":"} == \
        {c for i, c in enumerate(want_short) if want_short[i + 1:i + 2] == ":"}
    assert sorted(long) == sorted(want_long)


def test_commands_without_options_declare_none() -> None:
    for cmd in COMMANDS:
        if cmd.name not in GETOPT_BEFORE and cmd.name != "new":
            assert cmd.options == [], cmd.name


def test_help_is_byte_identical_to_the_hand_written_tables() -> None:
    out = [short_help(), long_help(True), long_help(False)]
    out += [command_usage(c) for c in COMMANDS]
    assert "\n=====\n".join(out) == GOLDEN_HELP.read_text()


def test_label_and_name() -> None:
    assert opts.Option("p", "port", "x", value="portnum").label() == \
        "-p=portnum, --port=portnum"
    assert opts.Option("", "state", "x", value="<state>").label() == "--state=<state>"
    assert opts.Option("l", "long", "x").label() == "-l, --long"
    assert opts.Option("", "label", "x").label() == "--label"
    assert opts.Option("x", "", "x").name == "x"
    assert opts.Option("x", "xml", "x").name == "xml"


def test_parse_options_keys_by_long_name() -> None:
    declared = BY_NAME["migrate"].options
    assert opts.parse_options(["-lp", "8002", "vm", "--ssl", "h"], declared) == (
        {"live": "", "port": "8002", "ssl": ""}, ["vm", "h"])
    assert opts.parse_options(["--port=1", "-p", "2"], declared) == ({"port": "2"}, [])
    with pytest.raises(OptionError, match="option -x not recognized"):
        opts.parse_options(["-x"], declared)


def test_hidden_options_parse_but_are_not_listed() -> None:
    assert opts.parse_options(["-v"], BY_NAME["list"].options) == ({"vcpus": ""}, [])
    assert "vcpus" not in command_usage(BY_NAME["list"])
