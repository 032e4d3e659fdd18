"""dom0.cli.configfile: ``xm create`` options, config-file evaluation and the
(vm ...) it builds (spec §2.1-2.5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from spec_samples import SPEC_XMEXAMPLE1

from dom0.cli import configfile
from dom0.cli.configfile import (
    VARIABLES,
    CreateOptions,
    build_config,
    config_from_args,
    evaluate_file,
    find_config,
    parse_create_args,
    parse_disk,
    parse_vif,
    resolve_variables,
)
from dom0.errors import ConfigFileError, OptionError
from dom0.model import sxp
from dom0.model.config import DiskSpec, VifSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

XMEXAMPLE1 = """\
# an xmexample1-like config (spec §2.5)
kernel = "/boot/vmlinuz-2.6.10-xenU"
memory = 64
name = "ExampleDomain"
disk = ['phy:hda1,hda1,w']
vif = ['']
root = "/dev/hda1 ro"
extra = "4"
"""



NETWORK_ARGS = (
    "ip=10.0.0.5 gateway=10.0.0.1 netmask=255.255.255.0 hostname=vm1 nfs_server=10.0.0.2 "
    "nfs_root=/export/vm1 root=/dev/nfs vif=mac=00:16:3e:00:00:01,bridge=xenbr0,rate=10Mb/s "
    "vtpm=instance=1,backend=0 cpus=0-3,^1 cpu_weight=512 cpu_cap=50 on_crash=preserve "
    "vfb=vnc=1,vncdisplay=3"
).split()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def values(**overrides: object) -> dict[str, object]:
    """Every variable at its default, with *overrides* (what resolve_variables gives)."""
    out = {name: default for name, (_, default) in VARIABLES.items()}
    out.update(overrides)
    return out


# ---- parse_create_args ---------------------------------------------------------


def test_parse_create_args_defaults() -> None:
    opts = parse_create_args([])
    assert opts == CreateOptions()
    assert opts.path == ".:/etc/xen"
    assert opts.defconfig is None and opts.sxp_config is None


def test_parse_create_args_flags() -> None:
    opts = parse_create_args(["-q", "-n", "-p", "-c", "--path=/a:/b", "-f", "cfg", "-F", "x.sxp"])
    assert (opts.quiet, opts.dryrun, opts.paused, opts.console) == (True, True, True, True)
    assert opts.path == "/a:/b"
    assert opts.defconfig == "cfg"
    assert opts.sxp_config == "x.sxp"


def test_parse_create_args_long_flags() -> None:
    opts = parse_create_args(["--quiet", "--dryrun", "--paused", "--console_autoconnect",
                              "--defconfig=c1", "--config=c2", "--help", "--help_config"])
    assert opts.quiet and opts.dryrun and opts.paused and opts.console
    assert opts.help and opts.help_config
    assert (opts.defconfig, opts.sxp_config) == ("c1", "c2")


def test_parse_create_args_bare_word_is_the_config_file() -> None:
    opts = parse_create_args(["xmexample2", "-n", "vmid=1"])
    assert opts.defconfig == "xmexample2"
    assert opts.dryrun


def test_parse_create_args_second_bare_word_is_an_error() -> None:
    with pytest.raises(OptionError, match="Invalid argument: other"):
        parse_create_args(["-f", "cfg", "other"])


def test_parse_create_args_known_variables_vs_script_variables() -> None:
    opts = parse_create_args(["cfg", "memory=256", "name=vm", "vmid=1", "foo=a=b"])
    assert opts.given == {"memory": 256, "name": "vm"}
    assert opts.script_vars == {"vmid": "1", "foo": "a=b"}  # strings, split at the first '='


def test_parse_create_args_list_variable_is_repeatable() -> None:
    opts = parse_create_args(["disk=phy:a,a,w", "disk=phy:b,b,r", "vif="])
    assert opts.given["disk"] == ["phy:a,a,w", "phy:b,b,r"]
    assert opts.given["vif"] == [""]


def test_parse_create_args_bool_and_int_conversion() -> None:
    opts = parse_create_args(["localtime=yes", "usb=n", "vcpus=2"])
    assert opts.given == {"localtime": 1, "usb": 0, "vcpus": 2}


def test_parse_create_args_bad_int() -> None:
    with pytest.raises(OptionError, match=r"^Invalid value: lots$"):
        parse_create_args(["memory=lots"])


def test_parse_create_args_bad_bool() -> None:
    with pytest.raises(OptionError, match=r"^Invalid value:maybe$"):
        parse_create_args(["usb=maybe"])


def test_parse_create_args_unknown_option() -> None:
    with pytest.raises(OptionError):
        parse_create_args(["--bogus"])


def test_parse_create_args_xml_options_rejected() -> None:
    with pytest.raises(OptionError, match="Xen-API"):
        parse_create_args(["-x", "cfg"])


# ---- find_config -------------------------------------------------------------------


def test_find_config_prefers_current_directory(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d1").mkdir()
    write(tmp_path / "cfg", "")
    write(tmp_path / "d1" / "cfg", "")
    monkeypatch.chdir(tmp_path)
    assert find_config("cfg", str(tmp_path / "d1")) == "./cfg"


def test_find_config_searches_path_in_order(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for d in ("cwd", "d1", "d2"):
        (tmp_path / d).mkdir()
    write(tmp_path / "d1" / "cfg", "")
    write(tmp_path / "d2" / "cfg", "")
    write(tmp_path / "d2" / "only2", "")
    monkeypatch.chdir(tmp_path / "cwd")
    path = f"{tmp_path / 'd1'}:{tmp_path / 'd2'}"
    assert find_config("cfg", path) == str(tmp_path / "d1" / "cfg")
    assert find_config("only2", path) == str(tmp_path / "d2" / "only2")


def test_find_config_absolute_name(tmp_path: Path) -> None:
    name = write(tmp_path / "abs.cfg", "")
    assert find_config(name, "/nonexistent") == name


def test_find_config_ignores_directories(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cfg").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError):
        find_config("cfg", "")


@pytest.mark.parametrize("name", ["nosuchfile", "/nonexistent/abs.cfg"])
def test_find_config_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               name: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError) as info:
        find_config(name, str(tmp_path))
    assert str(info.value) == f"Unable to open config file: {name}"


# ---- evaluate_file -------------------------------------------------------------------


def test_evaluate_file_returns_simple_locals(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "import math\nmemory = 64\nname = 'x'\ndisk = ['a']\n"
               "ratio = 0.5\nflag = True\ndef f():\n    pass\nunknown_var = 'kept'\n")
    env = evaluate_file(fn, {})
    assert env["memory"] == 64 and env["name"] == "x" and env["disk"] == ["a"]
    assert env["ratio"] == 0.5
    assert env["unknown_var"] == "kept"
    for absent in ("math", "f", "flag", "xm_file", "xm_help", "xm_vars", "sys", "os",
                   "__builtins__"):
        assert absent not in env


def test_evaluate_file_sees_script_vars_and_presets(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "name = 'VM' + vmid\nsrc = xm_file\nsep = os.sep\n"
               "argc = len(sys.argv) >= 0 and 1\n")
    env = evaluate_file(fn, {"vmid": "7"})
    assert env["name"] == "VM7"
    assert env["vmid"] == "7"
    assert env["src"] == fn
    assert env["sep"] == os.sep


def test_evaluate_file_xm_vars_check_converts(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "xm_vars.var('n', use='a number', check=lambda v, x: int(x) * 2)\n"
               "xm_vars.check()\nmemory = n\n")
    assert evaluate_file(fn, {"n": "21"})["memory"] == 42


def test_evaluate_file_xm_vars_declared_but_unset_is_none(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "xm_vars.var('n')\nxm_vars.check()\nis_none = int(n is None)\n")
    assert evaluate_file(fn, {})["is_none"] == 1


def test_evaluate_file_xm_vars_check_error_text(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "def chk(var, val):\n    raise ValueError('too small')\n"
               "xm_vars.var('vmid', check=chk)\nxm_vars.check()\n")
    with pytest.raises(ConfigFileError) as info:
        evaluate_file(fn, {"vmid": "0"})
    assert str(info.value) == "Error: vmid - too small"


def test_evaluate_file_syntax_error_text(tmp_path: Path) -> None:
    fn = write(tmp_path / "bad", "memory = 64\nname = = 'x'\n")
    with pytest.raises(ConfigFileError) as info:
        evaluate_file(fn, {})
    assert str(info.value) == (
        f"Errors were found at line 2 while processing {fn}:\n\tinvalid syntax")


def test_evaluate_file_runtime_error_text(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "memory = 1 // 0\n")
    with pytest.raises(ConfigFileError) as info:
        evaluate_file(fn, {})
    assert str(info.value) == "Error: integer division or modulo by zero"


def test_evaluate_file_xml_rejected(tmp_path: Path) -> None:
    fn = write(tmp_path / "c.xml", "  <vm/>\n")
    with pytest.raises(OptionError, match="Xen-API"):
        evaluate_file(fn, {})


def test_evaluate_file_unreadable(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="Unable to open config file"):
        evaluate_file(str(tmp_path / "missing"), {})


# ---- evaluation bounded, and its failures said in one line (issue 9 items 10, 11) ----


def xm_create_dry(fn: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``xm create -n <fn>`` in-process: its exit code and its one stderr line."""
    from dom0.cli.main import main

    code = main(["create", "-n", fn])
    return code, capsys.readouterr().err


