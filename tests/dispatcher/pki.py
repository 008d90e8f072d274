"""A throw-away certificate authority for the HTTPS tests, made with the `openssl` CLI.

Keys are written into a 0700 directory as 0600 files and never leave it; nothing secret goes on a
command line (openssl reads and writes the keys as files, unencrypted: they live for one test).
"""

from __future__ import annotations

import os
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    def server_context(self, name: str) -> ssl.SSLContext:
        """A server context presenting the certificate made by `issue(name)` or `self_signed(name)`."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.root / f"{name}.pem", self.root / f"{name}.key")
        return ctx

    def issue(self, name: str, dns: str) -> None:
        """`name`.pem/.key: a server certificate for host `dns`, signed by this CA."""
        (self.root / f"{name}.ext").write_text(
            f"subjectAltName=DNS:{dns}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        _openssl(*_new_key(name), "-out", f"{name}.csr", "-subj", f"/CN={dns}", cwd=self.root)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=self.root,
        )  # fmt: skip
        _restrict(self.root)

    def self_signed(self, name: str, dns: str) -> None:
        """`name`.pem/.key: a certificate for `dns` that signs itself (no CA vouches for it)."""
        _openssl(
            *_new_key(name), "-x509", "-days", "2", "-subj", f"/CN={dns}",
            "-addext", f"subjectAltName=DNS:{dns}", "-out", f"{name}.pem", cwd=self.root,
        )  # fmt: skip
        _restrict(self.root)


def _new_key(name: str) -> tuple[str, ...]:
    return ("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key")


def _restrict(root: Path) -> None:
    for f in root.iterdir():
        f.chmod(0o600)


def make_pki(directory: Path) -> Pki:
    """A CA (ca.pem, ca.key) in a new 0700 `directory`."""
    old = os.umask(0o077)
    try:
        directory.mkdir(mode=0o700)
        _openssl(
            *_new_key("ca"), "-x509", "-days", "2", "-subj", "/CN=Waybill test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", "ca.pem", cwd=directory,
        )  # fmt: skip
    finally:
        os.umask(old)
    _restrict(directory)
    return Pki(directory)
