"""xm's host and introspection commands: ``trigger``, ``debug-keys``, ``serve`` and
``shell`` (spec §1.2)."""

from __future__ import annotations

import sys

from dom0.cli.commands import nargs, xend
from dom0.errors import XendError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO, TextIO

SHELL_BANNER = 'The Xen Master. Type "help" for a list of functions.'


def cmd_trigger(args: list[str]) -> int:
    nargs("trigger", args, 2, 3)
    vcpu = int(args[2]) if len(args) == 3 else 0  # a ValueError is xm's "Invalid argument."
    xend().domain_trigger(dom=args[0], trigger=args[1], vcpu=vcpu)
    return 0


def cmd_debug_keys(args: list[str]) -> int:
    nargs("debug-keys", args, 1)
    xend().node_debug_keys(keys=args[0])
    return 0


def cmd_serve(args: list[str]) -> int:
    nargs("serve", args, 0)
    return serve(sys.stdin.buffer, sys.stdout.buffer)


def serve(stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Forward each request read on *stdin* to xend's socket and write its reply on
    *stdout*, until *stdin* ends.  A request xend cannot take gets an error reply, so
    the remote xm prints what a local one would."""
    from dom0.client import XendClient, server_path
    from dom0.client.stdio import error_reply, read_message, reframe

    client = XendClient(server_path())  # the socket itself, never $DOM0_XEND_COMMAND
    while True:
        request = read_message(stdin)
        if request is None:
            return 0
        try:
            reply = reframe(client.exchange(request))
        except XendError as exc:
            reply = error_reply(exc)
        stdout.write(reply)
        stdout.flush()


def shell(dispatch: Callable[[list[str]], int], args: list[str],
          stdin: TextIO | None = None) -> int:
    """xm's interactive prompt: each line is an xm command, run in this process by
    *dispatch* (cli.main.main: errors are printed and the shell goes on)."""
    nargs("shell", args, 0)
    import cmd
    import shlex

    class Shell(cmd.Cmd):
        prompt = "xm> "

        def default(self, line: str) -> None:
            try:
                words = shlex.split(line)
            except ValueError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                return
            if words and words[0] == "xm":
                words = words[1:]
            if words and words[0] == "shell":
                print("Error: already in the xm shell", file=sys.stderr)
            elif words:
                try:
                    dispatch(words)
                except SystemExit:  # a command's own exit never ends the shell
                    pass
                sys.stdout.flush()

        def do_quit(self, arg: str) -> bool:
            return True

        do_exit = do_quit

        def emptyline(self) -> bool:
            return False

        def do_help(self, arg: str) -> bool | None:
            dispatch(["help", *arg.split()])
            return False

        def do_EOF(self, line: str) -> bool:
            print()
            return True

    sh = Shell(stdin=stdin) if stdin is not None else Shell()
    if stdin is not None:
        sh.use_rawinput = False
    try:
        sh.cmdloop(SHELL_BANNER)
    except KeyboardInterrupt:
        print()
    return 0
