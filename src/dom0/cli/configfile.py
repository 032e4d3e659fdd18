"""Evaluating Xen domain config files the way ``xm create`` did (spec §2.1-2.3).

A config file is a Python script.  Command-line ``VAR=VALUE`` words either set a
known variable (and win over the file) or become script variables visible to the
file (``vmid=1``).  After running the script, its str/list/int/float locals fill
in every variable not given on the command line.  The result is a typed
:class:`~dom0.model.config.DomainConfig`.
"""

from __future__ import annotations

import os
import os.path
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dom0.errors import ConfigFileError, OptionError
from dom0.model.config import DomainConfig
from dom0.model.devices import parse_disk as parse_disk  # re-exported
from dom0.model.devices import parse_vif as parse_vif  # re-exported
from dom0.model.fields import VARS_BY_NAME, XM_VARIABLES

#: spec §2.3: every variable xm 3.4 declared, as ``name: (type letter, default)``,
#: in the spec's order (``--help_config`` prints it); read off model/fields.py
VARIABLES: dict[str, tuple[str, Any]] = {v.name: (v.kind, v.default) for v in XM_VARIABLES}


@dataclass
class CreateOptions:
    """What ``xm create``/``xm new`` were told on their command line."""

    quiet: bool = False
    dryrun: bool = False
    paused: bool = False
    console: bool = False
    #: --vncviewer / --vncviewer-autopass: a VNC viewer on the new domain's screen
    vncviewer: bool = False
    vncviewer_autopass: bool = False
    path: str = ".:/etc/xen"
    defconfig: str | None = None
    sxp_config: str | None = None
    help: bool = False
    help_config: bool = False
    #: variables given as VAR=VALUE that name a known variable
    given: dict[str, Any] = field(default_factory=dict)
    #: VAR=VALUE words that do not: script variables for the file
    script_vars: dict[str, str] = field(default_factory=dict)


def parse_create_args(argv: list[str]) -> CreateOptions:
    opts = CreateOptions()
    from dom0.cli.opts import parse, spec
    from dom0.cli.registry import CREATE_OPTIONS

    pairs, rest = parse(argv, *spec(CREATE_OPTIONS))
    for opt, value in pairs:
        if opt in ("-h", "--help"):
            opts.help = True
        elif opt == "--help_config":
            opts.help_config = True
        elif opt in ("-q", "--quiet"):
            opts.quiet = True
        elif opt == "--path":
            opts.path = value
        elif opt in ("-f", "--defconfig"):
            opts.defconfig = value
        elif opt in ("-F", "--config"):
            opts.sxp_config = value
        elif opt in ("-n", "--dryrun"):
            opts.dryrun = True
        elif opt in ("-p", "--paused"):
            opts.paused = True
        elif opt in ("-c", "--console_autoconnect"):
            opts.console = True
        elif opt == "--vncviewer":
            opts.vncviewer = True
        elif opt == "--vncviewer-autopass":
            opts.vncviewer = opts.vncviewer_autopass = True
        elif opt in ("-x", "--xmldryrun", "-s", "--skipdtd"):
            raise OptionError("XML configuration is only supported by the Xen-API server")
    for word in rest:
        if "=" in word:
            name, value = word.split("=", 1)
            if name in VARIABLES:
                _set_given(opts.given, name, value)
            else:
                opts.script_vars[name] = value
        elif opts.defconfig is None:
            opts.defconfig = word  # a bare word is the config file
        else:
            raise OptionError(f"Invalid argument: {word}")
    return opts


def _set_given(given: dict[str, Any], name: str, value: str) -> None:
    given[name] = VARS_BY_NAME[name].convert(value, given.get(name))


# ---- locating and evaluating the file ---------------------------------------


def find_config(name: str, path: str) -> str:
    """Spec §2.2: try ``name`` as given, then ``<dir>/name`` for each dir of the path."""
    if os.path.isabs(name):
        if os.path.isfile(name):
            return name
    else:
        for directory in [""] + path.split(":"):
            candidate = os.path.join(directory or ".", name)
            if os.path.isfile(candidate):
                return candidate
    raise OptionError(f"Unable to open config file: {name}")


