"""The archive: what goes in, what comes out, and what stays.

Use cases, one module each:
- ``ingest``: store instances durably (STOW-RS, C-STORE, import, uploads), the one way in;
  ``multipart_stream`` and ``part10`` parse what arrives;
- ``retrieve``: instances, frames and bulk data for WADO-RS/URI, C-GET/C-MOVE and exports;
- ``query``: QIDO-RS and C-FIND over the index (PS3.4 C.2.2.2 matching);
- ``deletion``: remove studies, series and instances (index first, blobs to trash);
- ``check``: compare the index with the blob store (``cloudfilm check``);
- ``retention``: how long each study is kept, and what is due for deletion.
"""
