"""dom0.daemon.options: reading xend-config.sxp (spec §4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dom0.daemon import options
from dom0.daemon.options import FALSE, TRUE, OptionsError, XendOptions, load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "xend-config.sxp"
    path.write_text(text)
    return str(path)


def test_load_with_comments_and_values(tmp_path: Path) -> None:
    opts = load(config(tmp_path, """\
# a comment line
(logfile /tmp/xend.log)   # trailing comment
(xend-relocation-port 8012)
(xend-relocation-hosts-allow '^localhost$ ^localhost\\\\.localdomain$')
# (xend-port 1)
(dom0-min-mem 196)
(domain-minimum-restart-time 2.5)
(network-script 'network-bridge netdev=eth1')
"""))
    assert opts.logfile == "/tmp/xend.log"
    assert opts.xend_relocation_port == 8012
    assert opts.xend_relocation_hosts_allow == "^localhost$ ^localhost\\.localdomain$"
    assert opts.xend_port == 8000  # commented out
    assert opts.dom0_min_mem == 196
    assert opts.domain_minimum_restart_time == 2.5
    assert opts.network_script == "network-bridge netdev=eth1"
    assert opts.warnings == []


def test_defaults_are_the_spec_code_defaults() -> None:
    opts = XendOptions()
    assert opts.logfile == "/var/log/xen/xend.log"
    assert opts.loglevel == "DEBUG"
    assert opts.xend_unix_server is False
    assert opts.xend_unix_xmlrpc_server is True
    assert opts.xend_relocation_server is False
    assert (opts.xend_relocation_port, opts.xend_relocation_ssl_port) == (8002, 8003)
    assert opts.xend_port == 8000
    assert opts.xend_unix_path == "/var/lib/xend/xend-socket"
    assert opts.xend_domains_path == "/var/lib/xend/domains"
    assert opts.vif_script == "vif-bridge"
    assert opts.dom0_min_mem == 0 and opts.dom0_cpus == 0
    assert opts.console_limit == 1024
    assert opts.vnc_listen == "127.0.0.1"
    assert opts.qemu_accel == "auto"


@pytest.mark.parametrize("word", TRUE + ("YES", "True", "On"))
def test_true_booleans(tmp_path: Path, word: str) -> None:
    opts = load(config(tmp_path, f"(xend-relocation-server {word})\n(enable-dump {word})"))
    assert opts.xend_relocation_server is True
    assert opts.enable_dump is True


@pytest.mark.parametrize("word", FALSE + ("NO", "Off"))
def test_false_booleans(tmp_path: Path, word: str) -> None:
    opts = load(config(tmp_path, f"(xend-unix-xmlrpc-server {word})"))
    assert opts.xend_unix_xmlrpc_server is False


def test_boolean_word_lists_match_spec() -> None:
    assert set(TRUE) == {"yes", "y", "1", "on", "true", "t"}
    assert set(FALSE) == {"no", "n", "0", "off", "false", "f"}


@pytest.mark.parametrize("word", ["maybe", "2", "enabled", ""])
def test_bad_boolean(tmp_path: Path, word: str) -> None:
    path = config(tmp_path, f"(enable-dump '{word}')")
    with pytest.raises(OptionsError) as info:
        load(path)
    assert str(info.value) == f"invalid xend config enable-dump: expected bool: {word}"


def test_optional_bool(tmp_path: Path) -> None:
    assert load(config(tmp_path, "(enable-dom0-ballooning no)")).enable_dom0_ballooning is False


def test_bad_int(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="invalid xend config xend-port: expected int: http"):
        load(config(tmp_path, "(xend-port http)"))


def test_bad_float(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="domain-shutdown-timeout"):
        load(config(tmp_path, "(domain-shutdown-timeout soon)"))


def test_unknown_option_is_a_warning(tmp_path: Path) -> None:
    opts = load(config(tmp_path, "(xend-domain-lock yes)\n(xend-port 8100)"))
    assert opts.warnings == ["unknown xend config option ignored: xend-domain-lock"]
    assert opts.xend_port == 8100  # later options still read


def test_malformed_entry_is_a_warning(tmp_path: Path) -> None:
    opts = load(config(tmp_path, "stray\n(xend-port 8100)"))
    assert len(opts.warnings) == 1 and "stray" in opts.warnings[0]
    assert opts.xend_port == 8100


def test_list_value_kept_as_sxp_text(tmp_path: Path) -> None:
    opts = load(config(tmp_path, "(logfile (a b))"))
    assert opts.logfile == "(a b)"


def test_missing_file_gives_defaults_and_warning(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.sxp")
    opts = load(path)
    assert opts.warnings == [f"Config file does not exist: {path}"]
    assert opts.path == path
    defaults = XendOptions(path=path, warnings=opts.warnings)
    assert opts == defaults


def test_syntax_error_is_fatal(tmp_path: Path) -> None:
    path = config(tmp_path, "(logfile /x")
    with pytest.raises(OptionsError, match=path):
        load(path)


@pytest.mark.parametrize("accel", ["auto", "kvm", "tcg"])
def test_qemu_accel_valid(tmp_path: Path, accel: str) -> None:
    assert load(config(tmp_path, f"(qemu-accel {accel})")).qemu_accel == accel


@pytest.mark.parametrize("accel", ["hvf", "KVM", ""])
def test_qemu_accel_invalid(tmp_path: Path, accel: str) -> None:
    with pytest.raises(OptionsError) as info:
        load(config(tmp_path, f"(qemu-accel '{accel}')"))
    assert str(info.value) == f"invalid xend config qemu-accel: {accel}"


def test_config_path_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XEND_CONFIG", raising=False)
    assert options.config_path() == "/etc/xen/xend-config.sxp"
    path = config(tmp_path, "(xend-port 9000)")
    monkeypatch.setenv("XEND_CONFIG", path)
    assert options.config_path() == path
    assert load().xend_port == 9000


def test_ballooning() -> None:
    assert XendOptions().ballooning() is False
    assert XendOptions(dom0_min_mem=196).ballooning() is True
    assert XendOptions(dom0_min_mem=196, enable_dom0_ballooning=False).ballooning() is False
    assert XendOptions(dom0_min_mem=0, enable_dom0_ballooning=True).ballooning() is True


def test_items_lists_sxp_names() -> None:
    items = dict(XendOptions(xend_port=1234).items())
    assert items["xend-port"] == 1234
    assert "warnings" not in items and "path" not in items
    assert "qemu-accel" in items


def test_layout_from_options() -> None:
    layout = XendOptions(xend_state_path="/s", xend_run_path="/r", xend_log_path="/l").layout()
    assert layout.database == "/s/xend.db"
    assert layout.run_dir == "/r" and layout.log_dir == "/l"


def test_repository_example_loads_cleanly() -> None:
    opts = load(str(EXAMPLES / "xend-config.sxp"))
    assert opts.warnings == []
    assert opts.dom0_min_mem == 196
    assert opts.vnc_listen == "127.0.0.1"
    # make demo's xend serves the web console, to this machine only
    assert opts.xend_http_server and (opts.xend_address, opts.xend_port) == ("localhost", 8000)


# ---- one source, sliced per consumer -----------------------------------------------


def test_device_timeout_option(tmp_path: Path) -> None:
    assert XendOptions().device_timeout == 100.0
    opts = load(config(tmp_path, "(device-timeout 7.5)"))
    assert opts.device_timeout == 7.5
    assert dict(opts.items())["device-timeout"] == 7.5


def test_consumer_slices_come_from_the_one_options_object() -> None:
    opts = XendOptions(domain_minimum_restart_time=3, domain_shutdown_timeout=4,
                       xend_dump_path="/d", device_timeout=9, xend_scripts_path="/s",
                       vif_script="vif-x", xend_run_path="/r")
    settings = opts.domain_settings()
    assert (settings.minimum_restart_time, settings.shutdown_timeout,
            settings.device_timeout) == (3, 4, 9)
    network = opts.network_options()
    assert (network.scripts_dir, network.vif_script, network.run_dir) == ("/s", "vif-x", "/r")
    assert opts.layout().dump_dir == "/d"


def test_reload_takes_only_what_applies_without_restart() -> None:
    running = XendOptions(loglevel="DEBUG", xend_run_path="/r", device_timeout=1)
    fresh = XendOptions(loglevel="INFO", domain_shutdown_timeout=5, xend_run_path="/other",
                        device_timeout=2)
    running.take_reloaded(fresh)
    assert (running.loglevel, running.domain_shutdown_timeout) == ("INFO", 5)
    assert (running.xend_run_path, running.device_timeout) == ("/r", 1)
