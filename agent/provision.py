"""``hub provision``: a hub's first boot from its boot partition, and pairing its sensors.

First boot (``--from FILE``, or ``--boot`` to look for ``leefsamen.toml`` in
``/boot/firmware`` and then ``/boot``): the installer's laptop wrote ``leefsamen.toml``
onto the FAT boot partition of the SD card. It holds the hub id, the central broker and
the hub's TLS certificate, key and CA, inline (format: docs/provision.md). ``provision``

1. validates everything before changing anything: the TOML syntax, the hub id, the
   broker, each PEM text, that the key belongs to the certificate, that the certificate's
   common name is the hub id (the central broker takes the CN as the hub's identity), that
   it chains to the CA, and its dates: once the clock is synchronised an expired or not
   yet valid certificate is refused; before that a Pi's clock may be years off, so the
   dates are reported as not judged and provisioning goes on. It also works out the new
   ``hub.toml`` and validates it as the agent would. Any problem: all are listed with
   their key, exit 2, nothing changed;
2. writes ``ca.pem`` and ``hub.pem`` (0644), ``hub.key`` (0600; owned by the service
   user when run as root and that user exists, else its owner is left alone and the
   report says why) and ``hub.toml``: a new one from the packaged example
   (``agent/hub.example.toml``, a copy of ``deploy/hub.example.toml``) without that
   example's radio sensors, or the existing one with only ``[hub] id``/``timezone`` and
   ``[uplink] host``/``port``/``prefix``/``[uplink.tls]`` changed, line by line, and
   everything else (the home map, the drivers, comments) kept; the previous file is kept
   as ``hub.toml.bak``. Every file is first written in full under a temporary name in its
   own directory and synced; only when all are written are they renamed into place. A
   full disk or a permission problem therefore leaves the old files as they were and the
   boot file untouched (exit 1);
3. erases the boot file: its bytes overwritten with zeros, synced, then removed. This is
   best effort: FAT and the SD card's own wear levelling may keep old copies. It leaves
   ``leefsamen-provisioned.txt`` beside it (when, which hub, no secret) so that a person
   looking at the card sees it was used. Exit 3 when the file could not be removed.

The same file again gives the same files (unchanged ones are reported as such and not
rewritten). Nothing of a key is ever printed or logged, nor any certificate's content:
only names, dates and fingerprints.

Pairing (``hub provision`` without ``--from`` or ``--boot``, or ``hub provision pair``):
``agent.pairing``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import grp
import json
import os
import pwd
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_OK
from agent.errors import ConfigError, Problem

if TYPE_CHECKING:
    from cryptography import x509

SERVICE_USER = "leefsamen-hub"
ETC_DIR = Path("/etc/leefsamen-hub")
BOOT_DIRS = (Path("/boot/firmware"), Path("/boot"))  # Bookworm, then older Raspberry Pi OS
BOOT_FILE = "leefsamen.toml"
MARKER_FILE = "leefsamen-provisioned.txt"
EXAMPLE = "hub.example.toml"  # package data of ``agent``
MAX_BOOT_FILE = 256 * 1024  # three PEM texts and a few keys; anything larger is not ours
DEFAULT_PORT = 8883

Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, flush=True)


# ---- small file helpers (also used by agent.pairing) ------------------------------------
def toml_string(value: str) -> str:
    """``value`` as a TOML basic string (JSON's escapes are TOML's; DEL must be escaped)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, quoted otherwise."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a written file belongs to; -1 leaves that id as the writing process makes it."""

    uid: int = -1
    gid: int = -1


