"""dom0.cli.format: the exact text of xm list / list -l / uptime / vcpu-list /
info (spec §1.3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from dom0.cli import format as fmt
from dom0.model import sxp
from dom0.model.config import DiskSpec, DomainConfig, VifSpec

SPEC_LIST = """\
Name                                        ID   Mem VCPUs      State   Time(s)
Domain-0                                     0  1024     2     r-----   1234.5
guest1                                       3   256     1     -b----      7.6
managed-off                                      128     1                 0.0"""


def dom(name: str, domid: int | None, memory: int, vcpus: int, state: str,
        cpu_time: float, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": name, "uuid": "00000000-0000-0000-0000-%012d" % (domid or 99),
        "domid": domid, "memory": memory, "maxmem": memory, "vcpus": vcpus,
        "online_vcpus": vcpus if domid is not None else 0, "state": state,
        "cpu_time": cpu_time, "status": 2 if domid is not None else 0, "config": None,
    }
    d.update(extra)
    return d


SPEC_DOMAINS = [
    dom("Domain-0", 0, 1024, 2, "r-----", 1234.5),
    dom("guest1", 3, 256, 1, "-b----", 7.6),
    dom("managed-off", None, 128, 1, "", 0.0),
]


# ---- xm list ---------------------------------------------------------------------


def test_list_header_widths() -> None:
    assert fmt.LIST_HEADER == "%-40s %5s %5s %5s %10s %9s" % (
        "Name", "ID", "Mem", "VCPUs", "State", "Time(s)")
    assert fmt.LIST_HEADER == SPEC_LIST.split("\n")[0]


def test_list_rows_match_spec() -> None:
    assert fmt.list_rows(SPEC_DOMAINS) == SPEC_LIST


def test_list_rows_empty() -> None:
    assert fmt.list_rows([]) == fmt.LIST_HEADER


def test_list_rows_vcpus_fall_back_to_configured() -> None:
    d = dom("halted", None, 64, 4, "", 0.0)
    assert d["online_vcpus"] == 0
    row = fmt.list_rows([d]).split("\n")[1]
    assert row == "%-40s %5s %5d %5d %10s %8.1f" % ("halted", "", 64, 4, "", 0.0)


def test_list_rows_missing_state_and_cpu_time() -> None:
    d = {"name": "x", "domid": 7, "memory": 32, "vcpus": 1}
    assert fmt.list_rows([d]).split("\n")[1] == \
        "x                                            7    32     1                 0.0"


def test_list_rows_domid_zero_is_shown() -> None:
    row = fmt.list_rows([SPEC_DOMAINS[0]]).split("\n")[1]
    assert row[41:46] == "    0"


# ---- xm list -l ------------------------------------------------------------------------


def guest_with_config() -> dict[str, Any]:
    cfg = DomainConfig(name="guest1", kernel="/boot/vmlinuz", memory=256, vcpus=1,
                       root="/dev/xvda1 ro", extra="quiet", cpu_weight=512,
                       disks=[DiskSpec("phy:/dev/vg/g1", "xvda", "w")],
                       vifs=[VifSpec({"bridge": "xenbr0"})])
    return dom("guest1", 3, 256, 1, "-b----", 7.6, start_time=1000.0,
               config=cfg.to_dict(), console="/run/xend/dom/i/console.sock",
               console_log="/var/log/xen/console/i.log")


def test_list_long_name_and_domid_each_on_own_line() -> None:
    text = fmt.list_long([SPEC_DOMAINS[0], guest_with_config()])
    lines = text.split("\n")
    # what the xendomains script greps for
    assert [ln for ln in lines if ln.startswith("(domain")] == ["(domain", "(domain"]
    assert "    (domid 0)" in lines and "    (domid 3)" in lines
    assert "    (name Domain-0)" in lines and "    (name guest1)" in lines
    assert lines[-1] == ")"


def test_list_long_inactive_domain_has_no_domid_or_state() -> None:
    text = fmt.list_long([SPEC_DOMAINS[2]])
    assert "(domid" not in text
    assert "(state" not in text
    assert "    (name managed-off)" in text.split("\n")


def test_list_long_is_parseable_and_complete() -> None:
    forms = sxp.parse(fmt.list_long([guest_with_config()]))
    assert len(forms) == 1
    form = forms[0]
    assert form[0] == "domain"
    assert sxp.child_value(form, "domid") == "3"
    assert sxp.child_value(form, "state") == "-b----"
    assert sxp.child_value(form, "on_poweroff") == "destroy"
    assert sxp.child_value(form, "on_crash") == "restart"
    assert sxp.child_value(form, "cpu_weight") == "512"
    assert sxp.child_value(form, "start_time") == "1000.00"
    assert sxp.child_value(form, "cpu_time") == "7.600000"
    image = sxp.child_value(form, "image")
    assert image == ["linux", ["kernel", "/boot/vmlinuz"], ["root", "/dev/xvda1 ro"],
                     ["args", "quiet"]]
    devices = [d[1] for d in sxp.children(form, "device")]
    assert devices == [
        ["vbd", ["uname", "phy:/dev/vg/g1"], ["dev", "xvda"], ["mode", "w"]],
        ["vif", ["bridge", "xenbr0"]],
        ["console", ["protocol", "vt100"], ["location", "/run/xend/dom/i/console.sock"],
         ["log", "/var/log/xen/console/i.log"]],
    ]


def test_xm_list_fast_path_does_not_load_the_config_table() -> None:
    # xm list imports cli.format; only list -l needs DomainConfig and its field table
    import subprocess
    import sys

    code = ("import sys, dom0.cli.format as f; f.list_rows([]); "
            "print(sorted(m for m in sys.modules if m.startswith(('dom0.model', 'typing'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['dom0.model', 'dom0.model.cpus']"


def test_domain_sxp_key_order() -> None:
    form = fmt.domain_sxp(guest_with_config())
    keys = [c[0] for c in form[1:]]
    assert keys[:4] == ["domid", "uuid", "vcpus", "name"]
    assert keys.index("maxmem") < keys.index("memory") < keys.index("image") \
        < keys.index("status") < keys.index("state") < keys.index("device")


# ---- xm uptime -------------------------------------------------------------------------


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


NOW = 10 * 3600 + 11 * 60 + 12  # 10:11:12 UTC


def test_uptime_long_matches_spec(utc: None) -> None:
    doms = [dom("Domain-0", 0, 1, 1, "r-----", 0, uptime=86400 + 2 * 3600 + 5 * 60 + 9),
            dom("guest1", 3, 1, 1, "r-----", 0, uptime=309.7)]
    assert fmt.uptime(doms, short=False, now=NOW) == (
        "Name                                ID Uptime \n"
        "Domain-0                             0 1 day,  2:05:09\n"
        "guest1                               3  0:05:09")


def test_uptime_short_matches_spec(utc: None) -> None:
    doms = [dom("guest1", 3, 1, 1, "r-----", 0, uptime=309)]
    assert fmt.uptime(doms, short=True, now=NOW) == " 10:11:12 up  0:05, guest1 (3)"


def test_uptime_plural_days(utc: None) -> None:
    doms = [dom("g", 12, 1, 1, "r-----", 0, uptime=2 * 86400 + 13 * 3600 + 7)]
    assert fmt.uptime(doms, short=False, now=NOW).split("\n")[1] == \
        "g                                   12 2 days, 13:00:07"
    assert fmt.uptime(doms, short=True, now=NOW) == " 10:11:12 up 2 days, 13:00, g (12)"


def test_uptime_one_day_short(utc: None) -> None:
    doms = [dom("g", 1, 1, 1, "r-----", 0, uptime=86400 + 60)]
    assert fmt.uptime(doms, short=True, now=NOW) == " 10:11:12 up 1 day,  0:01, g (1)"


def test_uptime_skips_inactive_domains(utc: None) -> None:
    assert fmt.uptime([SPEC_DOMAINS[2]], short=False, now=NOW) == \
        "Name                                ID Uptime "
    assert fmt.uptime([SPEC_DOMAINS[2]], short=True, now=NOW) == ""


# ---- xm vcpu-list -----------------------------------------------------------------------


def test_vcpu_header_matches_spec() -> None:
    assert fmt.VCPU_HEADER == \
        "Name                                ID  VCPU   CPU State   Time(s) CPU Affinity"


def test_vcpu_list_running_matches_spec() -> None:
    entries = [{"name": "Domain-0", "domid": 0, "vcpus": [
        {"number": 0, "cpu": 0, "state": "r--", "cpu_time": 100.2, "affinity": [0, 1, 2, 3]},
        {"number": 1, "cpu": 2, "state": "-b-", "cpu_time": 3.04, "affinity": [0, 1, 3]},
    ]}]
    assert fmt.vcpu_list(entries, nr_cpus=4).split("\n") == [
        fmt.VCPU_HEADER,
        "Domain-0                             0     0     0   r--     100.2 any cpu",
        "Domain-0                             0     1     2   -b-       3.0 0-1,3",
    ]


def test_vcpu_list_non_running_domain_blank_cpu_and_state() -> None:
    entries = [{"name": "halted", "domid": None, "vcpus": [
        {"number": 0, "cpu": -1, "state": "", "cpu_time": 0.0, "affinity": []},
        {"number": 1, "cpu": -1, "state": "--p", "cpu_time": 0.0, "affinity": [1]},
    ]}]
    assert fmt.vcpu_list(entries, nr_cpus=2).split("\n")[1:] == [
        "halted                                     0                   0.0 no cpus",
        "halted                                     1                   0.0 1",
    ]


# ---- xm info -----------------------------------------------------------------------------


def test_info_rows() -> None:
    rows = [["host", "myhost"], ["nr_cpus", 4], ["virt_caps", None], ["xen_extra", ""],
            ["total_memory", 2048]]
    assert fmt.info(rows).split("\n") == [
        "host                   : myhost",
        "nr_cpus                : 4",
        "virt_caps              : (none)",
        "xen_extra              : (none)",
        "total_memory           : 2048",
    ]


def test_info_config_width() -> None:
    assert fmt.info([["xend-port", 8000]], width=38) == "%-38s: 8000" % "xend-port"
    assert fmt.info([]) == ""
