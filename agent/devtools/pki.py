"""Test certificates made with the ``openssl`` command: a CA, a broker, hubs, odd dates.

For tests and demonstrations only: every key is unencrypted and every CA lives in one
folder. ``TestPki`` runs the ``openssl`` CLI (OpenSSL 3.0, as in Debian 12), as an
operator would (see deploy/broker/README.md), so what the tests check is what real
certificates look like.

OpenSSL 3.0 has no ``x509 -not_before``: a certificate whose validity starts or ends at
a chosen moment (an expired one, one not yet valid) is signed with ``openssl ca``, the one
3.0 command that takes ``-startdate`` and ``-enddate``. Everything else is signed with
``openssl x509 -req``.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from agent.config import TlsConfig
from agent.devtools.broker import BrokerTls

EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
CLIENT_AUTH = "extendedKeyUsage=clientAuth"

# the smallest configuration `openssl ca` accepts: a database, serials, any subject
CA_CONF = """[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
"""


class PkiError(RuntimeError):
    """openssl is missing or refused a command; the message carries its output."""


def _stamp(moment: datetime) -> str:
    """``openssl ca``'s time format (GeneralizedTime, UTC)."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


class TestPki:
    """CAs and certificates in ``directory``; each file is named after what it is."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, directory: Path, days: int = 2) -> None:
        if shutil.which("openssl") is None:
            raise PkiError("openssl is not installed; it makes the test certificates")
        self.directory = directory
        self.days = days
        directory.mkdir(parents=True, exist_ok=True)

    def openssl(self, *args: str) -> None:
        """Run ``openssl`` in the folder; ``PkiError`` with its output when it fails."""
        done = subprocess.run(
            ["openssl", *args], cwd=self.directory, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise PkiError(f"openssl {' '.join(args)} failed:\n{done.stderr}")

    def ca(self, name: str = "ca") -> Path:
        """A self-signed CA certificate ``<name>.crt`` with its key ``<name>.key``."""
        self.openssl(
            "req", "-x509", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-days", str(self.days), "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return self.directory / f"{name}.crt"

    def issue(
        self,
        name: str,
        ca: str,
        cn: str,
        extensions: str = CLIENT_AUTH,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> TlsConfig:
        """A key and a certificate for ``cn`` signed by CA ``ca``: ``<name>.key/.crt``.

        ``not_before``/``not_after`` set the validity (``openssl ca``); by default it
        starts now and lasts the PKI's ``days``. The result names ``<ca>.crt`` as its CA.
        """
        (self.directory / f"{name}.ext").write_text(extensions + "\n", encoding="utf-8")
        self.openssl("req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                     "-subj", f"/CN={cn}")  # fmt: skip
        if not_before is None and not_after is None:
            self.openssl(
                "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", str(self.days), "-out", f"{name}.crt",
                "-extfile", f"{name}.ext",
            )  # fmt: skip
        else:
            self._ca_database()
            dates: list[str] = []
            if not_before is not None:
                dates += ["-startdate", _stamp(not_before)]
            if not_after is not None:
                dates += ["-enddate", _stamp(not_after)]
            else:
                dates += ["-days", str(self.days)]
            self.openssl(
                "ca", "-batch", "-config", "ca.cnf", "-cert", f"{ca}.crt", "-keyfile",
                f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.crt", *dates,
                "-extfile", f"{name}.ext", "-notext",
            )  # fmt: skip
        return self.tls(name, ca)

    def server(self, name: str = "broker", ca: str = "ca") -> BrokerTls:
        """A broker certificate for 127.0.0.1 and localhost, for a ``Mosquitto`` listener."""
        issued = self.issue(name, ca, "localhost", SERVER_NAMES)
        return BrokerTls(issued.ca, issued.cert, issued.key, require_certificate=True)

    def tls(self, name: str, ca: str) -> TlsConfig:
        """The files of certificate ``name`` as a hub's ``[uplink.tls]``, trusting ``ca``."""
        d = self.directory
        return TlsConfig(ca=d / f"{ca}.crt", cert=d / f"{name}.crt", key=d / f"{name}.key")

    def _ca_database(self) -> None:
        (self.directory / "ca.cnf").write_text(CA_CONF, encoding="utf-8")
        (self.directory / "index.txt").touch()
        serial = self.directory / "serial"
        if not serial.exists():
            serial.write_text("1000\n", encoding="utf-8")