class FileSet:
    """Files written in full under temporary names first, then renamed into place together.

    ``add`` writes and syncs ``.<name>.<pid>.tmp`` beside the final file, created with mode
    0600 and only then given its owner and mode, so a secret is never readable by others,
    not even for a moment. ``commit`` renames them all, in the order added, and syncs the
    directories; ``discard`` removes what was written. A failure in ``add`` (a full disk,
    no permission) leaves every final file as it was.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def __len__(self) -> int:
        return len(self._staged)

    def add(self, final: Path, data: bytes, mode: int, owner: Owner = Owner()) -> Path:
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)  # left by a run that was killed
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            self._staged.append((tmp, final))
            try:
                if owner != Owner():
                    os.fchown(fd, owner.uid, owner.gid)
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:  # name the file the failure was about
            raise OSError(err.errno, err.strerror, str(final)) from None
        return tmp

    def commit(self) -> list[Path]:
        """Rename everything into place; the final paths, in order."""
        done: list[Path] = []
        for tmp, final in self._staged:
            os.replace(tmp, final)
            done.append(final)
        for directory in {final.parent for _, final in self._staged}:
            fsync_dir(directory)
        self._staged.clear()
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self._staged.clear()


def replace_config(path: Path, text: str, backup: bool) -> None:
    """Replace ``hub.toml`` with ``text`` after ``load_config`` accepted the written file.

    The new file keeps the old one's mode and owner. With ``backup`` the old content is
    kept as ``<name>.bak`` first. Raises ``ConfigError`` (nothing changed) when the new
    text does not validate, ``OSError`` (nothing changed) when it cannot be written.
    """
    from agent.config import load_config

    info = path.stat()
    owner = Owner(info.st_uid, info.st_gid) if os.geteuid() == 0 else Owner()
    mode = info.st_mode & 0o7777
    files = FileSet()
    try:
        if backup:
            files.add(path.with_name(path.name + ".bak"), path.read_bytes(), mode, owner)
        staged = files.add(path, text.encode("utf-8"), mode, owner)
        try:
            load_config(staged)
        except ConfigError as err:
            raise ConfigError(str(path), err.problems) from None
        files.commit()
    finally:
        files.discard()


# ---- the boot file ---------------------------------------------------------------------
@dataclass(frozen=True)
class BootFile:
    """What a valid ``leefsamen.toml`` says, the PEM texts re-encoded from what was parsed."""

    hub_id: str
    timezone: str | None
    host: str
    port: int
    prefix: str | None
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    facts: list[str] = field(default_factory=list)  # what was checked, for the report


_TOP_KEYS = ("format", "hub_id", "timezone", "broker", "tls")
_BROKER_KEYS = ("host", "port", "prefix")
_TLS_KEYS = ("ca", "cert", "key")


def _table(
    raw: dict[str, Any], name: str, keys: Sequence[str], problems: list[Problem]
) -> dict[str, Any] | None:
    """The table ``name`` (its unknown keys named as problems); None when it is not one."""
    value = raw.get(name)
    if value is None:
        problems.append(Problem(name, f"missing: a [{name}] table is needed"))
        return None
    if not isinstance(value, dict):
        problems.append(Problem(name, f"must be a [{name}] table"))
        return None
    for key in value:
        if key not in keys:
            problems.append(Problem(f"{name}.{key}", "unknown key (check the spelling)"))
    return value


def _check_fields(raw: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """The plain fields, checked as the agent's configuration would check them."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from pydantic import TypeAdapter, ValidationError

    from agent.messages import HubId

    for key in raw:
        if key not in _TOP_KEYS:
            problems.append(Problem(key, "unknown key (check the spelling)"))
    out: dict[str, Any] = {}
    fmt = raw.get("format", 1)
    if fmt != 1 or isinstance(fmt, bool):
        problems.append(Problem("format", f"this hub reads format 1, not {fmt!r}"))
    hub_id = raw.get("hub_id")
    if hub_id is None:
        problems.append(Problem("hub_id", 'missing: the hub\'s id, such as "h-0412"'))
    else:
        try:
            out["hub_id"] = TypeAdapter(HubId).validate_python(hub_id, strict=True)
        except ValidationError:
            problems.append(
                Problem(
                    "hub_id",
                    f"{hub_id!r} is not a hub id: lower case letters, digits and '-', "
                    "starting with a letter or digit, at most 63",
                )
            )
    zone = raw.get("timezone")
    if zone is not None:
        try:
            if not isinstance(zone, str):
                raise ValueError
            ZoneInfo(zone)
            out["timezone"] = zone
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                Problem("timezone", f"unknown time zone {zone!r} (e.g. Europe/Amsterdam)")
            )
    broker = _table(raw, "broker", _BROKER_KEYS, problems)
    if broker is not None:
        _check_broker(broker, out, problems)
    tls = _table(raw, "tls", _TLS_KEYS, problems)
    if tls is not None:
        _check_pem_texts(tls, out, problems)
    return out


def _check_broker(broker: dict[str, Any], out: dict[str, Any], problems: list[Problem]) -> None:
    from pydantic import ValidationError

    from agent.config import MqttUplinkConfig

    host = broker.get("host")
    if isinstance(host, str) and re.fullmatch(r"[A-Za-z0-9.:_\-\[\]]{1,253}", host):
        out["host"] = host
    else:
        what = "missing" if host is None else f"{host!r} is not a host name or address"
        problems.append(
            Problem("broker.host", f"{what}: the central broker, e.g. mqtt.example.org")
        )
    port = broker.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(Problem("broker.port", f"{port!r} is not a port number (1 to 65535)"))
    else:
        out["port"] = port
    prefix = broker.get("prefix")
    if prefix is not None:
        try:
            if not isinstance(prefix, str):
                raise ValueError
            MqttUplinkConfig.model_validate({"prefix": prefix})  # the uplink's own rule
            out["prefix"] = prefix
        except (ValidationError, ValueError):
            problems.append(
                Problem(
                    "broker.prefix",
                    f"{prefix!r} is not a topic prefix: letters, digits, '_' and '-', "
                    "levels separated by '/'",
                )
            )


def _check_pem_texts(tls: dict[str, Any], out: dict[str, Any], problems: list[Problem]) -> None:
    for key in _TLS_KEYS:
        value = tls.get(key)
        if value is None:
            problems.append(Problem(f"tls.{key}", "missing: the PEM text, as a multi-line string"))
        elif not isinstance(value, str):
            problems.append(Problem(f"tls.{key}", "must be the PEM text, as a multi-line string"))
        elif "-----BEGIN " not in value or "-----END " not in value:
            problems.append(
                Problem(
                    f"tls.{key}",
                    "expected the PEM text itself, from its -----BEGIN line to its -----END "
                    "line, not a file name or a placeholder",
                )
            )
        else:
            out[key] = _pem_lines(value)