def test_endless_config_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``while True: pass`` hung xm for ever."""
    fn = write(tmp_path / "loop", "while True:\n    pass\n")
    monkeypatch.setenv("DOM0_CONFIG_TIMEOUT", "0.3")
    code, err = xm_create_dry(fn, capsys)
    assert code == 1
    assert err == (f"Error: config file {fn} did not finish within 0.3 s "
                   "(set DOM0_CONFIG_TIMEOUT to allow longer)\n")


def test_timeout_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOM0_CONFIG_TIMEOUT", raising=False)
    assert configfile.config_timeout() == 5.0
    monkeypatch.setenv("DOM0_CONFIG_TIMEOUT", "12.5")
    assert configfile.config_timeout() == 12.5
    monkeypatch.setenv("DOM0_CONFIG_TIMEOUT", "soon")
    with pytest.raises(OptionError, match="^DOM0_CONFIG_TIMEOUT must be a number of seconds"):
        configfile.config_timeout()


def test_timeout_survives_the_files_own_except(tmp_path: Path) -> None:
    """``except Exception`` in the file does not swallow the timeout, and the alarm is
    gone afterwards (a later long computation is not interrupted)."""
    import signal

    fn = write(tmp_path / "c", "while True:\n    try:\n        x = 0\n"
               "        while True: x += 1\n    except Exception:\n        pass\n")
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(ConfigFileError, match="did not finish within 0.2 s"):
        evaluate_file(fn, {}, timeout=0.2)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) == before


def test_timeout_not_reported_for_a_file_that_finishes(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "import time\ntime.sleep(0.1)\nmemory = 64\n")
    assert evaluate_file(fn, {}, timeout=2)["memory"] == 64
    assert evaluate_file(fn, {}, timeout=0)["memory"] == 64  # 0: no bound


def test_config_swallowing_every_alarm_still_stops_xm(tmp_path: Path) -> None:
    """A bare ``except:`` around the loop swallows each alarm: after a few xm gives up
    on it (exit 1, the timeout message), not hang."""
    import subprocess
    import sys

    fn = write(tmp_path / "c", "while True:\n    try:\n        x = 0\n"
               "        while True: x += 1\n    except:\n        pass\n")
    code = "from dom0.cli.configfile import evaluate_file; evaluate_file(%r, {})" % fn
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "DOM0_CONFIG_TIMEOUT": "0.2"})
    assert out.returncode == 1
    assert out.stderr.startswith(f"Error: config file {fn} did not finish within 0.2 s")


def test_memory_error_says_what_happened(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``Error: `` and nothing."""
    fn = write(tmp_path / "c", "x = [0] * (1 << 62)\n")
    code, err = xm_create_dry(fn, capsys)
    assert (code, err) == (1, f"Error: the config file {fn} ran out of memory\n")
    fn = write(tmp_path / "d", "raise MemoryError('cannot allocate 10 GiB')\n")
    with pytest.raises(ConfigFileError, match=r"ran out of memory: cannot allocate 10 GiB$"):
        evaluate_file(fn, {})


