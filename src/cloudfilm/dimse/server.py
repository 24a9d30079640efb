"""The DIMSE node: a pynetdicom acceptor in its own threads, beside the HTTP server.

One `ApplicationEntity` accepts Verification (PS3.4 Annex A), every Storage SOP
class pynetdicom knows (PS3.4 Annex B) and Query/Retrieve FIND, MOVE and GET in the
Patient and Study Root models (PS3.4 Annex C). The handlers (`dimse/handlers.py`)
are thin: they call the same services as DICOMweb, so matching, ingest durability
and retrieval have one implementation each.

Idle or slow connections cannot starve the node: a connected peer has
`ASSOCIATION_REQUEST_TIMEOUT` seconds to send its A-ASSOCIATE-RQ (the ARTIM timer,
PS3.8 §9.1.5) before it is closed, and one address holds at most
``CLOUDFILM_DIMSE_MAX_PER_ADDRESS`` open connections; more are closed at once, so
other addresses keep getting associations.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, _config, dimse_messages
from pynetdicom.transport import ThreadedAssociationServer

from cloudfilm.config import DimseSettings
from cloudfilm.dimse.access import CallerPolicy, audit_refusal_once
from cloudfilm.dimse.handlers import handlers_for
from cloudfilm.dimse.identifiers import QUERY_RETRIEVE_MODELS, VERIFICATION
from cloudfilm.services.context import Archive
from cloudfilm.storage.blobs import BlobStore

log = logging.getLogger(__name__)

# Storage transfer syntaxes, uncompressed first. A per-association handler reorders
# them to follow the requestor's own order (dimse/access.py), so what a sender
# offers first is what it gets (PS3.8 §9.3.2.2 leaves the choice to the acceptor).
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.RLELossless,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
    uid.HTJ2K,
)
MAX_PDU = 256 * 1024  # what we ask peers to send per PDU; fewer, larger PDUs cost less CPU
# Seconds a connected peer has to send a whole A-ASSOCIATE-RQ (and to answer an A-RELEASE);
# a peer sends it right after connecting, so an idle connection is closed soon.
ASSOCIATION_REQUEST_TIMEOUT = 5
MAX_ASSOCIATIONS = 32
DEFAULT_MAX_PER_ADDRESS = DimseSettings.max_per_address


def storage_classes() -> list[str]:
    """All storage SOP classes pynetdicom knows (170 in 3.0), not the 120 of the SCU list."""
    return [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]


def build_ae(ae_title: str) -> AE:
    """The acceptor's supported contexts (PS3.7 §D.3.3.2, PS3.8 §9.3.2.2).

    Storage contexts allow both roles, so a C-GET requestor's SCP/SCU Role Selection
    (PS3.7 §D.3.3.4) is accepted and C-STORE sub-operations can run back on its
    association (PS3.4 C.4.3.3); with no role item the default roles apply.
    """
    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAX_PDU
    ae.maximum_associations = MAX_ASSOCIATIONS
    ae.acse_timeout = ASSOCIATION_REQUEST_TIMEOUT
    ae.dimse_timeout = 120
    ae.network_timeout = 120
    ae.add_supported_context(VERIFICATION)
    for abstract in storage_classes():
        ae.add_supported_context(abstract, list(STORAGE_TRANSFER_SYNTAXES),
                                 scu_role=True, scp_role=True)
    for model in QUERY_RETRIEVE_MODELS:
        ae.add_supported_context(model)
    return ae


def _quiet_pynetdicom() -> None:
    """pynetdicom logs request identifiers (patient names) at INFO by default: turn it off."""
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    ours = logging.getLogger("cloudfilm.dimse")
    if ours.level == logging.NOTSET:  # association log lines are wanted unless configured
        ours.setLevel(logging.INFO)


def receive_into(blobs: BlobStore) -> None:
    """pynetdicom's file-based C-STORE receive (``_config.STORE_RECV_CHUNKED_DATASET``),
    written straight into the blob store's staging.

    pynetdicom streams each received data set to a Part-10 file it opens with
    ``tempfile.NamedTemporaryFile`` (in ``dimse_messages``); that name is pointed at
    `BlobStore.receiving_file`, so the file lands in ``incoming/`` (0600, inside the data
    directory, named so that recovery removes one a crash left half-written) rather than
    in the system's temporary directory, and dimse/store.py adopts it without a copy.
    Both settings are process-wide: this process receives C-STOREs into one archive.
    """

    def staging_file(*_: object, **__: object) -> IO[bytes]:
        return blobs.receiving_file()

    _config.STORE_RECV_CHUNKED_DATASET = True
    dimse_messages.NamedTemporaryFile = staging_file  # type: ignore[attr-defined,assignment]


class PerAddressCappedServer(ThreadedAssociationServer):
    """pynetdicom's threaded acceptor, refusing a connection at once when its address
    already holds `max_per_address` open ones, and giving the rest a read timeout.

    The count is of accepted sockets still open (held weakly, so a socket closed or
    collected leaves the count by itself): nothing to keep in step with the association
    threads. A refusal closes the TCP connection before any PDU (no A-ASSOCIATE-RJ can
    precede the peer's request, PS3.8 §9.2).
    """

    request_queue_size = 64  # the listen backlog: a burst of connects is accepted, then judged

    def __init__(self, *args: Any, max_per_address: int = DEFAULT_MAX_PER_ADDRESS,
                 on_refused: Callable[[str], None] | None = None, **kwargs: Any) -> None:
        self.max_per_address, self.on_refused = max_per_address, on_refused
        self._open: dict[str, weakref.WeakSet[socket.socket]] = {}
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def service_actions(self) -> None:
        """Nothing between polls. pynetdicom's own runs a full ``gc.collect()`` every 60th
        poll (30 s), which held the GIL for ~0.5 s in a serving process (a profile of STOW
        showed a fifth of all GIL time there); Python's own collector reclaims finished
        associations without stalling every request of the process."""

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = str(client_address[0] if isinstance(client_address, tuple) else client_address)
        with self._open_lock:
            held = self._still_open(address)
            admitted = len(held) < self.max_per_address
            if admitted:
                held.add(request)
                self._open[address] = held
        if admitted:
            # recv must not wait forever inside a half-sent A-ASSOCIATE-RQ: pynetdicom's
            # ARTIM timer can't end a read in progress (handlers.settle_socket lengthens it)
            request.settimeout(ASSOCIATION_REQUEST_TIMEOUT)
        elif self.on_refused is not None:
            self.on_refused(address)
        return admitted

    def _still_open(self, address: str) -> weakref.WeakSet[socket.socket]:
        """This address's open sockets; forgets addresses whose sockets are all closed."""
        for known in [a for a, held in self._open.items()
                      if not any(s.fileno() != -1 for s in held)]:
            del self._open[known]
        return weakref.WeakSet(s for s in self._open.get(address, ()) if s.fileno() != -1)


class RefusalAuditor:
    """Logs and audits connections refused over the cap, off the accept thread: an address
    at most once a minute here (and once an hour in the audit log), so a flood costs little."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dimse-refusals")
        self.last: dict[str, float] = {}

    def __call__(self, address: str) -> None:
        now = time.monotonic()
        if now - self.last.get(address, -60.0) < 60.0:
            return
        if len(self.last) > 4096:
            self.last.clear()
        self.last[address] = now
        log.warning("connections from %s refused: it holds the most open connections allowed",
                    address)
        self.worker.submit(audit_refusal_once, self.archive, "", address,
                           "too many open connections from this address")


@dataclass
class DimseServer:
    """A running acceptor; `stop()` aborts open associations and closes the port."""

    ae: AE
    server: ThreadedAssociationServer
    ae_title: str
    address: tuple[str, int]

    def stop(self) -> None:
        self.ae.shutdown()
        log.info("DIMSE %s on %s:%s stopped", self.ae_title, *self.address)


def start_dimse(archive: Archive, *, ae_title: str, host: str, port: int,
                allow: str | None = None) -> DimseServer:
    """Start the acceptor without blocking; the caller's thread goes on to serve HTTP.

    ``allow`` (default: CLOUDFILM_DIMSE_ALLOW, ``archive.settings.dimse.allow``) says which
    calling AEs may associate; see `dimse.access.CallerPolicy`. The per-address cap
    is CLOUDFILM_DIMSE_MAX_PER_ADDRESS (``archive.settings.dimse.max_per_address``).
    """
    _quiet_pynetdicom()
    receive_into(archive.blobs)
    policy = CallerPolicy.parse(allow if allow is not None else archive.settings.dimse.allow)
    cap = archive.settings.dimse.max_per_address
    ae = build_ae(ae_title)
    server = ae.make_server((host, port), evt_handlers=handlers_for(archive, ae_title, policy),
                            server_class=PerAddressCappedServer, max_per_address=cap,
                            on_refused=RefusalAuditor(archive))
    ae._servers.append(server)  # as AE.start_server does, so ae.shutdown() stops it
    threading.Thread(target=server.serve_forever, name="DimseAcceptor", daemon=True).start()
    address = (str(server.server_address[0]), int(server.server_address[1]))
    log.info("DIMSE %s listening on %s:%s (callers: %s, at most %d connections per address)",
             ae_title, *address, policy.value, cap)
    return DimseServer(ae, server, ae_title, address)