def _pem_lines(text: str) -> bytes:
    """PEM text with each line stripped (indentation, Windows line ends) and blank lines
    dropped: how a TOML multi-line string written by hand or by a laptop may hold it."""
    lines = [line.strip() for line in text.splitlines()]
    return ("\n".join(line for line in lines if line) + "\n").encode("ascii", "replace")


def _name(cert: x509.Certificate, of: str = "subject") -> str:
    from cryptography.x509.oid import NameOID

    name = cert.subject if of == "subject" else cert.issuer
    cn = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={cn[0].value!s}" if cn else name.rfc4514_string() or "(empty name)"


def _fingerprint(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex(":")[:23]


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], anchors: list[x509.Certificate]
) -> bool:
    """Whether ``leaf`` is signed by one of ``anchors``, directly or through intermediates.

    Only names and signatures: dates are judged separately (they may not be judgeable
    yet), so this holds whatever the clock says."""
    current = leaf
    for _ in range(8):
        if any(_issued_by(current, anchor) for anchor in anchors):
            return True
        parent = next(
            (c for c in intermediates if c is not current and _issued_by(current, c)), None
        )
        if parent is None:
            return False
        current = parent
    return False


def _day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _check_dates(
    where: str, cert: x509.Certificate, synced: bool, now: datetime, problems: list[Problem]
) -> str:
    """Refuse a certificate outside its dates when the clock can be trusted; say which."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    span = f"valid from {_day(start)} until {_day(end)}"
    if synced and now > end:
        problems.append(Problem(where, f"expired on {_day(end)} (now is {_day(now)})"))
    elif synced and now < start:
        problems.append(Problem(where, f"not valid before {_day(start)} (now is {_day(now)})"))
    return span


def _check_tls(
    pems: dict[str, bytes], hub_id: str | None, synced: bool, now: datetime, problems: list[Problem]
) -> tuple[bytes, bytes, bytes, list[str]] | None:
    """Parse and cross-check the CA, certificate and key; their re-encoded PEM and facts.

    No message names anything of the key but its type; certificates by name and dates."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    facts: list[str] = []
    cas: list[x509.Certificate] = []
    chain: list[x509.Certificate] = []
    key = None
    if "ca" in pems:
        try:
            cas = x509.load_pem_x509_certificates(pems["ca"])
        except ValueError:
            problems.append(Problem("tls.ca", "not a certificate in PEM form"))
    if "cert" in pems:
        try:
            chain = x509.load_pem_x509_certificates(pems["cert"])
        except ValueError:
            problems.append(Problem("tls.cert", "not a certificate in PEM form"))
    if "key" in pems:
        try:
            key = serialization.load_pem_private_key(pems["key"], password=None)
        except TypeError:
            problems.append(
                Problem(
                    "tls.key",
                    "the key is protected by a passphrase; the hub starts unattended and needs "
                    "it without one (openssl pkey -in key.pem -out plain.pem)",
                )
            )
        except UnsupportedAlgorithm:
            problems.append(Problem("tls.key", "a private key of a kind this hub cannot use"))
        except ValueError:
            problems.append(Problem("tls.key", "not a private key in PEM form"))
    leaf = chain[0] if chain else None
    if leaf is not None:
        cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common = str(cn[0].value) if cn else None
        if hub_id is not None and common != hub_id:
            problems.append(
                Problem(
                    "tls.cert",
                    f"its common name is {common!r}, not the hub id {hub_id!r}: the central "
                    "broker knows a hub by its certificate's CN",
                )
            )
        try:
            usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not {
            ExtendedKeyUsageOID.CLIENT_AUTH,
            ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        } & set(usage):
            problems.append(
                Problem(
                    "tls.cert", "its extended key usage does not allow a TLS client (clientAuth)"
                )
            )
        if key is not None:
            spki = serialization.PublicFormat.SubjectPublicKeyInfo
            der = serialization.Encoding.DER
            if leaf.public_key().public_bytes(der, spki) != key.public_key().public_bytes(
                der, spki
            ):
                problems.append(
                    Problem("tls.key", "does not belong to the certificate in tls.cert")
                )
        if cas and not _chains(leaf, chain[1:], cas):
            problems.append(
                Problem(
                    "tls.cert",
                    f"not issued by the CA in tls.ca ({_name(leaf, 'issuer')} signed it)",
                )
            )
        span = _check_dates("tls.cert", leaf, synced, now, problems)
        facts.append(
            f"certificate {_name(leaf)}, issued by {_name(leaf, 'issuer')}, {span}, "
            f"SHA-256 {_fingerprint(leaf)}"
        )
        for extra in chain[1:]:
            _check_dates("tls.cert", extra, synced, now, problems)
    for ca in cas:
        span = _check_dates("tls.ca", ca, synced, now, problems)
        facts.append(f"CA {_name(ca)}, {span}")
    if not synced and (cas or chain):
        facts.append(
            "the clock is not synchronised yet, so the certificates' dates cannot be judged: "
            "they are checked again by hub doctor once it is"
        )
    if not cas or not chain or key is None:
        return None
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        b"".join(c.public_bytes(pem) for c in cas),
        b"".join(c.public_bytes(pem) for c in chain),
        key_pem,
        facts,
    )


