// DICOMweb reads for the viewer: study and series lists (QIDO-RS), series metadata
// (WADO-RS) turned into a sorted stack of image ids. Same origin: the browser sends the
// cf_session cookie itself, so no token is ever handled here. No Cornerstone here: the
// first script (main.ts) reads the study with it before Cornerstone has loaded.

export const DICOMWEB = `${location.origin}/dicomweb`;
/** Image ids of our own progressive loader (frames.ts); the metadata is the WADO-RS loader's. */
export const SCHEME = 'cfweb';

type Element = { vr?: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string };
export type Attrs = Record<string, Element>;

export class HttpError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

export function value<T = string>(attrs: Attrs | undefined, tag: string): T | undefined {
  return attrs?.[tag]?.Value?.[0] as T | undefined;
}

export function values<T = string>(attrs: Attrs | undefined, tag: string): T[] {
  return (attrs?.[tag]?.Value ?? []) as T[];
}

export function numbers(attrs: Attrs | undefined, tag: string): number[] {
  return values<unknown>(attrs, tag).map(Number).filter((n) => Number.isFinite(n));
}

/** A person name as a patient reads it: "Zhang San (张三)". */
export function personName(attrs: Attrs | undefined, tag = '00100010'): string {
  const name = value<{ Alphabetic?: string; Ideographic?: string }>(attrs, tag);
  if (!name) return '';
  const tidy = (s?: string) => (s ?? '').split('^').filter(Boolean).join(' ');
  const alpha = tidy(name.Alphabetic);
  const ideo = (name.Ideographic ?? '').split('^').join('');
  return ideo && alpha ? `${alpha} (${ideo})` : alpha || ideo;
}

export function isoDate(da?: string): string {
  return da && /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da ?? '';
}

export async function getJSON<T>(url: string, accept = 'application/dicom+json'): Promise<T> {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: accept } });
  if (response.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new HttpError(401, 'not signed in');
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.error ?? message;
    } catch { /* not JSON */ }
    throw new HttpError(response.status, message);
  }
  if (response.status === 204) return [] as T;
  return response.json() as Promise<T>;
}

export interface StudyInfo {
  uid: string;
  date: string;
  time: string;
  description: string;
  patientName: string;
  modalities: string[];
}

export async function studyInfo(study: string): Promise<StudyInfo> {
  const found = await getJSON<Attrs[]>(
    `${DICOMWEB}/studies?StudyInstanceUID=${encodeURIComponent(study)}`);
  if (!found.length) throw new HttpError(404, `study ${study} not found`);
  const a = found[0];
  return {
    uid: study, date: isoDate(value(a, '00080020')), time: value(a, '00080030') ?? '',
    description: value(a, '00081030') ?? '', patientName: personName(a),
    modalities: values(a, '00080061'),
  };
}

export interface SeriesInfo {
  uid: string;
  modality: string;
  description: string;
  number: number;
  count: number;
  thumbnail: string;
}

const NON_IMAGE = new Set(['SR', 'PR', 'KO', 'DOC', 'REG', 'SEG', 'RTSTRUCT', 'RTPLAN', 'ECG']);

/** Image series of a study, in series-number order (documents and reports left out). */
export async function listSeries(study: string): Promise<SeriesInfo[]> {
  const found = await getJSON<Attrs[]>(`${DICOMWEB}/studies/${study}/series`);
  return found
    .map((a) => {
      const uid = value(a, '0020000E') ?? '';
      return {
        uid, modality: value(a, '00080060') ?? '', description: value(a, '0008103E') ?? '',
        number: Number(value(a, '00200011') ?? 0), count: Number(value(a, '00201209') ?? 0),
        thumbnail: `${DICOMWEB}/studies/${study}/series/${uid}/thumbnail?viewport=128,128`,
      };
    })
    .filter((s) => s.uid && !NON_IMAGE.has(s.modality))
    .sort((x, y) => x.number - y.number);
}

/** The series a reader opens first: the CT/MR/... series with the most images. */
export function mainSeries(series: SeriesInfo[], like?: SeriesInfo): SeriesInfo | undefined {
  const score = (s: SeriesInfo) =>
    s.count + (like && s.modality === like.modality ? 1e6 : 0)
    + (like && s.description === like.description ? 1e5 : 0);
  return [...series].sort((a, b) => score(b) - score(a))[0];
}

