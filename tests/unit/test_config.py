"""dom0.model.config: validation texts (spec §2.4, §9), the kernel command
line, and the JSON/SXP edges of DomainConfig."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dom0.errors import ConfigError
from dom0.model import sxp
from dom0.model.config import (
    DEFAULT_ACTIONS,
    DiskSpec,
    DomainConfig,
    VifSpec,
    format_cpu_list,
    parse_cpu_list,
)


def valid(**changes: object) -> DomainConfig:
    cfg = DomainConfig(name="vm1", kernel="/boot/vmlinuz", memory=64, vcpus=2)
    return dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]


def full() -> DomainConfig:
    return DomainConfig(
        name="vm1", uuid="12345678-1234-5678-1234-567812345678", memory=64, maxmem=128,
        vcpus=2, vcpu_avail=3, cpus=["0-1", "2"], cpu_weight=512, cpu_cap=50,
        on_poweroff="destroy", on_reboot="restart", on_crash="preserve",
        on_xend_start="start", on_xend_stop="shutdown", kernel="/k", ramdisk="/r",
        root="/dev/sda1 ro", extra="quiet x=1", ip="1.2.3.4:5.6.7.8:::h:eth0:off",
        features="f", bootloader="/bin/pygrub",
        disks=[DiskSpec("phy:a", "xvda", "w", "0"), DiskSpec("file:/b", "xvdb", "r")],
        vifs=[VifSpec({"mac": "00:16:3e:00:00:01", "bridge": "br0"}), VifSpec()],
        image_extra={"videoram": "4", "serial": "pty"},
    )


def error_of(cfg: DomainConfig) -> str:
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    return str(info.value)


# ---- validate ----------------------------------------------------------------------


def test_valid_config_passes() -> None:
    valid().validate()
    full().validate()


def test_missing_name() -> None:
    assert error_of(valid(name="")) == "Missing VM Name"


@pytest.mark.parametrize("name", ["bad name", "a;b", "x*", "é", "a\nb"])
def test_invalid_name(name: str) -> None:
    assert error_of(valid(name=name)) == "Invalid VM Name"


@pytest.mark.parametrize("name", ["a", "A-b_c.d:e/f+g", "VM1", "Domain-1", "1a", "0x1"])
def test_valid_names(name: str) -> None:
    valid(name=name).validate()


def test_domain0_is_the_hosts_name() -> None:
    assert error_of(valid(name="Domain-0")) == "Domain 'Domain-0' already exists with ID '0'"


@pytest.mark.parametrize("name", ["0", "12", "007"])
def test_a_name_of_digits_only_is_refused(name: str) -> None:
    assert error_of(valid(name=name)).startswith("Invalid VM Name: a name of digits only")


@pytest.mark.parametrize("key, event", [
    ("on_poweroff", "shutdown"), ("on_reboot", "reboot"), ("on_crash", "crash"),
])
def test_invalid_event_handling_mode(key: str, event: str) -> None:
    assert error_of(valid(**{key: "never"})) == f"Invalid event handling mode: {event}"


@pytest.mark.parametrize("mode", ["destroy", "restart", "preserve", "rename-restart",
                                  "coredump-destroy", "coredump-restart"])
def test_every_restart_mode_is_valid(mode: str) -> None:
    valid(on_poweroff=mode, on_reboot=mode, on_crash=mode).validate()


def test_default_actions() -> None:
    cfg = valid()
    assert DEFAULT_ACTIONS == {"on_poweroff": "destroy", "on_reboot": "restart",
                               "on_crash": "restart"}
    assert [cfg.action(k) for k in ("on_poweroff", "on_reboot", "on_crash")] == \
        ["destroy", "restart", "restart"]
    assert valid(on_crash="preserve").action("on_crash") == "preserve"


def test_invalid_xend_start_stop() -> None:
    assert "on_xend_start" in error_of(valid(on_xend_start="always"))
    assert "on_xend_stop" in error_of(valid(on_xend_stop="reboot"))


@pytest.mark.parametrize("memory, maxmem", [(0, None), (-1, None), (64, 0)])
def test_memory_must_be_positive(memory: int, maxmem: int | None) -> None:
    assert error_of(valid(memory=memory, maxmem=maxmem)) == \
        "memory_dynamic_max must be greater than zero"


def test_memory_above_maxmem() -> None:
    assert error_of(valid(memory=128, maxmem=64)) == \
        "memory_dynamic_max must be less than or equal to memory_static_max"
    valid(memory=64, maxmem=64).validate()
    valid(memory=64, maxmem=128).validate()


@pytest.mark.parametrize("vcpus", [0, -2])
def test_zero_vcpus(vcpus: int) -> None:
    assert error_of(valid(vcpus=vcpus)) == "Zero or less VCPUs is invalid"


def test_cpus_list_length_must_match_vcpus() -> None:
    assert error_of(valid(vcpus=2, cpus=["1"])) == \
        "vcpus and the item number of cpus are not same"
    valid(vcpus=2, cpus=["1", "2-3"]).validate()


def test_cpus_syntax_is_checked() -> None:
    assert "Invalid CPU list" in error_of(valid(cpus="0-x"))
    assert "Invalid CPU list" in error_of(valid(vcpus=2, cpus=["1", "3-1"]))


@pytest.mark.parametrize("weight", [0, 65536, -5])
def test_cpu_weight_out_of_range(weight: int) -> None:
    assert error_of(valid(cpu_weight=weight)) == \
        "Cpu weight out of range, valid values are within range from 1 to 65535"


@pytest.mark.parametrize("weight", [1, 256, 65535])
def test_cpu_weight_in_range(weight: int) -> None:
    valid(cpu_weight=weight).validate()


@pytest.mark.parametrize("vcpus, cap", [(2, 201), (2, -1), (1, 101), (4, 401)])
def test_cpu_cap_out_of_range(vcpus: int, cap: int) -> None:
    assert error_of(valid(vcpus=vcpus, cpu_cap=cap)) == (
        f"Cpu cap out of range, valid range is from 0 to {100 * vcpus} "
        "for specified number of vcpus")


@pytest.mark.parametrize("vcpus, cap", [(2, 0), (2, 200), (1, 100)])
def test_cpu_cap_in_range(vcpus: int, cap: int) -> None:
    valid(vcpus=vcpus, cpu_cap=cap).validate()


@pytest.mark.parametrize("builder", ["vmx", "bogus"])
def test_unknown_image_type(builder: str) -> None:
    assert error_of(valid(builder=builder)) == f"unknown image type: {builder}"


def test_kernel_required() -> None:
    assert "kernel" in error_of(valid(kernel=""))


def test_invalid_uuid() -> None:
    assert error_of(valid(uuid="not-a-uuid")) == "Invalid UUID: not-a-uuid"


def test_config_error_is_a_vm_error_with_exit_code_1() -> None:
    from dom0.errors import VmError

    assert issubclass(ConfigError, VmError)
    assert ConfigError("x").exit_code == 1


# ---- derived values -------------------------------------------------------------


def test_max_memory() -> None:
    assert valid(memory=64).max_memory == 64
    assert valid(memory=64, maxmem=256).max_memory == 256


def test_vcpu_affinity() -> None:
    assert valid(cpus="0-3").vcpu_affinity(1) == "0-3"
    cfg = valid(cpus=["1", "2"])
    assert [cfg.vcpu_affinity(n) for n in range(3)] == ["1", "2", None]
    assert valid().vcpu_affinity(0) is None


def test_kernel_cmdline_order() -> None:
    cfg = valid(root="/dev/sda1 ro", ip="10.0.0.5:::::eth0:off", extra="quiet 4")
    assert cfg.kernel_cmdline() == "root=/dev/sda1 ro ip=10.0.0.5:::::eth0:off quiet 4"


def test_kernel_cmdline_parts_optional() -> None:
    assert valid().kernel_cmdline() == ""
    assert valid(extra="4").kernel_cmdline() == "4"
    assert valid(root="/dev/hda1").kernel_cmdline() == "root=/dev/hda1"
    assert valid(ip="dhcp").kernel_cmdline() == "ip=dhcp"


def test_kernel_cmdline_root_already_prefixed() -> None:
    assert valid(root="root=/dev/xvda").kernel_cmdline() == "root=/dev/xvda"


def test_kernel_cmdline_not_repeated_when_in_extra() -> None:
    cfg = valid(root="/dev/sda1", ip="1.2.3.4", extra="root=/dev/sdb ip=5.6.7.8 quiet")
    assert cfg.kernel_cmdline() == "root=/dev/sdb ip=5.6.7.8 quiet"
    cfg = valid(root="/dev/sda1", ip="1.2.3.4", extra="ip=off")
    assert cfg.kernel_cmdline() == "root=/dev/sda1 ip=off"


def test_kernel_cmdline_nfsroot_does_not_hide_root() -> None:
    # xend 3.4 tested re.search('root=', args), so nfsroot= in args kept root=/dev/nfs
    # out and NFS-root configs needed root= in extra; we compare whole words (README).
    cfg = valid(root="/dev/nfs", extra="nfsroot=10.0.0.2:/export/vm1 4")
    assert cfg.kernel_cmdline() == "root=/dev/nfs nfsroot=10.0.0.2:/export/vm1 4"
    cfg = valid(root="/dev/sda1", extra="root=/dev/vda 4")
    assert cfg.kernel_cmdline() == "root=/dev/vda 4"


# ---- JSON edge -----------------------------------------------------------------------


def test_to_dict_from_dict_round_trip() -> None:
    cfg = full()
    assert DomainConfig.from_dict(cfg.to_dict()) == cfg
    # and through real JSON, as it travels to xend and into the store
    assert DomainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_to_dict_is_plain_data() -> None:
    data = full().to_dict()
    assert data["disks"][0] == {"uname": "phy:a", "dev": "xvda", "mode": "w", "backend": "0"}
    assert data["vifs"][1] == {"options": {}, "devid": None}
    assert data["name"] == "vm1"


def test_from_dict_minimal_and_unknown_keys() -> None:
    assert DomainConfig.from_dict({}) == DomainConfig(name="")
    assert DomainConfig.from_dict({"name": "x", "memory": 32}).memory == 32
    with pytest.raises(ConfigError, match="Unknown configuration keys: bogus, zzz"):
        DomainConfig.from_dict({"name": "x", "zzz": 1, "bogus": 2})


# ---- SXP edge --------------------------------------------------------------------------


def test_to_sxp_minimal_order() -> None:
    cfg = DomainConfig(name="x", kernel="/k")
    assert cfg.to_sxp() == [
        "vm", ["name", "x"], ["memory", "128"], ["vcpus", "1"],
        ["on_xend_start", "ignore"], ["on_xend_stop", "ignore"],
        ["image", ["linux", ["kernel", "/k"]]], ["s3_integrity", "1"],
    ]


def test_to_sxp_tag_and_s3_integrity() -> None:
    cfg = DomainConfig(name="x", other={"s3_integrity": 0})
    form = cfg.to_sxp(tag="domain")
    assert form[0] == "domain"
    assert sxp.child_value(form, "s3_integrity") == "0"


def test_to_sxp_omits_unset_actions() -> None:
    form = DomainConfig(name="x", on_crash="preserve").to_sxp()
    assert sxp.child_value(form, "on_poweroff") is None
    assert sxp.child_value(form, "on_crash") == "preserve"


def test_from_sxp_of_to_sxp_round_trip() -> None:
    cfg = full()
    assert DomainConfig.from_sxp(cfg.to_sxp()) == cfg
    # also through the printed text (xm create -n output fed to xm create -F)
    assert DomainConfig.from_sxp(sxp.parse_one(sxp.pretty(cfg.to_sxp()))) == cfg


def test_from_sxp_string_cpus_and_domain_tag() -> None:
    cfg = DomainConfig.from_sxp(sxp.parse_one(
        "(domain (name d) (cpus '0-3,^1') (image (linux (kernel /k) (args 'a b'))))"))
    assert cfg.cpus == "0-3,^1"
    assert cfg.extra == "a b"
    assert cfg.kernel == "/k"


def test_from_sxp_devices_and_defaults() -> None:
    cfg = DomainConfig.from_sxp(sxp.parse_one(
        "(vm (name d) (device (vbd (uname phy:x) (dev xvda))) (device (tap (uname t:y)))"
        " (device (vif (bridge br0))) (device (console (location l))) (device))"))
    assert cfg.disks == [DiskSpec("phy:x", "xvda", "r", None), DiskSpec("t:y", "", "r", None)]
    assert cfg.vifs == [VifSpec({"bridge": "br0"})]
    assert cfg.memory == 128 and cfg.vcpus == 1


@pytest.mark.parametrize("form", [["image"], "vm", [], ["vmx", ["name", "x"]]])
def test_from_sxp_rejects_non_vm_forms(form: sxp.Sxp) -> None:
    with pytest.raises(ConfigError, match=r"SXP config must be a \(vm ...\) form"):
        DomainConfig.from_sxp(form)


def test_from_sxp_bad_integer() -> None:
    with pytest.raises(ConfigError, match="^Invalid value for memory: lots$"):
        DomainConfig.from_sxp(["vm", ["name", "x"], ["memory", "lots"]])


# ---- CPU lists ------------------------------------------------------------------------


@pytest.mark.parametrize("spec, cpus", [
    ("0-3,5,^1", [0, 2, 3, 5]),
    ("0-3,^1", [0, 2, 3]),
    ("3", [3]),
    (" 1 , 2 ", [1, 2]),
    ("2,2,1", [1, 2]),
    ("^1,0-2", [0, 2]),
    ("", []),
    ("0-3,^0-3", []),
])
def test_parse_cpu_list(spec: str, cpus: list[int]) -> None:
    assert parse_cpu_list(spec) == cpus


def test_parse_cpu_list_all() -> None:
    assert parse_cpu_list("all", 4) == [0, 1, 2, 3]
    assert parse_cpu_list("all") == list(range(64))


@pytest.mark.parametrize("spec", ["x", "3-1", "1-", "-1-2", "1-2-3", "^", "a-b"])
def test_parse_cpu_list_errors(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_cpu_list(spec)
    assert str(info.value) == f"Invalid CPU list: {spec}"


@pytest.mark.parametrize("cpus, nr, text", [
    ([0, 1, 2, 3], 4, "any cpu"),
    ([3, 2, 1, 0, 0], 4, "any cpu"),
    (list(range(8)), 4, "any cpu"),
    ([], 4, "no cpus"),
    ([0, 1, 3], 4, "0-1,3"),
    ([5], 8, "5"),
    ([0, 2, 4], 8, "0,2,4"),
    ([1, 2, 3, 6, 7], 8, "1-3,6-7"),
    ([3, 1, 2], 8, "1-3"),
])
def test_format_cpu_list(cpus: list[int], nr: int, text: str) -> None:
    assert format_cpu_list(cpus, nr) == text
