// Progressive loading of a stack (issue 5): every slice first as a small lossy HTJ2K
// preview (transfer syntax …4.203, ~6.5 KB for a 512² CT slice instead of 512 KB), then
// at full quality (lossless HTJ2K …4.201, ~40% of raw), nearest the slice on screen
// first. The server transcodes on request (services/transcode.py); raw frames are the
// named fallback for what it cannot transcode (colour). Previews of the whole series come
// in one series pixel data request (PS3.18 §10.4.1.1.6) rather than hundreds of round
// trips; the slice the reader looks at is fetched on its own if the stream has not got
// there yet. Cached images carry imageQualityStatus LOSSY or FULL_RESOLUTION, so the pane
// can say which one is on screen.
import { Enums, cache, imageLoader, type Types } from '@cornerstonejs/core';
import { createImage } from '@cornerstonejs/dicom-image-loader';
import { DICOMWEB, SCHEME, type Stack } from './dicomweb';
import { readParts, transferSyntaxOf, type Part } from './multipart';

const PREVIEW_TS = '1.2.840.10008.1.2.4.203';
const LOSSLESS_TS = '1.2.840.10008.1.2.4.201';
const RAW = 'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.5';
const ACCEPT: Record<Kind, string> = {
  preview: `multipart/related; type="image/jphc"; transfer-syntax=${PREVIEW_TS}, ${RAW}`,
  full: `multipart/related; type="image/jphc"; transfer-syntax=${LOSSLESS_TS}, ${RAW}`,
};
const FULL_AT_ONCE = 3;     // full-quality frames in flight once every preview is in
const SINGLES_AT_ONCE = 2;  // previews fetched one by one, for the slice on screen
const SINGLES_KEPT = 4;     // scrolled past faster than that: the series stream brings them
const DECODES_AT_ONCE = 2;  // keeps a decoder busy while the main thread caches the last one
const FULL_WAITING = 6;     // full frames fetched but not decoded yet: fetch no further ahead

type Kind = 'preview' | 'full';
export type Quality = Kind | null;
interface Frame { kind: Kind; transferSyntax: string; bytes: Uint8Array }
interface Waiter { resolve: (frame: Frame) => void; reject: (error: unknown) => void }

const { ImageQualityStatus } = Enums;
const feeds = new Map<string, [FrameFeed, number]>();  // imageId → its feed and index

/** The Cornerstone image loader for ``cfweb:`` ids: the best frame the feed has. */
function loadFrame(imageId: string, options: Record<string, unknown> = {}): Types.IImageLoadObject {
  const found = feeds.get(imageId);
  if (!found) return { promise: Promise.reject(new Error(`${imageId} is not being loaded`)) };
  const [feed, index] = found;
  const promise = feed.frame(index).then(async (frame) => {
    const image = await createImage(imageId, frame.bytes, frame.transferSyntax,
      { ...options, useRGBA: false }) as Types.IImage;
    image.imageQualityStatus = frame.kind === 'full'
      ? ImageQualityStatus.FULL_RESOLUTION : ImageQualityStatus.LOSSY;
    return image;
  });
  return { promise } as Types.IImageLoadObject;
}

export function registerFrameLoader(): void {
  imageLoader.registerImageLoader(SCHEME, loadFrame as unknown as Types.ImageLoaderFn);
}

/** What the cache holds for an image: a preview, full quality, or nothing yet. */
export function qualityOf(imageId: string): Quality {
  const status = cache.getImageQuality(imageId);
  if (status === undefined) return null;
  return status >= ImageQualityStatus.FULL_RESOLUTION ? 'full' : 'preview';
}

export class FrameFeed {
  private readonly previews: (Frame | undefined)[];  // kept (a few KB each) for re-decoding
  private readonly full = new Map<number, Frame>();   // until decoded into the cache
  private readonly waiters = new Map<number, Waiter[]>();
  private readonly byLocation = new Map<string, number>();
  private readonly fetchingFull = new Set<number>();
  private readonly failed = new Set<number>();
  private readonly undecoded = new Set<number>();  // previews in, not yet in the cache
  private readonly decoding = new Set<number>();
  private readonly singles: number[] = [];  // previews wanted on their own, latest first
  private singlesInFlight = 0;
  private streamDone = false;
  private readonly controller = new AbortController();
  private focusIndex: number;
  /** A slice now has full quality in the cache (the pane redraws it if it is on screen). */
  onUpgrade: (index: number, image: Types.IImage) => void = () => {};
  /** Something was added to the cache (progress changed). */
  onProgress: () => void = () => {};

