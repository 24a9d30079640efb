"""Data in and out of other systems.

- ``importer``: files, folders, zips and DICOMDIR media (``cloudfilm import``, uploads);
- ``export``: zips and IHE PDI media of what a caller may download; ``dicomdir`` writes
  the DICOMDIR;
- ``documents``: PDFs and photos a patient uploads, wrapped as DICOM;
- ``nodes``: the known remote DICOM nodes;
- ``remote`` with ``remote_dimse``, ``remote_dicomweb`` and ``remote_types``: query and
  fetch from other PACS (C-FIND/C-MOVE/C-GET/C-STORE, QIDO-RS/WADO-RS).
"""
