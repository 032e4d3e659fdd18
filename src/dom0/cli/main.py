"""``xm``: dispatch to the command named (cli.registry declares them), help, and the
one place where errors become output and exit codes (spec §1.1, §9)."""

from __future__ import annotations

import sys

from dom0.cli.registry import (
    DEPRECATED,
    SUBMODULE,
    Command,
    command_usage,
    long_help,
    resolve,
    short_help,
)
from dom0.errors import (
    ConfigFileError,
    InvalidDomain,
    OptionError,
    UsageError,
    XendError,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs xm ~2 ms

if TYPE_CHECKING:
    from collections.abc import Callable


def _handler(name: str) -> Callable[[list[str]], int]:
    if name == "shell":  # the shell runs each line through this very dispatcher
        from dom0.cli.commands.host import shell

        return lambda args: shell(main, args)
    from dom0.cli import commands

    module = commands
    if name in SUBMODULE:
        module = __import__(f"dom0.cli.commands.{SUBMODULE[name]}", fromlist=["cmd"])
    return getattr(module, "cmd_" + name.replace("-", "_"))  # type: ignore[no-any-return]


def cmd_help(args: list[str]) -> int:
    long_ = "--long" in args
    words = [a for a in args if a != "--long"]
    if words:
        cmd = resolve(words[0])
        if cmd is None:
            print(f"Error: Subcommand {words[0]} not found!", file=sys.stderr)
            return 1
        print(command_usage(cmd))
        return 0
    print(long_help(long_))
    return 0


def run(cmd: Command, args: list[str]) -> int:
    """Run one command; map every error to the spec's output and exit code."""
    if args and args[0] in ("-h", "--help") and cmd.name not in ("help",):
        print(command_usage(cmd))
        return 1
    try:
        if cmd.name == "help":
            return cmd_help(args)
        return _handler(cmd.name)(args)
    except InvalidDomain as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigFileError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except UsageError as exc:
        if str(exc):
            print(f"Error: {exc}", file=sys.stderr)
        print(command_usage(cmd), file=sys.stderr)
        return 1
    except OptionError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        print(command_usage(cmd), file=sys.stderr)
        return 1
    except XendError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if exc.show_usage:
            print(f"Usage: xm {cmd.name} {cmd.synopsis}\n\n{cmd.description}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, OverflowError):
        print("Error: Invalid argument.", file=sys.stderr)
        print(command_usage(cmd), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Interrupted.")
        return 1
    except BrokenPipeError:
        return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(short_help())
        return 1
    word = args[0]
    if word in ("help", "--help", "-h"):
        return cmd_help(args[1:])
    if word in DEPRECATED:
        new = DEPRECATED[word]
        print(f"Command {word} is deprecated.  Please use xm {new} instead.", file=sys.stderr)
        word = new
    cmd = resolve(word)
    if cmd is None:
        print(f"Error: Subcommand {word} not found!", file=sys.stderr)
        print(short_help(), file=sys.stderr)
        return 1
    try:
        return run(cmd, args[1:])
    except Exception as exc:  # the last guard: no traceback reaches a user
        print(f"Unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