  constructor(readonly stack: Stack, focus: number) {
    this.focusIndex = focus;
    this.previews = new Array(stack.imageIds.length);
    stack.imageIds.forEach((imageId, index) => {
      feeds.set(imageId, [this, index]);
      this.byLocation.set(`${stack.sops[index]}/${stack.frames[index]}`, index);
    });
  }

  /** Start the series' preview stream and the full-quality pass. */
  start(): void {
    void this.stream();
    this.pumpFull();
  }

  stop(): void {
    this.controller.abort();
    for (const imageId of this.stack.imageIds) {
      if (feeds.get(imageId)?.[0] === this) feeds.delete(imageId);
    }
  }

  /** The reader is at ``index`` now: full quality goes there first. */
  focus(index: number): void {
    this.focusIndex = index;
    this.pumpFull();
  }

  quality(index: number): Quality {
    const imageId = this.stack.imageIds[index];
    return imageId ? qualityOf(imageId) : null;
  }

  counts(): { preview: number; full: number; total: number } {
    let preview = 0;
    let full = 0;
    for (let i = 0; i < this.stack.imageIds.length; i++) {
      const quality = this.quality(i);
      if (quality) preview++;
      if (quality === 'full') full++;
    }
    return { preview, full, total: this.stack.imageIds.length };
  }