def test_exception_without_text_is_named(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "raise KeyError\n")
    with pytest.raises(ConfigFileError, match="^Error: KeyError$"):
        evaluate_file(fn, {})


def test_non_utf8_config_names_the_byte(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``Invalid argument.``"""
    path = tmp_path / "c"
    path.write_bytes(b"memory = 64\nname = 'caf\xe9'\n")
    code, err = xm_create_dry(str(path), capsys)
    assert (code, err) == (1, f"Error: config file {path} is not valid UTF-8 "
                              "(byte 0xe9 at line 2, offset 23)\n")


def test_coding_declaration_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_bytes(b"# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n")
    assert evaluate_file(str(path), {})["name"] == "caf\xe9"


def test_nul_bytes_and_deep_nesting_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "c"
    path.write_bytes(b"memory = 64\0\n")
    with pytest.raises(ConfigFileError, match=f"^Error: config file {path} is not Python"):
        evaluate_file(str(path), {})
    fn = write(tmp_path / "d", "x = " + "(" * 500 + ")" * 500 + "\n")
    with pytest.raises(ConfigFileError):
        evaluate_file(fn, {})


# ---- resolve_variables ---------------------------------------------------------


def test_resolve_variables_command_line_wins(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "memory = 64\nname = 'file'\nvcpus = 2\n")
    opts = parse_create_args(["-f", fn, "memory=256"])
    filename, vals = resolve_variables(opts)
    assert filename == fn
    assert vals["memory"] == 256
    assert vals["name"] == "file"
    assert vals["vcpus"] == 2


def test_resolve_variables_command_line_list_replaces_file_list(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "vif = ['bridge=a', 'bridge=b']\ndisk = ['phy:x,x,w']\n")
    _, vals = resolve_variables(parse_create_args(["-f", fn, "vif=bridge=c"]))
    assert vals["vif"] == ["bridge=c"]
    assert vals["disk"] == ["phy:x,x,w"]


def test_resolve_variables_name_defaults_to_file_basename(tmp_path: Path) -> None:
    fn = write(tmp_path / "myguest.cfg", "memory = 64\n")
    _, vals = resolve_variables(parse_create_args(["-f", fn]))
    assert vals["name"] == "myguest.cfg"


def test_resolve_variables_defaults_and_unknown_names_ignored(tmp_path: Path) -> None:
    fn = write(tmp_path / "c", "bogus_variable = 1\n")
    _, vals = resolve_variables(parse_create_args(["-f", fn]))
    assert "bogus_variable" not in vals
    assert vals["memory"] == 128
    assert vals["interface"] == "eth0"
    assert vals["dhcp"] == "off"
    assert set(vals) == set(VARIABLES)


def test_resolve_variables_without_file() -> None:
    filename, vals = resolve_variables(parse_create_args(["name=x", "memory=32"]))
    assert filename is None
    assert vals["name"] == "x" and vals["memory"] == 32


def test_config_from_args_default_file_is_xmdefconfig(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError, match="^Unable to open config file: xmdefconfig$"):
        config_from_args(parse_create_args(["--path=" + str(tmp_path / "none")]))


# ---- build_config: networking ------------------------------------------------------


def test_build_config_ip_assembly() -> None:
    cfg = build_config(values(name="v", ip="10.0.0.5", gateway="10.0.0.1",
                              netmask="255.255.255.0", hostname="vm1"))
    assert cfg.ip == "10.0.0.5:127.0.255.255:10.0.0.1:255.255.255.0:vm1:eth0:off"


def test_build_config_ip_uses_nfs_server_and_interface() -> None:
    cfg = build_config(values(name="v", ip="1.2.3.4", nfs_server="9.9.9.9", nfs_root="/r",
                              interface="eth1"))
    assert cfg.ip == "1.2.3.4:9.9.9.9::::eth1:off"


def test_build_config_dhcp_alone() -> None:
    cfg = build_config(values(name="v", dhcp="dhcp"))
    assert cfg.ip == ":127.0.255.255::::eth0:dhcp"


def test_build_config_no_ip_without_ip_or_dhcp() -> None:
    cfg = build_config(values(name="v", gateway="10.0.0.1", hostname="h"))
    assert cfg.ip == ""


def test_build_config_nfs_prepends_nfsroot_to_extra() -> None:
    cfg = build_config(values(name="v", nfs_server="10.0.0.2", nfs_root="/export/vm1",
                              extra="4"))
    assert cfg.extra == "nfsroot=10.0.0.2:/export/vm1 4"
    cfg = build_config(values(name="v", nfs_server="s", nfs_root="/r"))
    assert cfg.extra.strip() == "nfsroot=s:/r"


def test_build_config_nfs_root_without_server() -> None:
    with pytest.raises(OptionError) as info:
        build_config(values(name="v", nfs_root="/export/vm1"))
    assert str(info.value) == "Must set nfs root and nfs server"


def test_build_config_nfs_server_alone_is_not_an_error() -> None:
    # Regression guard: the nfs derivation (now model/preprocess.py extra_with_nfsroot) once raised
    # "Must set nfs root and nfs server" when only nfs_server is given; spec §2.3 (and
    # xm's preprocess_nfs) raise it only when nfs_root is given without nfs_server.
    # nfs_server alone just replaces the dummy server in ip= and adds no nfsroot=.
    cfg = build_config(values(name="v", ip="10.0.0.5", nfs_server="10.0.0.2", extra="4"))
    assert cfg.ip == "10.0.0.5:10.0.0.2::::eth0:off"
    assert cfg.extra == "4"


def test_build_config_root_prefix_stripped() -> None:
    assert build_config(values(name="v", root="root=/dev/sda1 ro")).root == "/dev/sda1 ro"
    assert build_config(values(name="v", root="/dev/sda1")).root == "/dev/sda1"


# ---- build_config: restart, cpus, devices --------------------------------------------


@pytest.mark.parametrize("restart, actions", [
    ("onreboot", ("destroy", "restart", "destroy")),
    ("always", ("restart", "restart", "restart")),
    ("never", ("never", "never", "never")),
])
def test_build_config_deprecated_restart(restart: str, actions: tuple[str, str, str]) -> None:
    cfg = build_config(values(name="v", restart=restart))
    assert (cfg.on_poweroff, cfg.on_reboot, cfg.on_crash) == actions


def test_build_config_restart_invalid() -> None:
    with pytest.raises(OptionError, match="bogus"):
        build_config(values(name="v", restart="bogus"))


def test_build_config_explicit_action_overrides_restart() -> None:
    cfg = build_config(values(name="v", restart="always", on_crash="preserve"))
    assert (cfg.on_poweroff, cfg.on_reboot, cfg.on_crash) == ("restart", "restart", "preserve")


def test_build_config_actions_default_to_none() -> None:
    cfg = build_config(values(name="v"))
    assert (cfg.on_poweroff, cfg.on_reboot, cfg.on_crash) == (None, None, None)


def test_build_config_cpus_forms() -> None:
    assert build_config(values(name="v", cpus="0-3,^1")).cpus == "0-3,^1"
    assert build_config(values(name="v", cpus=[2, "3"])).cpus == ["2", "3"]
    assert build_config(values(name="v", cpu=1, cpus="2-3")).cpus == "1,2-3"
    assert build_config(values(name="v", cpu=1)).cpus == "1"
    assert build_config(values(name="v")).cpus is None


def test_build_config_numbers_from_strings() -> None:
    cfg = build_config(values(name="v", memory="64", maxmem="128", vcpus="2",
                              cpu_weight="512", cpu_cap="50"))
    assert (cfg.memory, cfg.maxmem, cfg.vcpus, cfg.cpu_weight, cfg.cpu_cap) == \
        (64, 128, 2, 512, 50)
    with pytest.raises(OptionError, match="Invalid value: x"):
        build_config(values(name="v", memory="x"))


def test_build_config_disks() -> None:
    cfg = build_config(values(name="v", disk=["phy:hda1,hda1,w", "file:/img, xvda ,r,3"]))
    assert cfg.disks == [DiskSpec("phy:hda1", "hda1", "w", None),
                         DiskSpec("file:/img", "xvda", "r", "3")]


@pytest.mark.parametrize("entry", ["phy:hda1,hda1", "a,b,c,d,e", ""])
def test_parse_disk_invalid(entry: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_disk(entry)
    assert str(info.value) == f"Invalid disk specifier: {entry}"


def test_parse_disk_from_list() -> None:
    assert parse_disk(["phy:a", "a", "r"]) == DiskSpec("phy:a", "a", "r", None)


def test_parse_vif() -> None:
    assert parse_vif("") == VifSpec({})
    assert parse_vif(" mac=00:16:3e:00:00:01 , bridge=xenbr0,rate=10Mb/s") == VifSpec(
        {"mac": "00:16:3e:00:00:01", "bridge": "xenbr0", "rate": "10Mb/s"})


def test_parse_vif_unknown_key() -> None:
    with pytest.raises(OptionError, match="^Invalid vif option: colour$"):
        parse_vif("bridge=x,colour=red")


def test_parse_vif_without_equals() -> None:
    with pytest.raises(OptionError):
        parse_vif("xenbr0")


def test_build_config_nics_pads_vif(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = build_config(values(name="v", vif=["bridge=br0"], nics=3))
    assert cfg.vifs == [VifSpec({"bridge": "br0"}), VifSpec({}), VifSpec({})]
    err = capsys.readouterr().err
    assert "The nics option is deprecated.  Please use an empty vif entry instead:\n\n" \
           "  vif = [ '' ]\n" in err


def test_build_config_nics_default_adds_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = build_config(values(name="v"))
    assert cfg.vifs == []
    assert capsys.readouterr().err == ""


def test_build_config_keeps_other_non_default_variables() -> None:
    # keymap is read by the HVM part now (model/hvm.py): opengl is one no field reads
    cfg = build_config(values(name="v", shadow_memory=8, opengl="1"))
    assert cfg.other == {"shadow_memory": 8, "opengl": "1", "s3_integrity": 1}
    assert cfg.image_extra == {"videoram": 4}


def test_an_hvm_variable_of_a_linux_domain_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = build_config(values(name="v", keymap="de", boot="d"))
    assert cfg.hvm is None
    err = capsys.readouterr().err.splitlines()
    assert sorted(err) == [
        "Warning: boot is read for HVM domains only (builder='hvm'): ignored here",
        "Warning: keymap is read for HVM domains only (builder='hvm'): ignored here"]


# ---- whole pipeline against spec §2.5 ----------------------------------------------


def test_xmexample1_dry_run_matches_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "xmexample1", XMEXAMPLE1)
    monkeypatch.chdir(tmp_path)
    filename, cfg = config_from_args(parse_create_args(["-n", "-f", "xmexample1"]))
    assert filename == "./xmexample1"  # `Using config file "./xmexample1".`
    assert sxp.pretty(cfg.to_sxp()) == SPEC_XMEXAMPLE1


def test_xmexample1_absolute_path(tmp_path: Path) -> None:
    fn = write(tmp_path / "xmexample1", XMEXAMPLE1)
    filename, cfg = config_from_args(parse_create_args([fn, "-n"]))
    assert filename == fn
    assert sxp.pretty(cfg.to_sxp()) == SPEC_XMEXAMPLE1


def _network_example(tmp_path: Path) -> list[str]:
    fn = write(tmp_path / "xmexample1", XMEXAMPLE1)
    _, cfg = config_from_args(parse_create_args(["-n", "-f", fn] + NETWORK_ARGS))
    return sxp.pretty(cfg.to_sxp()).split("\n")


def test_network_example_matches_spec(tmp_path: Path) -> None:
    lines = _network_example(tmp_path)
    assert "    (on_crash preserve)" in lines
    i = lines.index("    (cpu_cap 50)")
    assert lines[i + 1] == "    (cpu_weight 512)"
    i = lines.index("    (image")
    assert lines[i:i + 7] == [
        "    (image",
        "        (linux",
        "            (kernel /boot/vmlinuz-2.6.10-xenU)",
        "            (ip 10.0.0.5:10.0.0.2:10.0.0.1:255.255.255.0:vm1:eth0:off)",
        "            (root /dev/nfs)",
        "            (videoram 4)",
        "            (args 'nfsroot=10.0.0.2:/export/vm1 4')",
    ]
    # a command-line vif replaces the file's vif = ['']
    assert [ln for ln in lines if ln.startswith("    (device (vif")] == [
        "    (device (vif (bridge xenbr0) (mac 00:16:3e:00:00:01) (rate 10Mb/s)))"]
    # the vtpm between the vif and the vfb (with its vkbd), as spec §2.5 prints it
    devices = [ln.split()[1] for ln in lines if ln.startswith("    (device (")]
    assert devices[-4:] == ["(vif", "(vtpm", "(vkbd))", "(vfb"]
    assert "    (device (vtpm (pref_instance 1) (backend 0)))" in lines


def test_network_example_cpus_line(tmp_path: Path) -> None:
    # Regression guard: src/dom0/store/sxp.py atom_to_string does not quote ',' and '^';
    # spec §2.5 shows `(cpus '0-3,^1')`, dom0 prints `(cpus 0-3,^1)`.
    lines = _network_example(tmp_path)
    i = lines.index("    (cpu_cap 50)")
    assert lines[i - 1] == "    (cpus '0-3,^1')"


# ---- the repository's examples/xmexample2 -------------------------------------------


def _xmexample2(*args: str):  # type: ignore[no-untyped-def]
    return config_from_args(parse_create_args([str(EXAMPLES / "xmexample2"), "-n", *args]))


def test_xmexample2_without_vmid() -> None:
    with pytest.raises(ConfigFileError) as info:
        _xmexample2()
    assert str(info.value).startswith("Error: vmid - ")
    assert "NoneType" in str(info.value)


def test_xmexample2_vmid_zero() -> None:
    with pytest.raises(ConfigFileError) as info:
        _xmexample2("vmid=0")
    assert str(info.value) == "Error: vmid - "


def test_xmexample2_vmid_one() -> None:
    _, cfg = _xmexample2("vmid=1")
    assert cfg.name == "VM1"
    assert cfg.memory == 64
    assert cfg.vcpus == 1
    assert cfg.extra == "quiet cryptomgr.notests VMID=1"
    assert cfg.ip == "10.0.1.2:127.0.255.255:10.0.1.1:255.255.255.0:vm1:eth0:off"


def test_xmexample2_command_line_beats_derived_value() -> None:
    _, cfg = _xmexample2("vmid=2", "name=other", "memory=48")
    assert cfg.name == "other"
    assert cfg.memory == 48
    assert cfg.vcpus == 2


def test_module_exposes_every_spec_variable() -> None:
    # spec §2.3: 94 variables in 3.4, Xen 4.0's maxvcpus (issue 10 item 3), Xen 4's bios
    assert len(configfile.VARIABLES) == 94 + 2 and "maxvcpus" in configfile.VARIABLES


# ---- found by the property tests (issue 9 item 12) ---------------------------------


def test_found_restart_that_is_a_list_is_an_option_error() -> None:
    """Before: TypeError (unhashable list)."""
    with pytest.raises(OptionError, match=r"^Invalid value for restart: \[''\]$"):
        build_config(values(restart=[""]))


def test_found_list_variable_set_to_one_value_is_a_list_of_it() -> None:
    """Before: ``disk = 1`` was a TypeError (int is not iterable), and a string was
    read character by character."""
    cfg = build_config(values(disk="file:/x,xvda,w", vif="bridge=b"))
    assert cfg.disks == [DiskSpec("file:/x", "xvda", "w")]
    assert cfg.vifs == [VifSpec({"bridge": "b"})]
    with pytest.raises(OptionError, match="^Invalid disk specifier: 1$"):
        build_config(values(disk=1))


def test_found_infinite_number_is_an_invalid_value() -> None:
    """Before: OverflowError (cannot convert float infinity to integer)."""
    with pytest.raises(OptionError, match="^Invalid value: inf$"):
        build_config(values(cpu_cap=float("inf")))


def test_found_huge_cpu_range_is_refused_not_built() -> None:
    """Before: ``cpus = '0-1000000000000'`` built the set of every number in it
    (hours, then out of memory)."""
    from dom0.errors import ConfigError

    cfg = build_config(values(name="x", kernel="/k", cpus="0-1000000000000"))
    with pytest.raises(ConfigError, match="^Invalid CPU list: 0-1000000000000$"):
        cfg.validate()
    cfg = build_config(values(name="x", kernel="/k", cpus="0-8191,^5"))
    cfg.validate()


def test_found_variable_holding_an_object_is_a_config_file_error(tmp_path: Path) -> None:
    """Before: ``pci = [len]`` reached the client's JSON encoder: ``Unexpected error:
    TypeError: Object of type builtin_function_or_method is not JSON serializable``."""
    fn = write(tmp_path / "c", "kernel = '/k'\npci = [len]\n")
    with pytest.raises(ConfigFileError, match="^Error: pci holds a builtin_function_or_method; "):
        resolve_variables(parse_create_args([fn]))
    fn = write(tmp_path / "d", "kernel = '/k'\npci = [('a', 1), ['b', [2.5, None]]]\n")
    assert resolve_variables(parse_create_args([fn]))[1]["pci"] == [["a", 1], ["b", [2.5, None]]]


def test_non_utf8_sxp_config_names_the_byte(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``xm create -F``: before, ``Invalid argument.``"""
    from dom0.cli.main import main

    path = tmp_path / "c.sxp"
    path.write_bytes(b"(vm (name x)\n (kernel '/k\xff'))\n")
    assert main(["create", "-n", "-F", str(path)]) == 1
    assert capsys.readouterr().err == (f"Error: config file {path} is not valid UTF-8 "
                                       "(byte 0xff at line 2, offset 25)\n")


def test_found_huge_nics_is_refused_not_built() -> None:
    """Found fuzzing: ``nics = 10**9`` built a list of a billion empty vif entries
    (MemoryError, or minutes of swapping)."""
    with pytest.raises(OptionError, match=r"^Invalid value for nics: 1000000000 \(at most 32\)$"):
        build_config(values(nics=10**9))
    assert len(build_config(values(nics=32)).vifs) == 32