class Vars:
    """``xm_vars`` inside config files: declared, checked script variables."""

    def __init__(self, env: dict[str, Any]) -> None:
        self._env = env
        self._checks: list[tuple[str, Callable[[str, Any], Any] | None]] = []

    def var(self, name: str, use: str = "", check: Callable[[str, Any], Any] | None = None) -> None:
        self._checks.append((name, check))
        self._env.setdefault(name, None)

    def check(self) -> None:
        for name, check in self._checks:
            if check is None:
                continue
            try:
                value = check(name, self._env.get(name))
            except Exception as exc:  # the file's own check: any failure is the user's error
                raise ConfigFileError(f"Error: {name} - {exc}") from None
            self._env[name] = value


#: how long a config file may run, in seconds, unless DOM0_CONFIG_TIMEOUT says otherwise
DEFAULT_TIMEOUT = 5.0
#: the environment variable that bounds a config file's evaluation (0 or less: no bound)
TIMEOUT_ENV = "DOM0_CONFIG_TIMEOUT"
#: after the first alarm, how often it fires again (a file that swallowed one, with a bare
#: ``except:``, gets another), and how many it may swallow before xm gives up on it
_REARM, _MAX_ALARMS = 0.5, 4


def evaluate_file(filename: str, script_vars: dict[str, str],
                  timeout: float | None = None) -> dict[str, Any]:
    """Run the config script; return its resulting variables (locals of simple types).
    It may run *timeout* seconds (default: ``$DOM0_CONFIG_TIMEOUT``, else 5)."""
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise OptionError(f"Unable to open config file: {filename}: {exc.strerror}") from None
    if data.lstrip().startswith(b"<"):
        raise OptionError("XML configuration is only supported by the Xen-API server")
    env: dict[str, Any] = {"sys": sys, "os": os, "xm_file": filename, "xm_help": False}
    env.update(script_vars)
    env["xm_vars"] = Vars(env)
    limit = config_timeout() if timeout is None else timeout
    _bounded(limit, filename, lambda: _run(_compile(data, filename), env, filename))
    return {k: v for k, v in env.items()
            if not k.startswith("__") and isinstance(v, (str, list, int, float))
            and not isinstance(v, bool) and k not in ("xm_file", "xm_help")}


def config_timeout() -> float:
    """The bound on a config file's run time: ``$DOM0_CONFIG_TIMEOUT`` seconds, else 5."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"{TIMEOUT_ENV} must be a number of seconds, not {text!r}") from None


def _utf8(data: bytes, filename: str) -> str:
    """An SXP config file's text; one that is not UTF-8 is named with its first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(_not_utf8(data, filename, exc)) from None


def _not_utf8(data: bytes, filename: str, exc: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, exc.start) + 1
    return (f"Error: config file {filename} is not valid UTF-8 (byte 0x{data[exc.start]:02x} "
            f"at line {line}, offset {exc.start})")


def _compile(data: bytes, filename: str) -> Any:
    """The file's code.  Python 3 reads source as UTF-8 unless a coding declaration
    (PEP 263) says otherwise, so a file that is neither gets a clear error naming the
    first bad byte, not a decoding traceback (xm 3.4's Python 2 read bytes)."""
    bad: UnicodeDecodeError | None = None
    try:
        source: str | bytes = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        source = data  # compile() honours a coding declaration in the bytes
        bad = exc
    try:
        return compile(source, filename, "exec")
    except SyntaxError as exc:
        if bad is not None:
            raise ConfigFileError(_not_utf8(data, filename, bad)) from None
        raise ConfigFileError(
            f"Errors were found at line {exc.lineno} while processing {filename}:\n\t{exc.msg}"
        ) from None
    except ValueError as exc:  # NUL bytes (a SyntaxError from Python 3.12 on)
        raise ConfigFileError(f"Error: config file {filename} is not Python source: {exc}") \
            from None
    except (MemoryError, RecursionError) as exc:  # nesting too deep for the parser
        raise ConfigFileError(f"Error: config file {filename} is too deeply nested to "
                              f"compile ({type(exc).__name__})") from None


def _run(code: Any, env: dict[str, Any], filename: str) -> None:
    try:
        exec(code, env)
    except ConfigFileError:
        raise
    except MemoryError as exc:  # str() is usually empty: say what happened
        raise ConfigFileError(f"Error: the config file {filename} ran out of memory"
                              + (f": {exc}" if str(exc) else "")) from None
    except Exception as exc:  # arbitrary user code: report it as xm did
        raise ConfigFileError(f"Error: {str(exc) or type(exc).__name__}") from None


