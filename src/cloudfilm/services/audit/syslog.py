"""Forward audit records to a syslog collector (IHE ATNA Record Audit Event, ITI-20).

Each record becomes one RFC 5424 message whose MSG is the DICOM PS3.15 A.5 XML
(APP-NAME ``cloudfilm``, MSGID ``ATNALOG``, PRI 85 = facility 10 security/authorization,
severity 5 notice). Transport: ``CLOUDFILM_SYSLOG=udp://host:port`` (RFC 5426, one
datagram per message) or ``tcp://host:port`` (RFC 6587 octet-counting framing).

Forwarding is best effort and never blocks an audited request: records are queued
and sent by a daemon thread; a full queue or a send error is logged and the
message dropped (the database chain stays the record of truth). Audit checkpoints
(``services.audit``) are sent too, MSGID ``CHECKPOINT``, so truncating both the index
and the anchor file still shows against the collector's copy. The archive attaches a
forwarder when ``CLOUDFILM_SYSLOG`` is set (``Settings.syslog``, checked at start-up), so
every process that appends (server, DIMSE, CLI) forwards; what is queued is flushed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import socket
import threading
from datetime import UTC, datetime

from cloudfilm.config import SyslogTarget
from cloudfilm.services.audit.export import audit_source_id, dicom_audit_xml
from cloudfilm.services.audit.record import AuditRecord

log = logging.getLogger(__name__)

APP_NAME = "cloudfilm"
MSGID = "ATNALOG"
CHECKPOINT_MSGID = "CHECKPOINT"
PRI = 10 * 8 + 5  # facility 10 (security/authorization), severity 5 (notice)
BOM = b"\xef\xbb\xbf"
QUEUE_MAX = 10_000
SEND_TIMEOUT = 5.0
UDP_MAX = 65_507


def _header_field(value: str, limit: int) -> str:
    """RFC 5424 header fields are printable US-ASCII without spaces, or ``-``."""
    cleaned = "".join(c for c in value if "!" <= c <= "~")[:limit]
    return cleaned or "-"


def format_message(msg: bytes, at: datetime, *, hostname: str, procid: str,
                   app_name: str = APP_NAME, msgid: str = MSGID) -> bytes:
    """One RFC 5424 SYSLOG-MSG: ``<PRI>1 TIMESTAMP HOSTNAME APP PROCID MSGID - BOM MSG``."""
    timestamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    header = " ".join([f"<{PRI}>1", timestamp, _header_field(hostname, 255),
                       _header_field(app_name, 48), _header_field(procid, 128),
                       _header_field(msgid, 32), "-"])
    return header.encode("ascii") + b" " + BOM + msg


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1 framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogForwarder:
    """An ``AuditLog.on_record`` listener that ships each record to a syslog collector."""

    def __init__(self, protocol: str, host: str, port: int, *,
                 source_id: str | None = None) -> None:
        self.protocol, self.host, self.port = protocol, host, port
        self.source_id = source_id or audit_source_id()
        self.hostname = socket.gethostname()
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_MAX)
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="syslog-forwarder", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # short-lived commands: flush before the interpreter exits

    def __call__(self, record: AuditRecord) -> None:
        message = format_message(dicom_audit_xml(record, self.source_id), record.at,
                                 hostname=self.hostname, procid=str(os.getpid()))
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning("syslog queue full; audit record %s not forwarded", record.id)

    def send_checkpoint(self, line: str) -> None:
        """An audit checkpoint (signed count and head hash) as its own message, MSGID
        ``CHECKPOINT``: a copy of the anchor that lives off this machine."""
        message = format_message(line.encode("ascii"), datetime.now(UTC),
                                 hostname=self.hostname, procid=str(os.getpid()),
                                 msgid=CHECKPOINT_MSGID)
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning("syslog queue full; audit checkpoint not forwarded")

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout``), then stop."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._disconnect()

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._send(message)
            except OSError as exc:
                log.warning("syslog forwarding to %s://%s:%s failed: %s", self.protocol,
                            self.host, self.port, exc)
                self._disconnect()

    def _send(self, message: bytes) -> None:
        if self.protocol == "udp" and len(message) > UDP_MAX:
            raise OSError(f"message of {len(message)} bytes is too large for UDP")
        if self._sock is None:
            self._sock = self._connect()
        if self.protocol == "udp":
            self._sock.send(message)
        else:
            self._sock.sendall(octet_counted(message))

    def _connect(self) -> socket.socket:
        if self.protocol == "tcp":
            return socket.create_connection((self.host, self.port), timeout=SEND_TIMEOUT)
        family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port,
                                                             type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.connect(address)
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def forwarder_for(target: SyslogTarget | None) -> SyslogForwarder | None:
    """A forwarder to ``target`` (``Settings.syslog``), or None when forwarding is off."""
    return None if target is None else SyslogForwarder(target.protocol, target.host, target.port)
