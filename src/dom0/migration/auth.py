"""Who may talk to the relocation server, and whom the source talks to: the two
ways a relocation peer proves itself, checked on both sides.

- **Shared secret** (``xend-relocation-key-file``): an HMAC-SHA256 challenge-
  response, mutual.  The destination's hello carries a fresh nonce; the source
  answers with its own nonce and ``HMAC(key, SOURCE | dest nonce | source nonce)``;
  the destination checks it and answers ``HMAC(key, DESTINATION | source nonce |
  dest nonce)``, which the source checks.  The label binds each proof to its
  direction (a destination's proof sent back to it proves nothing) and each
  proof covers the other side's fresh nonce (an old proof cannot be replayed).
  Nothing the peer says is read as a request before its proof checks out.
- **Mutual TLS** (``xend-relocation-ca-file``, with the host's certificate and key
  in ``xend-relocation-server-ssl-cert-file`` / ``-key-file``): on the SSL
  relocation port both sides present a certificate and verify the other's
  against the CA.  The CA is the trust domain: host names are not checked.

Unauthenticated relocation (Xen's behaviour) must be chosen with
``(xend-relocation-auth none)``.  With neither a key nor a CA configured, xend
makes a key of its own (``own_key``): no other host holds it, so it authenticates
only this xend's migrations to itself (``xm migrate <dom> localhost``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import ssl
import stat
from dataclasses import dataclass

from dom0.migration.wire import PROTOCOL_VERSION, MigrationError, receive, send

HMAC_SCHEME = "hmac-sha256"
NONCE_BYTES = 32
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 4096
AUTH_TIMEOUT = 10.0  # s for a peer to prove itself: no one holds a connection unproven
SOURCE_LABEL = b"dom0-relocation-v1 source proves to destination"
DESTINATION_LABEL = b"dom0-relocation-v1 destination proves to source"


class AuthError(MigrationError):
    """A peer failed to prove itself, or our own credentials are unusable."""


@dataclass(frozen=True)
class Credentials:
    """What this host proves itself with, and what it demands of its peers."""

    #: the shared secret (the key file's bytes), or None
    key: bytes | None = None
    #: the CA that signs every relocation peer's certificate (mutual TLS), or None
    ca_file: str | None = None
    #: this host's certificate and private key, presented on both sides of TLS
    cert_file: str | None = None
    key_file: str | None = None
    #: (xend-relocation-auth none): peers that prove nothing are accepted
    allow_unauthenticated: bool = False
    #: where ``key`` came from when xend made it itself (only this host holds it)
    own_key_file: str | None = None

    def client_tls(self) -> ssl.SSLContext:
        """The source's TLS context: with a CA, mutual (the destination's certificate
        verified, ours presented); without one, encryption only (Xen's SSL
        relocation), which only ``allow_unauthenticated`` or a key makes usable."""
        if self.ca_file:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            context.check_hostname = False  # the CA is the trust domain (see module doc)
            if self.cert_file and self.key_file:
                context.load_cert_chain(self.cert_file, self.key_file)
            return context
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def server_tls(self) -> ssl.SSLContext:
        """The SSL relocation server's context: its certificate, and with a CA every
        client must present one the CA signed (else the TLS handshake fails)."""
        if not self.cert_file or not self.key_file:
            raise AuthError("ssl_key_file or ssl_cert_file for ssl relocation server is missing.")
        # a bare server context: only xend-relocation-ca-file vouches for a client,
        # never a CA the system happens to trust
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def listener_refusal(self, tls: bool) -> str | None:
        """Why a relocation listener must not start with these credentials (None:
        it may).  Without a way to authenticate its peers it would trust anyone."""
        if self.allow_unauthenticated or self.key is not None or (tls and self.ca_file):
            return None
        what = ("xend-relocation-key-file or xend-relocation-ca-file" if tls
                else "xend-relocation-key-file")
        return (f"relocation server on the {'SSL' if tls else 'plain'} port not started: no "
                f"peer authentication is configured (set {what}, or "
                "(xend-relocation-auth none) to accept unauthenticated peers)")


def load_key(path: str) -> bytes:
    """The shared relocation key: a regular file only root can read (0600 or
    stricter), of at least MIN_KEY_BYTES bytes (surrounding whitespace dropped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise AuthError(f"relocation key file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuthError(f"relocation key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise AuthError(f"relocation key file {path} is readable by others "
                            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        data = os.read(fd, MAX_KEY_BYTES + 1)
    finally:
        os.close(fd)
    key = data.strip()
    if len(data) > MAX_KEY_BYTES or len(key) < MIN_KEY_BYTES:
        raise AuthError(f"relocation key file {path} must hold {MIN_KEY_BYTES} to "
                        f"{MAX_KEY_BYTES} bytes (e.g. openssl rand -hex 32 > {path})")
    return key


OWN_KEY_NAME = "relocation.key"


def own_key(state_dir: str) -> tuple[bytes, str]:
    """xend's own relocation key (and its file) under its state directory: made
    once, random, 0600 from its first byte, and kept across restarts (a migration
    to localhost in flight while xend restarts still proves itself)."""
    path = os.path.join(state_dir, OWN_KEY_NAME)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return load_key(path), path  # made by an earlier start (checked like any key)
    except OSError as exc:
        raise AuthError(f"cannot create the relocation key {path}: {exc.strerror}") from None
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return load_key(path), path


def proof(key: bytes, label: bytes, challenge: str, response: str) -> str:
    """HMAC-SHA256 over the direction's label and both nonces (challenger's first)."""
    message = b"\0".join((label, challenge.encode(), response.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def _nonce(value: object) -> str:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES or \
            any(c not in "0123456789abcdef" for c in value):
        raise AuthError(f"authentication failed: the nonce must be {2 * NONCE_BYTES} "
                        "lowercase hex digits")
    return value


def _matches(value: object, expected: str) -> bool:
    return isinstance(value, str) and value.isascii() and \
        hmac.compare_digest(value.encode(), expected.encode())


# ---- the destination's side --------------------------------------------------------


def hello(creds: Credentials) -> tuple[dict[str, object], str | None]:
    """The destination's first message, and the nonce it challenges with (if any)."""
    message: dict[str, object] = {"status": "hello", "version": PROTOCOL_VERSION}
    if creds.key is None:
        return message, None
    nonce = new_nonce()
    message.update(auth=HMAC_SCHEME, nonce=nonce)
    return message, nonce


async def check_source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       key: bytes, nonce: str) -> None:
    """After the hello: the source's proof, checked before anything else it says is
    read; then ours.  A failure raises AuthError (the caller replies and closes)."""
    try:
        answer = await receive(reader, AUTH_TIMEOUT)
    except TimeoutError:
        raise AuthError("authentication failed: no proof of the relocation key in "
                        f"{AUTH_TIMEOUT:g} s") from None
    except MigrationError as exc:
        raise AuthError(f"authentication failed: {exc}") from None
    if answer.get("op") != "auth":
        raise AuthError("authentication failed: this host requires the shared relocation key "
                        "(xend-relocation-key-file) and the source sent no proof")
    theirs = _nonce(answer.get("nonce"))
    if not _matches(answer.get("proof"), proof(key, SOURCE_LABEL, nonce, theirs)):
        raise AuthError("authentication failed: wrong relocation key")
    await send(writer, {"status": "authenticated",
                        "proof": proof(key, DESTINATION_LABEL, theirs, nonce)})


# ---- the source's side ---------------------------------------------------------------



async def prove_to_destination(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               creds: Credentials, greeting: dict[str, object],
                               tls_verified: bool) -> None:
    """After the destination's hello: answer its challenge and check its proof, or
    refuse a destination that proves nothing (unless we accept that)."""
    scheme = greeting.get("auth")
    if scheme is None:
        if tls_verified or creds.allow_unauthenticated:
            return
        raise AuthError("the destination did not authenticate itself (no relocation key "
                        "challenge, no verified certificate); refusing to send the domain "
                        "(set (xend-relocation-auth none) to allow unauthenticated peers)")
    if scheme != HMAC_SCHEME:
        raise AuthError(f"the destination asks for an unknown authentication scheme: "
                        f"{str(scheme)[:40]}")
    if creds.key is None:
        raise AuthError("the destination requires the shared relocation key; this host has "
                        "none (xend-relocation-key-file)")

    theirs = _nonce(greeting.get("nonce"))
    ours = new_nonce()
    await send(writer, {"op": "auth", "nonce": ours,
                        "proof": proof(creds.key, SOURCE_LABEL, theirs, ours)})
    try:
        answer = await receive(reader, AUTH_TIMEOUT)  # an error reply says why we were refused
    except MigrationError as exc:
        if creds.own_key_file:  # our own key is known to no other host: say what to set
            raise AuthError(f"{exc} (this host has only its own key {creds.own_key_file}, "
                            "which authenticates migrations to itself; set "
                            "xend-relocation-key-file)") from None
        raise
    if answer.get("status") != "authenticated" or not _matches(
            answer.get("proof"), proof(creds.key, DESTINATION_LABEL, ours, theirs)):
        raise AuthError("the destination failed to prove it holds the relocation key; "
                        "refusing to send the domain")
