"""A real IMAP server for tests: Debian's dovecot on a loopback port, with a throwaway mail location.

``Dovecot(port=...)`` writes a config under a fresh directory in /tmp and
``start()`` runs ``dovecot -c CONF -F`` (foreground, so the test owns the
process); ``stop()`` sends SIGTERM and waits. As root, dovecot's processes
switch users: logins run as ``dovenull``, internal processes as ``dovecot``
and the mail user as ``nobody:nogroup`` (a static userdb), so the directory is
world-traversable and the maildir belongs to ``nobody``. As another user,
every process stays that user. One user (``USER``/``PASSWORD``) in a
passwd-file; plaintext LOGIN allowed (``disable_plaintext_auth = no``: this
is dovecot 2.3; 2.4 calls it ``auth_allow_cleartext``).

Options: ``capabilities`` replaces the advertised list (leave out IDLE to
make a server without it); ``idle_check`` (seconds, dovecot's
``mailbox_idle_check_interval``, 30 by default) is how often an IDLE
session looks for changes besides the file-system notifications: a large
one keeps that look from hiding new mail a client failed to see; ``tls=True`` adds a self-signed certificate
(``openssl``), STARTTLS on the plain port and an implicit-TLS port
(``tls_port``); ``cafile`` is the certificate to trust.

Mail goes in with IMAP APPEND (stdlib ``imaplib`` in a thread): no MTA.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
USER = "support"
PASSWORD = "imap-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dovecot:
    def __init__(
        self,
        *,
        port: int | None = None,
        capabilities: str | None = None,
        tls: bool = False,
        idle_notify: int = 120,
        idle_check: int | None = None,
    ) -> None:
        assert DOVECOT, "dovecot is not installed (apt-get install dovecot-imapd)"
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.capabilities = capabilities
        self.tls = tls
        self.idle_notify = idle_notify
        self.idle_check = idle_check
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
        self.root.chmod(0o755)
        self.conf = self.root / "dovecot.conf"
        self.cafile = self.root / "cert.pem" if tls else None
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    # --- the server ---------------------------------------------------------------------------
    def _write_config(self) -> None:
        root = self.root
        for name in ("run", "state", "mail"):
            (root / name).mkdir()
        if os.geteuid() == 0:
            login_user, internal_user, mail_uid, mail_gid = "dovenull", "dovecot", "nobody", "nogroup"
            shutil.chown(root / "mail", "nobody", "nogroup")
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            login_user = internal_user = mail_uid = me
            mail_gid = str(os.getegid())
        passwd = root / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        passwd.chmod(0o644)
        lines = [
            f"instance_name = dovecot-test-{self.port}",
            f"base_dir = {root}/run",
            f"state_dir = {root}/state",
            f"log_path = {root}/dovecot.log",
            "protocols = imap",
            "listen = 127.0.0.1",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"default_login_user = {login_user}",
            f"default_internal_user = {internal_user}",
            f"mail_location = maildir:{root}/mail/%u",
            f"imap_idle_notify_interval = {self.idle_notify} secs",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {passwd}",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%u",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    address = 127.0.0.1",
            f"    port = {self.tls_port or 0}",
            "  }",
            "}",
        ]
        if self.capabilities is not None:
            lines.append(f"imap_capability = {self.capabilities}")
        if self.idle_check is not None:
            lines.append(f"mailbox_idle_check_interval = {self.idle_check} secs")
        if self.tls:
            key, cert = root / "key.pem", root / "cert.pem"
            subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
            files = ["-keyout", str(key), "-out", str(cert)]
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject, *files],
                check=True,
                capture_output=True,
            )
            lines += ["ssl = required", f"ssl_cert = <{cert}", f"ssl_key = <{key}"]
        else:
            lines.append("ssl = no")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [str(DOVECOT), "-c", str(self.conf), "-F"], stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        # The whole process group: the master alone waits up to 10 s for busy imap processes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
            os.killpg(self.process.pid, signal.SIGCONT)  # a paused server too
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        # The port must be free again before a restart on it (no child left listening).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze every dovecot process (SIGSTOP): connections stay open and answer nothing, like a hung server."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- a client, as a mail user would have --------------------------------------------------
    def _client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        if self.tls:
            import ssl

            client.starttls(ssl.create_default_context(cafile=str(self.cafile)))
        client.login(USER, PASSWORD)
        return client

    def _append(self, raw: bytes, folder: str, date: float | None) -> int:
        with self._client() as client:
            stamp = imaplib.Time2Internaldate(date) if date is not None else None
            status, data = client.append(_quoted(folder), None, stamp, raw)
            assert status == "OK", data
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert match, data
            return int(match.group(1))

    def _command(self, name: str, *args: str) -> list[bytes]:
        with self._client() as client:
            status, data = getattr(client, name)(*args)
            assert status == "OK", (name, data)
            return data

    def _uids(self, folder: str, criteria: str) -> list[int]:
        with self._client() as client:
            status, _ = client.select(_quoted(folder))
            assert status == "OK"
            status, data = client.uid("SEARCH", criteria)
            return [int(uid) for uid in (data[0] or b"").split()]

    def _uidvalidity(self, folder: str) -> int:
        data = self._command("status", _quoted(folder), "(UIDVALIDITY)")
        match = re.search(rb"UIDVALIDITY (\d+)", data[0])
        assert match, data
        return int(match.group(1))

    def _numbers(self, folder: str) -> list[int]:
        with self._client() as client:
            status, _ = client.select(_quoted(folder))
            assert status == "OK"
            status, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
            assert status == "OK", data
            found = [re.search(rb"Body of message (\d+)", item[1]) for item in data if isinstance(item, tuple)]
            return [int(match.group(1)) for match in found if match]

    def deliver_offline(self, raw: bytes, folder_path: str = "") -> None:
        """Put ``raw`` straight into the maildir (INBOX, or ``.Name`` for a folder), as an MTA would
        while the IMAP server is down; dovecot gives it the next UID when it next looks."""
        maildir = self.root / "mail" / USER / folder_path
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.P{os.getpid()}.test"
        (maildir / "tmp" / name).write_bytes(raw)
        (maildir / "tmp" / name).rename(maildir / "new" / name)
        if os.geteuid() == 0:
            for path in (self.root / "mail" / USER).rglob("*"):
                shutil.chown(path, "nobody", "nogroup")
            shutil.chown(self.root / "mail" / USER, "nobody", "nogroup")

    async def numbers(self, folder: str = "INBOX") -> list[int]:
        """The numbers of ``message(n)`` in ``folder``, in UID order."""
        return await asyncio.to_thread(self._numbers, folder)

    async def append(self, raw: bytes, folder: str = "INBOX", *, date: float | None = None) -> int:
        """APPEND ``raw`` to ``folder`` (with an INTERNALDATE of ``date``, epoch seconds); its UID."""
        return await asyncio.to_thread(self._append, raw, folder, date)

    async def create(self, folder: str) -> None:
        await asyncio.to_thread(self._command, "create", _quoted(folder))

    async def delete(self, folder: str) -> None:
        await asyncio.to_thread(self._command, "delete", _quoted(folder))

    async def uids(self, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        """UIDs in ``folder`` matching a SEARCH ``criteria`` (``SEEN``, ``UNSEEN``...)."""
        return await asyncio.to_thread(self._uids, folder, criteria)

    async def uidvalidity(self, folder: str = "INBOX") -> int:
        return await asyncio.to_thread(self._uidvalidity, folder)


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def message(number: int, *, sender: str = "customer@example.com", subject: str | None = None) -> bytes:
    """A small RFC 5322 message with a unique Message-ID; its body says ``number``."""
    return (
        f"From: Customer <{sender}>\r\n"
        "To: support@example.com\r\n"
        f"Subject: {subject or f'Question {number}'}\r\n"
        f"Message-ID: <imap-test-{number}-{os.getpid()}@example.com>\r\n"
        "Date: Sun, 29 Nov 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"Body of message {number}.\r\n"
    ).encode()