  /** The best frame there is for ``index``; waits (and asks for its preview) if none yet. */
  frame(index: number): Promise<Frame> {
    const ready = this.full.get(index) ?? this.previews[index];
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      this.waiters.set(index, [...(this.waiters.get(index) ?? []), { resolve, reject }]);
      this.want(index);
    });
  }

  // --- previews --------------------------------------------------------------------------

  private async stream(): Promise<void> {
    const { study, series } = this.stack;
    try {
      await readParts(`${DICOMWEB}/studies/${study}/series/${series}/pixeldata`, ACCEPT.preview,
        this.controller.signal, (part) => this.arrived(this.locate(part), part, 'preview'));
    } catch (error) {
      if (this.controller.signal.aborted) return;
      console.warn('series previews failed; fetching slices one by one', error);
    }
    this.streamDone = true;
    for (const index of this.waiters.keys()) this.want(index);  // anything the stream missed
    this.pumpFull();
  }

  private locate(part: Part): number {
    const found = part.location?.match(/\/instances\/([0-9.]+)\/frames\/(\d+)$/);
    return found ? this.byLocation.get(`${found[1]}/${found[2]}`) ?? -1 : -1;
  }

  private want(index: number): void {
    if (this.previews[index] || this.full.has(index)) return;
    const at = this.singles.indexOf(index);
    if (at >= 0) this.singles.splice(at, 1);
    this.singles.unshift(index);
    if (this.singles.length > SINGLES_KEPT && !this.streamDone) this.singles.length = SINGLES_KEPT;
    this.pumpSingles();
  }

  private pumpSingles(): void {
    while (this.singlesInFlight < SINGLES_AT_ONCE && this.singles.length) {
      const index = this.singles.shift()!;
      if (this.previews[index] || this.full.has(index)) continue;
      this.singlesInFlight++;
      void this.fetchOne(index, 'preview').finally(() => {
        this.singlesInFlight--;
        this.pumpSingles();
      });
    }
  }

  // --- full quality ------------------------------------------------------------------------

  private pumpFull(): void {
    for (;;) {
      // While previews stream in, only the slice on screen gets its full quality.
      const limit = this.streamDone ? FULL_AT_ONCE : 1;
      if (this.fetchingFull.size >= limit || this.full.size >= FULL_WAITING
        || this.controller.signal.aborted) return;
      const index = this.nextFull();
      if (index < 0) return;
      this.fetchingFull.add(index);
      void this.fetchOne(index, 'full').finally(() => {
        this.fetchingFull.delete(index);
        this.pumpFull();
      });
    }
  }

  private nextFull(): number {
    let best = -1;
    let distance = Infinity;
    const candidates = this.streamDone ? this.stack.imageIds.keys() : [this.focusIndex];
    for (const index of candidates) {
      const d = Math.abs(index - this.focusIndex);
      if (d >= distance || this.fetchingFull.has(index) || this.full.has(index)
        || this.failed.has(index) || this.quality(index) === 'full') continue;
      best = index;
      distance = d;
    }
    return best;
  }

  // --- arrivals ------------------------------------------------------------------------------

  private async fetchOne(index: number, kind: Kind): Promise<void> {
    const { study, series, sops, frames } = this.stack;
    const url = `${DICOMWEB}/studies/${study}/series/${series}/instances/${sops[index]}`
      + `/frames/${frames[index]}`;
    try {
      await readParts(url, ACCEPT[kind], this.controller.signal,
        (part) => this.arrived(index, part, kind));
    } catch (error) {
      if (this.controller.signal.aborted) return;
      console.warn(`slice ${index + 1}: ${kind} quality failed`, error);
      if (kind === 'full') this.failed.add(index);
      else if (this.streamDone) this.settle(index, undefined, error);  // nothing else will come
    }
  }

  private settle(index: number, frame?: Frame, error?: unknown): void {
    for (const waiter of this.waiters.get(index) ?? []) {
      if (frame) waiter.resolve(frame);
      else waiter.reject(error);
    }
    this.waiters.delete(index);
  }

  /** A frame's bytes are in: hand them to whoever waits, then decode them into the cache. */
  private arrived(index: number, part: Part, asked: Kind): void {
    if (index < 0 || this.controller.signal.aborted) return;
    const transferSyntax = transferSyntaxOf(part.contentType);
    // Raw frames (the fallback) and anything but a lossy HTJ2K preview are full quality.
    const kind: Kind = asked === 'preview' && transferSyntax === PREVIEW_TS ? 'preview' : 'full';
    const frame = { kind, transferSyntax, bytes: part.body };
    if (kind === 'preview') {
      if (this.previews[index]) return;
      this.previews[index] = frame;
      this.undecoded.add(index);
    } else {
      this.full.set(index, frame);
    }
    this.settle(index, frame);
    this.decodeNext();
  }

  // --- decoding into Cornerstone's cache ---------------------------------------------------

  private decodeNext(): void {
    while (this.decoding.size < DECODES_AT_ONCE && !this.controller.signal.aborted) {
      const index = this.nextDecode();
      if (index < 0) return;
      this.decoding.add(index);
      void this.cacheFrame(index).finally(() => {
        this.decoding.delete(index);
        this.decodeNext();
        this.pumpFull();
      });
    }
  }

  /** Full frames first, then previews, each nearest the slice on screen (on a fast link
   * most previews are never decoded: their full frame is there first). */
  private nextDecode(): number {
    const nearest = (indices: Iterable<number>): number => {
      let best = -1;
      for (const index of indices) {
        if (this.decoding.has(index)) continue;
        if (best < 0 || Math.abs(index - this.focusIndex) < Math.abs(best - this.focusIndex)) {
          best = index;
        }
      }
      return best;
    };
    const full = nearest(this.full.keys());
    return full >= 0 ? full : nearest(this.undecoded);
  }

  private async cacheFrame(index: number): Promise<void> {
    const imageId = this.stack.imageIds[index];
    const pending = cache.getImageLoadObject(imageId);
    this.undecoded.delete(index);
    if (!this.full.has(index)) {
      if (!pending && !cache.getImage(imageId)) {
        await imageLoader.loadAndCacheImage(imageId, { priority: 0, requestType: 'prefetch' } as never)
          .catch(() => undefined);
      }
      this.onProgress();
      return;
    }
    await pending?.promise.catch(() => undefined);  // a preview being decoded: upgrade it after
    if (this.quality(index) !== 'full') {
      // Keep the preview on screen while the full frame decodes (Cornerstone's partial image).
      if (cache.isLoaded(imageId)) cache.setPartialImage(imageId, undefined, true);
      try {
        const image = await imageLoader.loadAndCacheImage(imageId, {
          priority: 0, requestType: 'prefetch',
        } as never);
        this.onUpgrade(index, image);
      } catch (error) {
        this.failed.add(index);
        console.warn(`slice ${index + 1}: full quality could not be decoded`, error);
      }
    }
    this.full.delete(index);
    this.onProgress();
  }
}
