// The lossy previews of a series (issue 5): every slice as a small HTJ2K frame (transfer
// syntax …4.203, ~6.6 KB for a 512² CT slice instead of 512 KB), all in one series pixel
// data request (PS3.18 §10.4.1.1.6) rather than hundreds of round trips, and the slice the
// reader looks at on its own when the stream has not got there yet. No Cornerstone here:
// the first viewer (quickview.ts) draws these bytes before Cornerstone has loaded, and
// frames.ts adopts the same feed, so no preview crosses a slow link twice.
import { DICOMWEB, type Stack } from './dicomweb';
import { readParts, transferSyntaxOf, type Part } from './multipart';

export const PREVIEW_TS = '1.2.840.10008.1.2.4.203';
export const LOSSLESS_TS = '1.2.840.10008.1.2.4.201';
const RAW = 'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.5';
/** Raw frames are the named fallback for what the server cannot transcode (colour). */
export const ACCEPT: Record<Kind, string> = {
  preview: `multipart/related; type="image/jphc"; transfer-syntax=${PREVIEW_TS}, ${RAW}`,
  full: `multipart/related; type="image/jphc"; transfer-syntax=${LOSSLESS_TS}, ${RAW}`,
};
const SINGLES_AT_ONCE = 2;  // previews fetched one by one, for the slice on screen
const SINGLES_KEPT = 4;     // scrolled past faster than that: the series stream brings them

export type Kind = 'preview' | 'full';
/** The quality of an image on screen or in memory (null: none yet). */
export type Quality = Kind | null;
export interface Frame { kind: Kind; transferSyntax: string; bytes: Uint8Array }

/** Who hears of arrivals: the first viewer, then Cornerstone's frame feed. */
export interface PreviewListener {
  arrived(index: number, frame: Frame): void;
  /** A slice's preview could not be fetched and nothing else will bring it. */
  failed?(index: number, error: unknown): void;
  /** The series stream has ended (every preview it had is in). */
  streamEnded?(): void;
}

export function frameUrl(stack: Stack, index: number): string {
  const { study, series, sops, frames } = stack;
  return `${DICOMWEB}/studies/${study}/series/${series}/instances/${sops[index]}`
    + `/frames/${frames[index]}`;
}

/** What a part asked for as ``asked`` really is: only a lossy HTJ2K frame is a preview. */
export function frameOf(part: Part, asked: Kind): Frame {
  const transferSyntax = transferSyntaxOf(part.contentType);
  const kind: Kind = asked === 'preview' && transferSyntax === PREVIEW_TS ? 'preview' : 'full';
  return { kind, transferSyntax, bytes: part.body };
}

export class PreviewFeed {
  /** What arrived for each index (a preview, or a full frame where the server had none). */
  readonly frames: (Frame | undefined)[];
  readonly signal: AbortSignal;
  streamDone = false;
  private started = false;
  private readonly controller = new AbortController();
  private readonly byLocation = new Map<string, number>();
  private readonly listeners = new Set<PreviewListener>();
  private readonly singles: number[] = [];  // wanted on their own, latest first
  private singlesInFlight = 0;

  constructor(readonly stack: Stack) {
    this.signal = this.controller.signal;
    this.frames = new Array(stack.imageIds.length);
    stack.sops.forEach((sop, index) => this.byLocation.set(`${sop}/${stack.frames[index]}`, index));
  }

  listen(listener: PreviewListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Start the series stream (once). */
  start(): void {
    if (this.started) return;
    this.started = true;
    void this.stream();
  }

  stop(): void {
    this.controller.abort();
    this.listeners.clear();
  }

  arrivedCount(): number {
    return this.frames.reduce((n, frame) => n + (frame ? 1 : 0), 0);
  }

  /** The reader waits for ``index``: fetch its preview on its own, before older wishes. */
  want(index: number): void {
    if (this.frames[index] || this.signal.aborted) return;
    const at = this.singles.indexOf(index);
    if (at >= 0) this.singles.splice(at, 1);
    this.singles.unshift(index);
    if (this.singles.length > SINGLES_KEPT && !this.streamDone) this.singles.length = SINGLES_KEPT;
    this.pumpSingles();
  }

  private async stream(): Promise<void> {
    const { study, series } = this.stack;
    try {
      await readParts(`${DICOMWEB}/studies/${study}/series/${series}/pixeldata`, ACCEPT.preview,
        this.signal, (part) => this.arrived(this.locate(part), frameOf(part, 'preview')));
    } catch (error) {
      if (this.signal.aborted) return;
      console.warn('series previews failed; fetching slices one by one', error);
    }
    this.streamDone = true;
    for (const listener of [...this.listeners]) listener.streamEnded?.();
  }

  private locate(part: Part): number {
    const found = part.location?.match(/\/instances\/([0-9.]+)\/frames\/(\d+)$/);
    return found ? this.byLocation.get(`${found[1]}/${found[2]}`) ?? -1 : -1;
  }

  private pumpSingles(): void {
    while (this.singlesInFlight < SINGLES_AT_ONCE && this.singles.length) {
      const index = this.singles.shift()!;
      if (this.frames[index]) continue;
      this.singlesInFlight++;
      void this.fetchOne(index).finally(() => {
        this.singlesInFlight--;
        this.pumpSingles();
      });
    }
  }

  private async fetchOne(index: number): Promise<void> {
    try {
      await readParts(frameUrl(this.stack, index), ACCEPT.preview, this.signal,
        (part) => this.arrived(index, frameOf(part, 'preview')));
    } catch (error) {
      if (this.signal.aborted) return;
      console.warn(`slice ${index + 1}: preview failed`, error);
      if (!this.streamDone) return;  // the stream may still bring it
      for (const listener of [...this.listeners]) listener.failed?.(index, error);
    }
  }

  private arrived(index: number, frame: Frame): void {
    if (index < 0 || this.signal.aborted || this.frames[index]) return;
    this.frames[index] = frame;
    for (const listener of [...this.listeners]) listener.arrived(index, frame);
  }
}
