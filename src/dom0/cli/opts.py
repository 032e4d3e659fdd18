"""GNU-style option parsing for xm commands.

The standard ``getopt`` pulls in gettext, locale and re (several ms at every
``xm`` start); this does the same job for what xm needs: short flags that may be
bundled (``-waR``), short options with a value (``-p 8002``/``-p8002``), long options
with ``=value`` or a separate value, unambiguous long prefixes, and ``--`` ending
options.  Options and operands may be interleaved."""

from __future__ import annotations

from dom0.errors import OptionError


def parse(args: list[str], short: str, long: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    takes_value = {c for i, c in enumerate(short) if i + 1 < len(short) and short[i + 1] == ":"}
    flags = {c for c in short if c != ":"}
    longs = {name.rstrip("="): name.endswith("=") for name in long}
    pairs: list[tuple[str, str]] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest += args[i:]
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            matches = [n for n in longs if n == name] or [n for n in longs if n.startswith(name)]
            if len(matches) != 1:
                what = "not a unique prefix" if matches else "not recognized"
                raise OptionError(f"option --{name} {what}")
            name = matches[0]
            if longs[name]:
                if not eq:
                    if i >= len(args):
                        raise OptionError(f"option --{name} requires argument")
                    value = args[i]
                    i += 1
            elif eq:
                raise OptionError(f"option --{name} must not have an argument")
            pairs.append(("--" + name, value))
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                c = arg[j]
                if c not in flags:
                    raise OptionError(f"option -{c} not recognized")
                if c in takes_value:
                    value = arg[j + 1:]
                    if not value:
                        if i >= len(args):
                            raise OptionError(f"option -{c} requires argument")
                        value = args[i]
                        i += 1
                    pairs.append(("-" + c, value))
                    break
                pairs.append(("-" + c, ""))
                j += 1
        else:
            rest.append(arg)
    return pairs, rest


class Option:
    """One option of an xm command, declared once: its help line and its parser
    entry both come from here.  ``help=None`` hides it from the help (options xm 3.4
    accepted without listing them).  (A plain class: dataclasses cost xm's start.)"""

    __slots__ = ("short", "long", "help", "value")

    def __init__(self, short: str, long: str, help: str | None, value: str = "") -> None:
        self.short = short
        self.long = long
        self.help = help
        #: the value's name in the help (``--port=portnum``); empty for a flag
        self.value = value

    @property
    def name(self) -> str:
        """What the parsed options are keyed by: the long name, else the letter."""
        return self.long or self.short

    def label(self) -> str:
        """The help's left column: ``-p=portnum, --port=portnum``."""
        tail = f"={self.value}" if self.value else ""
        names = ([f"-{self.short}{tail}"] if self.short else []) + \
            ([f"--{self.long}{tail}"] if self.long else [])
        return ", ".join(names)


def spec(options: list[Option]) -> tuple[str, list[str]]:
    """The getopt-style short string and long list of declared options."""
    short = "".join(o.short + (":" if o.value else "") for o in options if o.short)
    long = [o.long + ("=" if o.value else "") for o in options if o.long]
    return short, long


def parse_options(args: list[str], options: list[Option]) -> tuple[dict[str, str], list[str]]:
    """Parse against declared options: ({option name: value}, operands).  Either
    spelling of an option (``-p``/``--paused``) gives its one name; the last wins."""
    by_flag = {}
    for o in options:
        if o.short:
            by_flag["-" + o.short] = o.name
        if o.long:
            by_flag["--" + o.long] = o.name
    pairs, rest = parse(args, *spec(options))
    return {by_flag[flag]: value for flag, value in pairs}, rest
