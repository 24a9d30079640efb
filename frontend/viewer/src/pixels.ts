// A frame's bytes as stored pixel values, without Cornerstone: HTJ2K (the previews, and
// lossless) through OpenJPH's WebAssembly build (~77 KB compressed, the codec Cornerstone's
// decode worker uses too, so the browser fetches the .wasm once), and uncompressed little
// endian frames as they are. Greyscale only: anything else waits for Cornerstone.
import openJphFactory from '@cornerstonejs/codec-openjph/wasmjs';
import wasmUrl from '@cornerstonejs/codec-openjph/wasm?url';
import { numbers, value, type Attrs } from './dicomweb';
import type { Frame } from './previews';

const HTJ2K = new Set(['1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202',
  '1.2.840.10008.1.2.4.203']);
const LITTLE_ENDIAN = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

export type Samples = Int16Array | Uint16Array | Uint8Array | Int8Array;

/** One decoded greyscale slice and how to read it (PS3.3 C.7.6.3, C.11.1). */
export interface Pixels {
  columns: number;
  rows: number;
  samples: Samples;
  min: number;            // stored values
  max: number;
  slope: number;          // modality value = stored × slope + intercept
  intercept: number;
  inverted: boolean;      // MONOCHROME1: low values are white
}

interface FrameInfo { width: number; height: number; bitsPerSample: number; isSigned: boolean;
  componentCount: number }
interface Decoder {
  getEncodedBuffer(length: number): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  getDecodedBuffer(): Uint8Array;
  delete(): void;
}
interface Codec { HTJ2KDecoder: new () => Decoder }

let codec: Promise<Codec> | null = null;

/** Load the codec (once). */
export function loadCodec(): Promise<Codec> {
  codec ??= (openJphFactory as unknown as (options: object) => Promise<Codec>)({
    locateFile: (file: string) => (file.endsWith('.wasm') ? wasmUrl : file),
  });
  return codec;
}

/** Whether the first viewer can draw this series (one greyscale sample per pixel). */
export function drawable(attrs: Attrs): boolean {
  const samples = Number(value(attrs, '00280002') ?? 1);
  const photometric = value(attrs, '00280004') ?? 'MONOCHROME2';
  return samples === 1 && photometric.startsWith('MONOCHROME');
}

function typed(bytes: Uint8Array, bits: number, signed: boolean): Samples {
  const copy = bytes.slice().buffer;  // aligned, and its own (the WASM heap is reused)
  if (bits > 8) return signed ? new Int16Array(copy) : new Uint16Array(copy);
  return signed ? new Int8Array(copy) : new Uint8Array(copy);
}

async function decodeSamples(frame: Frame, attrs: Attrs): Promise<[Samples, number, number]> {
  const columns = Number(value(attrs, '00280011') ?? 0);
  const rows = Number(value(attrs, '00280010') ?? 0);
  if (LITTLE_ENDIAN.has(frame.transferSyntax)) {
    const bits = Number(value(attrs, '00280100') ?? 16);
    const signed = Number(value(attrs, '00280103') ?? 0) === 1;
    return [typed(frame.bytes, bits, signed), columns, rows];
  }
  if (!HTJ2K.has(frame.transferSyntax)) {
    throw new Error(`transfer syntax ${frame.transferSyntax} is left to Cornerstone`);
  }
  const decoder = new (await loadCodec()).HTJ2KDecoder();
  try {
    decoder.getEncodedBuffer(frame.bytes.length).set(frame.bytes);
    decoder.decode();
    const info = decoder.getFrameInfo();
    if (info.componentCount !== 1) throw new Error('colour is left to Cornerstone');
    return [typed(decoder.getDecodedBuffer(), info.bitsPerSample, info.isSigned),
      info.width, info.height];
  } finally {
    decoder.delete();
  }
}

export async function decodeFrame(frame: Frame, attrs: Attrs): Promise<Pixels> {
  const [samples, columns, rows] = await decodeSamples(frame, attrs);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return {
    columns, rows, samples, min, max,
    slope: numbers(attrs, '00281053')[0] ?? 1,
    intercept: numbers(attrs, '00281052')[0] ?? 0,
    inverted: value(attrs, '00280004') === 'MONOCHROME1',
  };
}
