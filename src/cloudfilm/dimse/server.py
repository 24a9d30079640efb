"""The DIMSE node: a pynetdicom acceptor in its own threads, beside the HTTP server.

One `ApplicationEntity` accepts Verification (PS3.4 Annex A), every Storage SOP
class pynetdicom knows (PS3.4 Annex B) and Query/Retrieve FIND, MOVE and GET in the
Patient and Study Root models (PS3.4 Annex C). The handlers (`dimse/handlers.py`)
are thin: they call the same services as DICOMweb, so matching, ingest durability
and retrieval have one implementation each.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pydicom import uid
from pynetdicom import AE, AllStoragePresentationContexts, _config
from pynetdicom.transport import ThreadedAssociationServer

from cloudfilm.dimse.access import CallerPolicy
from cloudfilm.dimse.handlers import handlers_for
from cloudfilm.dimse.identifiers import QUERY_RETRIEVE_MODELS, VERIFICATION
from cloudfilm.services.archive import Archive

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
    ae.maximum_associations = 32
    ae.acse_timeout = 30
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

    ``allow`` (default: env ``CLOUDFILM_DIMSE_ALLOW``, else ``loopback``) says which
    calling AEs may associate; see `dimse.access.CallerPolicy`.
    """
    _quiet_pynetdicom()
    policy = CallerPolicy.parse(allow if allow is not None
                                else os.environ.get("CLOUDFILM_DIMSE_ALLOW", ""))
    ae = build_ae(ae_title)
    server = ae.start_server((host, port), block=False,
                             evt_handlers=handlers_for(archive, ae_title, policy))
    assert server is not None  # block=False always returns the server
    address = (str(server.server_address[0]), int(server.server_address[1]))
    log.info("DIMSE %s listening on %s:%s (callers: %s)", ae_title, *address, policy.value)
    return DimseServer(ae, server, ae_title, address)

