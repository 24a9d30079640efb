"""The aerated lungs of a chest CT: air-like voxels inside the body.

Why one module: registration (lung-masked metric, `services/imaging/registration.py`) and
nodule detection (candidates only inside the lungs, `domain/detection.py`) need the same
mask, computed the same way, at whatever resolution they work at.

How: the body is the largest face-connected component at or above ``BODY_HU_MIN`` with its
holes filled slice by slice (in 3D the lungs reach the ends of the scan and would count as
outside air). The lungs are the voxels at or below ``AIR_HU_MAX`` inside it; air pockets
smaller than ``MIN_POCKET_FRACTION`` of the largest (bowel gas) are dropped. Lung parenchyma is about -850 HU, fat about
-100 HU, so the two thresholds sit well apart from both.

Pure logic, no I/O. Array order is (slice k, row i, column j), as in `CtVolume`.
"""

from __future__ import annotations

import numpy as np

from cloudfilm.domain.lazy_modules import lazy_module

ndimage = lazy_module("scipy.ndimage")

BODY_HU_MIN = -500.0       # at or above: tissue (fat is about -100 HU)
AIR_HU_MAX = -400.0        # at or below: air or aerated lung (parenchyma about -850 HU)
MIN_POCKET_FRACTION = 0.1  # air pockets smaller than this share of the largest are dropped


def lung_mask(hu: np.ndarray) -> np.ndarray:
    """Boolean mask of the aerated lungs in a (slices, rows, columns) HU array."""
    body = _largest_component(hu >= BODY_HU_MIN)
    filled = np.stack([ndimage.binary_fill_holes(plane) for plane in body])
    pockets, count = ndimage.label(filled & (hu <= AIR_HU_MAX))
    if not count:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(pockets.ravel(), minlength=count + 1)
    sizes[0] = 0
    kept = np.flatnonzero(sizes >= MIN_POCKET_FRACTION * sizes.max())
    return np.asarray(np.isin(pockets, kept))


def lung_regions(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The aerated lungs and the lungs with what they enclose, slice by slice.

    The second mask adds everything the lung surrounds on an axial slice: nodules,
    vessels and airway walls inside the lung, but not the chest wall or mediastinum.
    """
    lungs = lung_mask(hu)
    enclosed = np.stack([ndimage.binary_fill_holes(plane) for plane in lungs])
    return lungs, np.asarray(enclosed)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if not count:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))
