"""dom0.cli.format: xm block-list / network-list and their --long form (spec §1.3)."""

from __future__ import annotations

from typing import Any

from dom0.cli import format as fmt
from dom0.model import sxp

# spec §1.3, verbatim (each row ends in two spaces)
SPEC_BLOCK = (
    "Vdev  BE handle state evt-ch ring-ref BE-path\n"
    "51713  0    0     4      7      8     /local/domain/0/backend/vbd/3/51713  ")
SPEC_NETWORK = (
    "Idx BE     MAC Addr.     handle state evt-ch tx-/rx-ring-ref BE-path\n"
    "0   0  00:16:3e:12:34:56    0     4      8     522  /523     "
    "/local/domain/0/backend/vif/3/0  ")


def vbd_row(idx: int = 51713, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"idx": idx, "backend-id": 0, "handle": 0, "state": 4, "event-ch": 7,
                         "ring-ref": 8, "be-path": f"/local/domain/0/backend/vbd/3/{idx}"}
    d.update(over)
    return d


def vif_row(idx: int = 0, **over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"idx": idx, "backend-id": 0, "mac": "00:16:3e:12:34:56",
                         "handle": idx, "state": 4, "event-ch": 8, "tx-ring-ref": 522,
                         "rx-ring-ref": 523, "be-path": f"/local/domain/0/backend/vif/3/{idx}"}
    d.update(over)
    return d


def test_block_list_spec_sample() -> None:
    assert fmt.block_list([vbd_row()]) == SPEC_BLOCK


def test_block_list_extra_keys_are_ignored() -> None:
    row = vbd_row(uname="phy:sda7", dev="xvda1", mode="w", **{"virtual-device": "xvda1"})
    assert fmt.block_list([row]) == SPEC_BLOCK


def test_block_list_columns() -> None:
    rows = [vbd_row(768, state=1, **{"event-ch": -1, "ring-ref": -1}),
            vbd_row(268442112, **{"backend-id": 12, "handle": 1234, "ring-ref": 123456})]
    assert fmt.block_list(rows).split("\n") == [
        fmt.BLOCK_HEADER,
        "768    0    0     1      -1     -1    /local/domain/0/backend/vbd/3/768  ",
        "268442112  12   1234   4      7      123456 /local/domain/0/backend/vbd/3/268442112  ",
    ]


def test_block_list_short_be_path_is_padded_to_thirty() -> None:
    line = fmt.block_list([vbd_row(**{"be-path": "/x"})]).split("\n")[1]
    assert line.endswith(" /x" + " " * 28 + "  ")


# the format strings as spec §1.3 quotes them from xm 3.4
XEN_BLOCK = ("%(idx)-5d  %(backend-id)-3d  %(handle)-3d   %(state)-3d    %(event-ch)-3d    "
             "%(ring-ref)-5d %(be-path)-30s  ")
XEN_NETWORK = ("%(idx)-3d %(backend-id)-3d%(mac)-17s    %(handle)-3d   %(state)-3d    "
               "%(event-ch)-3d   %(tx-ring-ref)-5d/%(rx-ring-ref)-5d   %(be-path)-30s  ")


def test_rows_follow_xens_format_strings() -> None:
    cases = [(0, 1, 0, -1, -1), (51712, 4, 0, 9, 8), (2**28 + 5, 6, 123, 1000, 99999)]
    vbds = [vbd_row(i, state=s, **{"backend-id": b, "event-ch": e, "ring-ref": r})
            for i, s, b, e, r in cases]
    assert fmt.block_list(vbds).split("\n")[1:] == [XEN_BLOCK % d for d in vbds]
    vifs = [vif_row(i, mac=m, **{"tx-ring-ref": t, "rx-ring-ref": r})
            for i, m, t, r in [(0, "00:16:3e:7f:ff:ff", -1, -1), (9, "??", 768, 769),
                               (1000, "aa:bb:cc:dd:ee:ff", 123456, 7)]]
    assert fmt.network_list(vifs).split("\n")[1:] == [XEN_NETWORK % d for d in vifs]


def test_network_list_spec_sample() -> None:
    assert fmt.network_list([vif_row()]) == SPEC_NETWORK


def test_network_list_columns() -> None:
    rows = [vif_row(0, state=1, **{"event-ch": -1, "tx-ring-ref": -1, "rx-ring-ref": -1}),
            vif_row(12, mac="??", **{"backend-id": 3})]
    assert fmt.network_list(rows).split("\n") == [
        fmt.NETWORK_HEADER,
        "0   0  00:16:3e:12:34:56    0     1      -1    -1   /-1      "
        "/local/domain/0/backend/vif/3/0  ",
        "12  3  ??                   12    4      8     522  /523     "
        "/local/domain/0/backend/vif/3/12  ",
    ]


def test_network_list_extra_keys_are_ignored() -> None:
    row = vif_row(vifname="vif3.0", bridge="xenbr0", model="virtio-net-pci")
    assert fmt.network_list([row]) == SPEC_NETWORK


def test_headers_are_xms() -> None:
    assert fmt.BLOCK_HEADER == "Vdev  BE handle state evt-ch ring-ref BE-path"
    assert fmt.NETWORK_HEADER == \
        "Idx BE     MAC Addr.     handle state evt-ch tx-/rx-ring-ref BE-path"


# ---- --long -----------------------------------------------------------------------------


def test_device_long_shape() -> None:
    row = vbd_row(uname="phy:sda7", dev="xvda1", mode="w")
    text = fmt.device_long([row])
    lines = text.split("\n")
    assert lines[0] == "(51713"
    assert lines[1] == "    ("
    assert lines[2:-2] == [
        "        (backend-id 0)", "        (handle 0)", "        (state 4)",
        "        (event-ch 7)", "        (ring-ref 8)",
        "        (be-path /local/domain/0/backend/vbd/3/51713)",
        "        (uname phy:sda7)", "        (dev xvda1)", "        (mode w)"]
    assert lines[-2:] == ["    )", ")"]
    # idx is the head, not a pair; every value became a string
    assert sxp.parse(text) == [["51713", [[k, str(v)] for k, v in row.items() if k != "idx"]]]


def test_device_long_short_device_stays_on_one_line() -> None:
    assert fmt.device_long([{"idx": 0, "mac": "00:16:3e:00:00:01", "state": 4}]) == \
        "(0 ((mac 00:16:3e:00:00:01) (state 4)))"


def test_device_long_one_form_per_device() -> None:
    text = fmt.device_long([vif_row(0), vif_row(1, mac="00:16:3e:00:00:02")])
    forms = sxp.parse(text)
    assert [f[0] for f in forms] == ["0", "1"]
    assert dict((k, v) for k, v in forms[1][1])["mac"] == "00:16:3e:00:00:02"
    assert text.count("\n(") == 1  # the second form starts on a fresh line
    assert fmt.device_long([]) == ""