def read_boot_file(path: Path, synced: bool, now: datetime) -> BootFile:
    """Read and check ``leefsamen.toml``; ``ConfigError`` listing every problem by key."""
    source = str(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_BOOT_FILE else None
    except OSError as err:
        raise ConfigError(source, [Problem("", f"cannot read the file: {err.strerror}")]) from None
    if data is None:
        raise ConfigError(
            source, [Problem("", f"larger than {MAX_BOOT_FILE // 1024} KB: not a leefsamen.toml")]
        )
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # a Windows editor's byte order mark
    except UnicodeDecodeError:
        raise ConfigError(source, [Problem("", "the file is not UTF-8 text")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [Problem("", f"not valid TOML: {err}")]) from None
    problems: list[Problem] = []
    fields = _check_fields(raw, problems)
    pems = {k: fields[k] for k in _TLS_KEYS if k in fields}
    checked = _check_tls(pems, fields.get("hub_id"), synced, now, problems) if pems else None
    if problems or checked is None:  # no problem and nothing checked cannot be: tls is required
        raise ConfigError(source, problems)
    ca_pem, cert_pem, key_pem, facts = checked
    return BootFile(
        hub_id=fields["hub_id"],
        timezone=fields.get("timezone"),
        host=fields["host"],
        port=fields["port"],
        prefix=fields.get("prefix"),
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        facts=facts,
    )


# ---- editing hub.toml line by line ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Statement:
    """A table header or a key/value pair, over lines ``first``..``last`` (inclusive)."""

    first: int
    last: int
    table: tuple[str, ...]  # a header's own table; the table a key/value pair is in
    key: tuple[str, ...] | None  # None for a header
    array: bool = False  # an [[array of tables]] header
    comment_at: int | None = None  # where a one-line pair's comment starts


def _key_path(text: str) -> tuple[str, ...] | None:
    """A dotted key (``a."b.c".d``) as its parts, decoded by TOML itself."""
    try:
        node: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        ((name, node),) = node.items()
        parts.append(name)
    return tuple(parts) if node == 0 else None


class _Scan:
    """Where multi-line strings and brackets open and close, across lines."""

    def __init__(self) -> None:
        self.quote: str | None = None  # inside a multi-line string: its delimiter
        self.depth = 0  # open [ and { of a value

    @property
    def clear(self) -> bool:
        return self.quote is None and self.depth == 0

    def line(self, text: str, start: int = 0) -> int | None:
        """Scan ``text[start:]``; where a comment starts, if one does."""
        i, n = start, len(text)
        while i < n:
            if self.quote is not None:
                end = self._closing(text, i, self.quote)
                if end is None:
                    return None
                i, self.quote = end, None
                continue
            c = text[i]
            if c == "#":
                return i
            if text.startswith('"""', i) or text.startswith("'''", i):
                self.quote = text[i : i + 3]
                i += 3
            elif c in "\"'":
                end = self._closing(text, i + 1, c)
                i = n if end is None else end
            else:
                if c in "[{":
                    self.depth += 1
                elif c in "]}":
                    self.depth = max(0, self.depth - 1)
                i += 1
        return None

    @staticmethod
    def _closing(text: str, i: int, quote: str) -> int | None:
        """The index after ``quote`` closing a string that continues at ``i``."""
        escapes = quote[0] == '"'
        while i < len(text):
            if escapes and text[i] == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                end = i + len(quote)
                while len(quote) == 3 and end < len(text) and text[end] == quote[0]:
                    end += 1  # """a"""" : up to two quotes belong to the string
                return end
            i += 1
        return None


_HEADER = re.compile(r"^\s*(\[\[?)")


def _header_end(text: str, start: int) -> int | None:
    """The index of the ``]`` closing a header's key, quotes respected."""
    i = start
    while i < len(text):
        c = text[i]
        if c in "\"'":
            end = _Scan._closing(text, i + 1, c)
            if end is None:
                return None
            i = end
            continue
        if c == "]":
            return i
        i += 1
    return None


def statements(lines: list[str]) -> list[Statement]:
    """Every header and key/value pair of a TOML text, by line."""
    out: list[Statement] = []
    table: tuple[str, ...] = ()
    scan = _Scan()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        head = _HEADER.match(line)
        if head:
            opening = head.group(1)
            end = _header_end(line, head.end())
            path = _key_path(line[head.end() : end]) if end is not None else None
            if path is not None:
                table = path
                out.append(Statement(i, i, table, None, array=opening == "[["))
            i += 1
            continue
        equals = _equals(line)
        key = _key_path(line[:equals]) if equals is not None else None
        first = i
        comment = scan.line(line, equals + 1 if equals is not None else 0)
        while not scan.clear and i + 1 < len(lines):
            i += 1
            scan.line(lines[i])
        if key is not None:
            single = first == i
            out.append(Statement(first, i, table, key, comment_at=comment if single else None))
        i += 1
    return out


def _equals(line: str) -> int | None:
    """The ``=`` after a key, quotes in the key respected."""
    i = 0
    while i < len(line):
        c = line[i]
        if c in "\"'":
            end = _Scan._closing(line, i + 1, c)
            if end is None:
                return None
            i = end
            continue
        if c == "=":
            return i
        if c == "#":
            return None
        i += 1
    return None


class TomlEditor:
    """Changes to a TOML text that keep every other line as it was.

    Not a TOML writer: it finds headers and key/value pairs by line (multi-line strings
    and arrays respected) and rewrites or inserts single lines. Whoever uses it checks the
    result by parsing it (``apply_updates`` does).
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        if self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += "\n"

    def text(self) -> str:
        return "".join(self.lines)

    def _section(self, table: tuple[str, ...]) -> tuple[Statement | None, list[Statement]]:
        """The header of ``table`` (None for the root or an implicit table) and its pairs."""
        stmts = statements(self.lines)
        header = None
        if table:
            header = next(
                (s for s in stmts if s.key is None and s.table == table and not s.array), None
            )
            if header is None:
                return None, []
        pairs = []
        for stmt in stmts[stmts.index(header) + 1 if header else 0 :]:
            if stmt.key is None:
                break
            pairs.append(stmt)
        return header, pairs

    def has_table(self, table: tuple[str, ...]) -> bool:
        return self._section(table)[0] is not None

    def set(
        self, table: tuple[str, ...], key: str, value: str, after: tuple[str, ...] = ()
    ) -> None:
        """``key = value`` in ``[table]``: rewritten in place (its comment kept), or added
        at the end of the table; a missing table is added after the table ``after``."""
        header, pairs = self._section(table)
        if header is None and table:
            self._add_table(table, [f"{toml_key(key)} = {value}\n"], after)
            return
        found = next((p for p in pairs if p.key == (key,)), None)
        if found is None:
            at = pairs[-1].last + 1 if pairs else (header.last + 1 if header else 0)
            self.lines.insert(at, f"{toml_key(key)} = {value}\n")
            return
        old = self.lines[found.first]
        indent = old[: len(old) - len(old.lstrip())]
        new = f"{indent}{toml_key(key)} = {value}"
        if found.comment_at is not None:
            comment = old[found.comment_at :].rstrip("\n")
            column = found.comment_at if found.comment_at > len(new) + 1 else len(new) + 2
            new = new.ljust(column) + comment
        self.lines[found.first : found.last + 1] = [new + "\n"]

    def remove_pairs(self, table: tuple[str, ...], first_part: str) -> None:
        """Remove the pairs of ``[table]`` whose key starts with ``first_part``."""
        _, pairs = self._section(table)
        for pair in reversed(pairs):
            if pair.key is not None and pair.key[0] == first_part:
                del self.lines[pair.first : pair.last + 1]

    def remove_table(self, table: tuple[str, ...]) -> int | None:
        """Remove ``[table]`` with its pairs and the blank lines after them; where it was."""
        header, pairs = self._section(table)
        if header is None:
            return None
        end = pairs[-1].last + 1 if pairs else header.last + 1
        while end < len(self.lines) and not self.lines[end].strip():
            end += 1
        del self.lines[header.first : end]
        return header.first

    def _add_table(self, table: tuple[str, ...], body: list[str], after: tuple[str, ...]) -> None:
        anchor, pairs = self._section(after) if after else (None, [])
        if anchor is not None:
            at = pairs[-1].last + 1 if pairs else anchor.last + 1
        else:
            at = len(self.lines)
        name = ".".join(toml_key(part) for part in table)
        block = ["\n", f"[{name}]\n", *body]
        if at < len(self.lines) and self.lines[at].strip():
            block.append("\n")
        self.lines[at:at] = block


Updates = dict[tuple[str, ...], dict[str, Any]]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return toml_string(str(value))


def apply_updates(
    text: str, updates: Updates, drop_pairs: Iterable[tuple[tuple[str, ...], str]] = ()
) -> str:
    """``text`` with ``updates`` (table -> key -> value) set, and nothing else changed.

    ``drop_pairs`` removes pairs first (table, first part of the key): ``[uplink] tls = {...}``
    before an ``[uplink.tls]`` table is written. The result is parsed and compared with
    what it must hold: the old data with exactly these changes. ``ValueError`` when the
    text was too unusual to edit by lines (nothing is written then).
    """
    before = tomllib.loads(text)
    editor = TomlEditor(text)
    expected = copy.deepcopy(before)
    for table, first in drop_pairs:
        editor.remove_pairs(table, first)
        node = _node(expected, table)
        if isinstance(node, dict):
            node.pop(first, None)
    for table, values in updates.items():
        # a missing table goes after its parent ([uplink.tls] after [uplink]); a missing
        # top-level one after [hub], which opens every hub.toml
        parent = table[:-1] if len(table) > 1 else ("hub",) if table != ("hub",) else ()
        for key, value in values.items():
            editor.set(table, key, _toml_value(value), after=parent)
            node = expected
            for part in table:
                node = node.setdefault(part, {})
            node[key] = value
    result = editor.text()
    try:
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"the edited text is not TOML ({err})") from None
    if after != expected:
        raise ValueError("the edited text does not hold what it should")
    return result


def _node(data: dict[str, Any], table: tuple[str, ...]) -> Any:
    node: Any = data
    for part in table:
        node = node.get(part) if isinstance(node, dict) else None
    return node


# ---- the new hub.toml -------------------------------------------------------------------
def example_text() -> str:
    """The packaged example configuration (``deploy/hub.example.toml``, copied into
    ``agent/`` so that an installed wheel has it)."""
    from importlib.resources import files

    return (files("agent") / EXAMPLE).read_text(encoding="utf-8")


RADIO_NOTE = (
    "# This home's radio sensors are added by `hub provision pair` (docs/provision.md).\n\n"
)


def fresh_config_text() -> str:
    """The example without its made-up home's radio sensors (those with a ``device``):
    they would be reported as silent forever. Sensors wired to the hub (the help button
    on its pins) stay, as do the drivers and every setting."""
    text = example_text()
    sensors = tomllib.loads(text).get("home", {}).get("sensors", {})
    editor = TomlEditor(text)
    first: int | None = None
    for sid, spec in sensors.items():
        if isinstance(spec, dict) and "device" in spec:
            at = editor.remove_table(("home", "sensors", sid))
            if at is not None:
                first = at if first is None else min(first, at)
    if first is not None:
        editor.lines.insert(first, RADIO_NOTE)
    result = editor.text()
    expected = tomllib.loads(text)
    for sid, spec in sensors.items():
        if isinstance(spec, dict) and "device" in spec:
            del expected["home"]["sensors"][sid]
    if tomllib.loads(result) != expected:  # pragma: no cover - the packaged example is tested
        raise ValueError("the packaged example could not be trimmed")
    return result


@dataclass(frozen=True)
class ConfigPlan:
    text: str
    old: bytes | None  # the current file, None when there is none
    changed: list[str]  # dotted keys whose value changes


def plan_config(path: Path, boot: BootFile, etc: Path) -> ConfigPlan:
    """The new ``hub.toml``, validated as the agent would; ``ConfigError`` when the current
    file is broken or cannot be edited safely (nothing is written either way)."""
    from agent.config import validate_config

    source = str(path)
    old: bytes | None = None
    if path.exists():
        try:
            old = path.read_bytes()
            text = old.decode("utf-8")
        except OSError as err:
            raise ConfigError(
                source, [Problem("", f"cannot read the file: {err.strerror}")]
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(source, [Problem("", "the file is not UTF-8 text")]) from None
    else:
        text = fresh_config_text()
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, [Problem("", f"not valid TOML: {err}")]) from None
    hub: dict[str, Any] = {"id": boot.hub_id}
    if boot.timezone is not None:
        hub["timezone"] = boot.timezone
    uplink: dict[str, Any] = {"host": boot.host, "port": boot.port}
    if boot.prefix is not None:
        uplink["prefix"] = boot.prefix
    old_uplink = current.get("uplink")
    if isinstance(old_uplink, dict) and old_uplink.get("type", "mqtt") != "mqtt":
        uplink["type"] = "mqtt"
    tls = {name: str(etc / name) for name in ("ca.pem", "hub.pem", "hub.key")}
    updates: Updates = {
        ("hub",): hub,
        ("uplink",): uplink,
        ("uplink", "tls"): {"ca": tls["ca.pem"], "cert": tls["hub.pem"], "key": tls["hub.key"]},
    }
    drop = []
    if (
        isinstance(old_uplink, dict)
        and "tls" in old_uplink
        and not TomlEditor(text).has_table(("uplink", "tls"))
    ):
        drop.append((("uplink",), "tls"))  # an inline table or dotted keys: rewritten as a table
    try:
        new_text = apply_updates(text, updates, drop)
    except ValueError as err:
        raise ConfigError(
            source,
            [
                Problem(
                    "",
                    f"cannot be updated safely line by line ({err}); set [hub] id, [uplink] "
                    "host, port and prefix and [uplink.tls] by hand, or move the file away to "
                    "start from the example",
                )
            ],
        ) from None
    validate_config(tomllib.loads(new_text), source)
    changed = [
        ".".join((*table, key))
        for table, values in updates.items()
        for key, value in values.items()
        if _node(current, (*table, key)) != value
    ]
    return ConfigPlan(new_text, old, changed)


# ---- owners -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceIds:
    """The service user's ids when this process can and should give files to it."""

    user: str
    uid: int | None
    gid: int | None
    why_not: str | None  # why files are not given to the service user


def service_ids(user: str = SERVICE_USER) -> ServiceIds:
    """Only root can give a file away, and only to a user that exists: a test run (not
    root, or no service user on the machine) leaves owners as they are and says so."""
    if os.geteuid() != 0:
        return ServiceIds(user, None, None, "not running as root")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return ServiceIds(user, None, None, f"user {user} does not exist")
    return ServiceIds(user, entry.pw_uid, entry.pw_gid, None)


def _group_id(name: str) -> int | None:
    if os.geteuid() != 0:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


# ---- provisioning -----------------------------------------------------------------------
@dataclass
class _Write:
    path: Path
    data: bytes
    mode: int
    owner: Owner
    label: str


def _same(path: Path, data: bytes, mode: int, owner: Owner) -> bool:
    try:
        info = path.stat()
        current = path.read_bytes()
    except OSError:
        return False
    return (
        current == data
        and info.st_mode & 0o7777 == mode
        and owner.uid in (-1, info.st_uid)
        and owner.gid in (-1, info.st_gid)
    )


def _tls_writes(boot: BootFile, etc: Path, ids: ServiceIds) -> list[_Write]:
    key_owner = Owner(ids.uid, ids.gid) if ids.uid is not None and ids.gid is not None else Owner()
    root = Owner(0, 0) if os.geteuid() == 0 else Owner()
    whose = f"owner {ids.user}" if ids.why_not is None else f"owner left alone: {ids.why_not}"
    return [
        _Write(etc / "ca.pem", boot.ca_pem, 0o644, root, "0644"),
        _Write(etc / "hub.pem", boot.cert_pem, 0o644, root, "0644"),
        _Write(etc / "hub.key", boot.key_pem, 0o600, key_owner, f"0600, {whose}"),
    ]


def _config_writes(plan: ConfigPlan, path: Path, ids: ServiceIds) -> list[_Write]:
    new = plan.text.encode("utf-8")
    if plan.old is None:
        gid = _group_id(ids.user)
        owner = Owner(0, gid) if gid is not None else Owner()
        return [_Write(path, new, 0o640, owner, "0640, new from the example")]
    info = path.stat()
    owner = Owner(info.st_uid, info.st_gid) if os.geteuid() == 0 else Owner()
    mode = info.st_mode & 0o7777
    if plan.old == new:
        return [_Write(path, new, mode, owner, "")]
    changed = ", ".join(plan.changed) or "nothing"
    return [
        _Write(path.with_name(path.name + ".bak"), plan.old, mode, owner, "the previous hub.toml"),
        _Write(path, new, mode, owner, f"changed: {changed}; the previous one is {path.name}.bak"),
    ]


def _make_etc(etc: Path, ids: ServiceIds, say: Say) -> None:
    if etc.is_dir():
        return
    etc.mkdir(mode=0o750, parents=True)
    os.chmod(etc, 0o750)
    gid = _group_id(ids.user)
    if gid is not None:
        os.chown(etc, 0, gid)
    say(f"made {etc} (0750)")


def write_all(writes: list[_Write], config: Path, say: Say) -> None:
    """Write every file that differs, all or none (see ``FileSet``); ``OSError`` if not."""
    from agent.config import load_config

    files = FileSet()
    todo = [w for w in writes if not _same(w.path, w.data, w.mode, w.owner)]
    try:
        for write in todo:
            staged = files.add(write.path, write.data, write.mode, write.owner)
            if write.path == config:
                try:
                    load_config(staged)  # what is on disk is what was validated
                except ConfigError as err:  # pragma: no cover - validated when planned
                    raise OSError(f"the written {config.name} does not validate: {err}") from None
        files.commit()
    finally:
        files.discard()
    for write in writes:
        if write not in todo:
            say(f"unchanged {write.path}")
        elif write.path.name.endswith(".bak"):
            say(f"kept {write.label} as {write.path}")
        else:
            say(f"wrote {write.path} ({write.label})")


def erase(path: Path, say: Say) -> bool:
    """Overwrite ``path`` with zeros, sync, remove it; True when it is gone.

    On FAT the zeros normally land on the file's own clusters, but neither the file
    system nor the card's controller promises it: best effort, and said so."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        say(f"could not overwrite {path} with zeros ({err.strerror}); removing it anyway")
    try:
        path.unlink()
    except OSError as err:
        say(f"could NOT remove {path} ({err.strerror}): it holds the hub's key; remove it by hand")
        return False
    fsync_dir(path.parent)
    say(
        f"erased {path} (overwritten with zeros, then removed; the card may still hold old "
        "copies in free space: wipe it before giving it away)"
    )
    return True


def leave_marker(directory: Path, hub_id: str, now: datetime, synced: bool, say: Say) -> None:
    marker = directory / MARKER_FILE
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    clock = "" if synced else " (the hub's clock was not synchronised yet: the time may be wrong)"
    text = (
        f"{BOOT_FILE} on this card was used at {when}{clock}\n"
        f"to provision Leefsamen hub {hub_id}, and then erased.\n"
        "It held the hub's private key: wipe this card before giving it away.\n"
        "This file holds no secret. The hub's configuration is in /etc/leefsamen-hub.\n"
    )
    try:
        with marker.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        say(f"could not leave {marker} ({err.strerror})")
        return
    say(f"left {marker}")


def clock_synced() -> bool:
    """Whether the certificates' dates can be judged: only when the kernel says NTP has
    synchronised the clock (and the clock is plausible, as ``LiveClock`` has it).

    Where the kernel cannot say, the dates are not judged: a unit with ``ProtectClock=``
    gets EPERM even for reading the NTP state (systemd issue 26413), and refusing a good
    certificate against a clock that may be years off would leave a hub unprovisioned."""
    from zoneinfo import ZoneInfo

    from agent import clock

    return clock.kernel_says_synced() is True and clock.LiveClock(ZoneInfo("UTC")).wall_synced()


def provision(
    source: Path,
    etc: Path = ETC_DIR,
    config: Path | None = None,
    *,
    keep: bool = False,
    synced: bool | None = None,
    now: datetime | None = None,
    user: str = SERVICE_USER,
    say: Say = _say,
) -> int:
    """First boot from ``source``; the exit code. ``synced`` and ``now`` default to the live
    clock (``clock_synced``); ``user`` is the service user to own the key."""
    if synced is None:
        synced = clock_synced()
    now = now or datetime.now(UTC)
    config = config or etc / "hub.toml"
    try:
        boot = read_boot_file(source, synced, now)
        plan = plan_config(config, boot, etc)
    except ConfigError as err:
        print(err, file=sys.stderr)
        print("nothing was changed", file=sys.stderr)
        return EXIT_BAD_INPUT
    say(f"{source}: hub {boot.hub_id}, broker {boot.host}:{boot.port}")
    for fact in boot.facts:
        say(f"  {fact}")
    ids = service_ids(user)
    writes = [*_tls_writes(boot, etc, ids), *_config_writes(plan, config, ids)]
    try:
        _make_etc(etc, ids, say)
        write_all(writes, config, say)
    except OSError as err:
        reason = err.strerror or str(err)
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"hub provision: cannot write the files: {reason}{where}", file=sys.stderr)
        print(f"the old files are as they were and {source} was not touched", file=sys.stderr)
        return EXIT_FAILED
    if keep:
        say(f"left {source} in place (--keep): it holds the hub's key, remove it when done")
        return EXIT_OK
    gone = erase(source, say)
    leave_marker(source.parent, boot.hub_id, now, synced, say)
    say(f"hub {boot.hub_id} is provisioned; the agent reads {config} when it starts")
    return EXIT_OK if gone else EXIT_INCOMPLETE


def find_boot_file(dirs: Sequence[Path]) -> Path | None:
    return next((d / BOOT_FILE for d in dirs if (d / BOOT_FILE).is_file()), None)


# ---- the command ------------------------------------------------------------------------
def cmd_provision(args: argparse.Namespace) -> int:
    if args.action == "pair" and (args.source is not None or args.boot):
        print("hub provision: pair goes without --from or --boot", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.source is None and not args.boot:
        from agent.pairing import cmd_pair

        return cmd_pair(args)
    etc: Path = args.etc
    source: Path | None = args.source
    if args.boot:
        dirs = args.boot_dir or list(BOOT_DIRS)
        source = find_boot_file(dirs)
        if source is None:
            looked = ", ".join(str(d) for d in dirs)
            print(f"no {BOOT_FILE} in {looked}: nothing to provision")
            return EXIT_OK
    assert source is not None
    if not source.is_file():
        print(f"hub provision: {source}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    return provision(source, etc, args.config, keep=args.keep)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "provision",
        help="first boot from leefsamen.toml (--from FILE, --boot), or pair the sensors",
        description="With --from FILE or --boot: set the hub up from the leefsamen.toml an "
        "installer put on the boot partition: check it, move the certificate and key into "
        "the configuration directory, write hub.toml, erase the file. Exit 0 done, 2 a "
        "problem with the file (nothing changed), 1 the files could not be written (nothing "
        "changed), 3 done but the file could not be erased. Without them (or with 'pair'): "
        "pair the home's Zigbee sensors one by one, interactively. See docs/provision.md.",
    )
    p.add_argument("action", nargs="?", choices=["pair"], help="pair sensors (the default)")
    first = p.add_argument_group("first boot")
    source = first.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", type=Path, metavar="FILE", help="a leefsamen.toml")
    source.add_argument(
        "--boot",
        action="store_true",
        help=f"use {BOOT_FILE} from the boot partition, if there is one (exit 0 if not)",
    )
    first.add_argument(
        "--boot-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="where --boot looks, in order (repeatable; default: /boot/firmware, /boot)",
    )
    first.add_argument(
        "--etc",
        type=Path,
        default=ETC_DIR,
        metavar="DIR",
        help="where the certificate, key and hub.toml go (default: %(default)s)",
    )
    first.add_argument(
        "--keep", action="store_true", help="do not erase FILE (a copy you keep safe yourself)"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="the hub's configuration (default: hub.toml in --etc)",
    )
    pairing = p.add_argument_group("pairing")
    pairing.add_argument(
        "--no-restart", action="store_true", help="do not restart the agent after pairing"
    )
    pairing.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for a sensor before asking whether to go on (default: %(default)s)",
    )
    pairing.add_argument(
        "--driver", metavar="NAME", help="the zigbee2mqtt driver table to use, by its name"
    )
    p.set_defaults(func=cmd_provision)
