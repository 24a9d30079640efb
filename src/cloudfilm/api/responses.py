"""Response helpers shared by the DICOMweb routers."""

from __future__ import annotations

import gzip

from starlette.requests import Request
from starlette.responses import Response

DICOM_JSON = "application/dicom+json"
GZIP_MIN = 4096


def json_bytes_response(request: Request, body: bytes, *, status: int = 200,
                        media_type: str = DICOM_JSON, headers: dict[str, str] | None = None) -> Response:
    """Send pre-serialised JSON, gzipped (fast level) when the client accepts it.

    Metadata dominates a viewer's time to first image (ohif.md), so it is compressed,
    but binary frames never are.
    """
    out_headers = dict(headers or {})
    out_headers["Vary"] = "Accept-Encoding"
    if len(body) >= GZIP_MIN and "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=1)
        out_headers["Content-Encoding"] = "gzip"
    return Response(body, status_code=status, media_type=media_type, headers=out_headers)