export interface Stack {
  study: string;
  series: string;
  description: string;
  modality: string;
  imageIds: string[];
  sops: string[];           // SOP Instance UID per index
  frames: number[];         // frame number per index (1 for single-frame instances)
  z: number[];              // position along the slice normal, mm (NaN if unknown)
  normal: [number, number, number];
  frameOfReference: string;
  voi: { center: number; width: number } | null;
  pixelSpacing: [number, number] | null;  // [row spacing, column spacing]
  thickness: number | null;
  rows: number;
  columns: number;
  first: Attrs;
  instances: Attrs[];       // the metadata of each index's instance (for Cornerstone's loader)
}

function cross(a: number[], b: number[]): [number, number, number] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

function framePosition(a: Attrs, frame: number): number[] {
  const perFrame = values<Attrs>(a, '52009230')[frame - 1];
  const plane = value<Attrs>(perFrame, '00209113');
  const position = numbers(plane, '00200032');
  return position.length === 3 ? position : numbers(a, '00200032');
}

function orientation(a: Attrs): number[] {
  const direct = numbers(a, '00200037');
  if (direct.length === 6) return direct;
  const shared = value<Attrs>(a, '52009229');
  const plane = value<Attrs>(shared, '00209116');
  return numbers(plane, '00200037');
}

/**
 * Fetch a series' metadata and order the images by ImagePositionPatient projected on the
 * slice normal (head first for axial images). frames.ts registers it with Cornerstone.
 */
export async function loadStack(study: string, series: string): Promise<Stack> {
  const base = `${DICOMWEB}/studies/${study}/series/${series}`;
  const instances = (await getJSON<Attrs[]>(`${base}/metadata`))
    .filter((a) => Number(value(a, '00280010') ?? 0) > 0);  // has pixel data
  if (!instances.length) throw new HttpError(404, `series ${series} has no images`);
  const first = instances[0];
  const iop = orientation(first);
  const normal: [number, number, number] =
    iop.length === 6 ? cross(iop.slice(0, 3), iop.slice(3, 6)) : [0, 0, 1];
  type Entry = {
    imageId: string; sop: string; frame: number; z: number; number: number; attrs: Attrs;
  };
  const entries: Entry[] = [];
  for (const a of instances) {
    const sop = value(a, '00080018') ?? '';
    const count = Math.max(1, Number(value(a, '00280008') ?? 1));
    for (let frame = 1; frame <= count; frame++) {
      const imageId = `${SCHEME}:${base}/instances/${sop}/frames/${frame}`;
      const position = framePosition(a, frame);
      entries.push({
        imageId, sop, frame, attrs: a, number: Number(value(a, '00200013') ?? 0) * 10000 + frame,
        z: position.length === 3 ? dot(position, normal) : Number.NaN,
      });
    }
  }
  const positioned = entries.every((e) => Number.isFinite(e.z));
  entries.sort(positioned ? (x, y) => y.z - x.z : (x, y) => x.number - y.number);
  const center = numbers(first, '00281050')[0];
  const width = numbers(first, '00281051')[0];
  const spacing = numbers(first, '00280030');
  return {
    study, series, description: value(first, '0008103E') ?? '',
    modality: value(first, '00080060') ?? '',
    imageIds: entries.map((e) => e.imageId), sops: entries.map((e) => e.sop),
    frames: entries.map((e) => e.frame), z: entries.map((e) => e.z), normal,
    frameOfReference: value(first, '00200052') ?? '',
    voi: Number.isFinite(center) && Number.isFinite(width) && width > 0 ? { center, width } : null,
    pixelSpacing: spacing.length === 2 ? [spacing[0], spacing[1]] : null,
    thickness: numbers(first, '00180050')[0] ?? null,
    rows: Number(value(first, '00280010') ?? 0), columns: Number(value(first, '00280011') ?? 0),
    first, instances: entries.map((e) => e.attrs),
  };
}

/** A small server-rendered JPEG of one image: shown while the full-quality frame loads. */
export function previewUrl(stack: Stack, index: number, size = 256): string {
  const sop = stack.sops[index];
  return `${DICOMWEB}/studies/${stack.study}/series/${stack.series}/instances/${sop}`
    + `/frames/${stack.frames[index]}/rendered?viewport=${size},${size}`;
}

/** Index of the image whose position is nearest to z (positions may be in any order). */
export function nearestIndex(zs: number[], z: number): number {
  let best = 0;
  let distance = Infinity;
  zs.forEach((value, i) => {
    const d = Math.abs(value - z);
    if (d < distance) {
      distance = d;
      best = i;
    }
  });
  return best;
}