class _Overran(BaseException):
    """Raised by the alarm into a config file that ran too long.  Not an Exception,
    so that the file's own ``except Exception:`` does not swallow it."""


def _bounded(seconds: float, filename: str, run: Callable[[], None]) -> None:
    """Run *run*, interrupting it after *seconds*.  Config files are Python run in xm's
    own (single) thread, and a CPU loop cannot be stopped by another thread: SIGALRM's
    handler raises in the main thread instead.  Not in the main thread (a library
    caller), no handler can be installed: it runs unbounded."""
    if seconds <= 0:
        return run()
    import signal  # only here: xm commands without a config file do not pay for it

    state = {"done": False, "alarms": 0}

    def on_alarm(signum: int, frame: Any) -> None:
        if state["done"]:
            return
        state["alarms"] += 1
        if state["alarms"] > _MAX_ALARMS:  # it swallowed every one: nothing else stops it
            os.write(2, (_overran(filename, seconds) + "\n").encode())
            os._exit(1)
        raise _Overran

    try:
        previous = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:
        return run()
    signal.setitimer(signal.ITIMER_REAL, seconds, _REARM)
    try:
        try:
            run()
        finally:
            state["done"] = True  # from here on an alarm is ignored
    except _Overran:
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if state["alarms"]:
        raise ConfigFileError(_overran(filename, seconds))
    return None


def _overran(filename: str, seconds: float) -> str:
    return (f"Error: config file {filename} did not finish within {seconds:g} s "
            f"(set {TIMEOUT_ENV} to allow longer)")


def resolve_variables(opts: CreateOptions) -> tuple[str | None, dict[str, Any]]:
    """Evaluate the config file (if any) and merge: command line > file > defaults."""
    values: dict[str, Any] = {}
    filename = None
    if opts.defconfig:
        filename = find_config(opts.defconfig, opts.path)
        file_vars = evaluate_file(filename, opts.script_vars)
        for name, value in file_vars.items():
            if name in VARIABLES and name not in opts.given:
                values[name] = _plain(name, value)
            elif name not in VARIABLES and name not in opts.script_vars \
                    and not name.startswith("_"):
                # xm 3.4 dropped these silently: a misspelt variable (``bot='d'``) is
                # said, not lost; a helper variable of the script gets the same line
                print(f"Warning: {name} is not a config variable (xm create --help_config "
                      "lists them): ignored", file=sys.stderr)
    values.update(opts.given)
    for name, (_, default) in VARIABLES.items():
        values.setdefault(name, default)
    if not values.get("name") and filename:
        values["name"] = os.path.basename(filename)
    return filename, values


def _plain(name: str, value: Any) -> Any:
    """A variable's value as JSON can carry it to xend (tuples become lists): a list
    holding a function or an object is the file's error, said here, not a
    serialisation failure when xm sends the config."""
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ConfigFileError(f"Error: {name} holds a {type(value).__name__}; config variables "
                          "hold strings, numbers and lists of them")


# ---- from variables to the typed config (xm's preprocess + make_config) --------


def build_config(values: dict[str, Any]) -> DomainConfig:
    """The typed config from the resolved variables (see DomainConfig.from_variables:
    what each field reads is declared on the field)."""
    return DomainConfig.from_variables(values)


def config_from_args(opts: CreateOptions) -> tuple[str | None, DomainConfig]:
    """Everything ``xm create`` does before it talks to xend."""
    if opts.sxp_config:
        from dom0.model import sxp
        from dom0.model.config import ConfigError

        try:
            with open(opts.sxp_config, "rb") as f:
                data = f.read()
            form = sxp.parse_one(_utf8(data, opts.sxp_config))
            return opts.sxp_config, DomainConfig.from_sxp(form)
        except OSError:
            raise OptionError(f"Unable to open config file: {opts.sxp_config}") from None
        except (sxp.SxpSyntaxError, ConfigError) as exc:
            raise OptionError(f"{opts.sxp_config}: {exc}") from None
    filename, values = resolve_variables(opts if opts.defconfig else _with_default(opts))
    return filename, build_config(values)


def _with_default(opts: CreateOptions) -> CreateOptions:
    opts.defconfig = "xmdefconfig"
    return opts
