// Window/level as DICOM states it (PS3.3 C.11.2.1.2, the linear VOI function) and as
// Cornerstone3D stores it (a lower/upper range of modality values). The same formulas as
// Cornerstone's utilities.windowLevel, without loading Cornerstone, so the first viewer
// (quickview.ts) and Cornerstone show a slice with exactly the same window.

export interface Range {
  lower: number;
  upper: number;
}

export interface WindowLevel {
  width: number;
  center: number;
}

export const PRESETS = {
  lung: { width: 1500, center: -600 },
  mediastinum: { width: 350, center: 40 },
  bone: { width: 2000, center: 300 },
} as const;
export type PresetName = keyof typeof PRESETS | 'study';

export function toRange(width: number, center: number): Range {
  return { lower: center - 0.5 - (width - 1) / 2, upper: center - 0.5 + (width - 1) / 2 };
}

export function toWindowLevel(range: Range): WindowLevel {
  return { width: Math.abs(range.upper - range.lower) + 1, center: (range.lower + range.upper + 1) / 2 };
}

/**
 * Cornerstone's window/level drag: both axes move by a step that grows with the image's
 * dynamic range (WindowLevelTool: 1 per pixel up to 1024 values, then range / 1024).
 */
export function dragWindow(range: Range, dx: number, dy: number, dynamicRange: number): Range {
  const ratio = dynamicRange / 1024;
  const step = !Number.isFinite(ratio) ? 1024 : ratio > 1 ? Math.round(ratio) : ratio;
  const { width, center } = toWindowLevel(range);
  return toRange(Math.max(1, width + dx * step), center + dy * step);
}

/**
 * Grey levels (as packed opaque RGBA) for stored values ``offset`` .. ``offset + size - 1``:
 * modality value = stored × slope + intercept, then linear from ``lower`` (black) to
 * ``upper`` (white), as Cornerstone renders a voiRange. MONOCHROME1 is inverted.
 */
export function greyTable(offset: number, size: number, slope: number, intercept: number,
                          range: Range, inverted: boolean): Uint32Array {
  const table = new Uint32Array(size);
  const span = Math.max(1e-6, range.upper - range.lower);
  for (let i = 0; i < size; i++) {
    const value = (offset + i) * slope + intercept;
    let grey = Math.round(Math.min(1, Math.max(0, (value - range.lower) / span)) * 255);
    if (inverted) grey = 255 - grey;
    table[i] = 0xff000000 | (grey << 16) | (grey << 8) | grey;  // little-endian RGBA
  }
  return table;
}
