"""migration/auth.py's TLS contexts: mutual verification against the configured CA
only, checked with real certificates (made with the openssl CLI) and an in-memory
TLS handshake."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from dom0.migration.auth import AuthError, Credentials

Pair = tuple[Path, Path]


def make_ca(d: Path, name: str) -> Pair:
    cert, key = d / f"{name}-ca.pem", d / f"{name}-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    f"/CN={name}", "-keyout", str(key), "-out", str(cert),
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign"], check=True, capture_output=True)
    return cert, key


def make_cert(d: Path, ca: Pair, name: str) -> Pair:
    cert, key, csr, ext = (d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr",
                           d / f"{name}.ext")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr)],
                   check=True, capture_output=True)
    ext.write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey",
                    str(ca[1]), "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out",
                    str(cert)], check=True, capture_output=True)
    return cert, key


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> None:
    """Both ends of a TLS handshake in memory; the first failure is raised."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    cli = client.wrap_bio(c_in, c_out, server_side=False)
    done = {"srv": False, "cli": False}
    for _ in range(20):
        for name, end in (("cli", cli), ("srv", srv)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server's verdict on the client's certificate may come after
            # the client thinks it is done; one round of data brings it
            cli.write(b"x")
            s_in.write(c_out.read())
            srv.read(1)
            return
    raise AssertionError("handshake did not finish")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    d = tmp_path_factory.mktemp("pki")
    site, rogue = make_ca(d, "site"), make_ca(d, "rogue")
    return {"site": site, "rogue": rogue, "a": make_cert(d, site, "a"),
            "b": make_cert(d, site, "b"), "intruder": make_cert(d, rogue, "intruder")}


def creds(pki: dict[str, Pair], who: str, ca: str | None = "site") -> Credentials:
    return Credentials(ca_file=str(pki[ca][0]) if ca else None, cert_file=str(pki[who][0]),
                       key_file=str(pki[who][1]))


def test_hosts_of_one_ca_verify_each_other(pki: dict[str, Pair]) -> None:
    handshake(creds(pki, "b").server_tls(), creds(pki, "a").client_tls())


def test_a_client_certificate_from_another_ca_is_refused(pki: dict[str, Pair]) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(creds(pki, "b").server_tls(), creds(pki, "intruder").client_tls())


def test_a_client_without_certificate_is_refused(pki: dict[str, Pair]) -> None:
    bare = Credentials(ca_file=str(pki["site"][0]))
    with pytest.raises(ssl.SSLError):
        handshake(creds(pki, "b").server_tls(), bare.client_tls())


def test_the_source_refuses_a_destination_from_another_ca(pki: dict[str, Pair]) -> None:
    with pytest.raises(ssl.SSLError):
        handshake(creds(pki, "intruder", ca="rogue").server_tls(), creds(pki, "a").client_tls())


def test_the_systems_public_cas_are_not_trusted_for_peers(
        pki: dict[str, Pair], monkeypatch: pytest.MonkeyPatch) -> None:
    """Only xend-relocation-ca-file vouches for a peer: a CA the system trusts (here
    the rogue one, made the system's CA file) does not."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["rogue"][0]))
    with pytest.raises(ssl.SSLError):
        handshake(creds(pki, "b").server_tls(), creds(pki, "intruder").client_tls())


def test_a_server_without_its_certificate_is_refused() -> None:
    with pytest.raises(AuthError, match="ssl_key_file or ssl_cert_file"):
        Credentials(ca_file="/x").server_tls()
