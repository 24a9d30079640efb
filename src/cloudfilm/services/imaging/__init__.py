"""Pixels and pictures: decoding, rendering, transcoding and CT volumes.

- ``pixels``: decode frames and convert transfer syntaxes (codecs);
- ``rendering``: JPEG/PNG of a frame with windowing (rendered and thumbnail resources);
- ``transcode``: HTJ2K previews and lossless copies for the viewer;
- ``volumes``: a CT series as a HU volume with its patient geometry;
- ``registration``: rigid, lung-masked registration of two CT volumes.
"""
