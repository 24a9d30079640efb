// Progressive loading of a stack into Cornerstone's cache (issue 5): every slice first as
// a lossy HTJ2K preview (previews.ts: one series request, the slice on screen on its own),
// then at full quality (lossless HTJ2K …4.201, ~40% of raw), nearest the slice on screen
// first. The server transcodes on request (services/transcode.py). Cached images carry
// imageQualityStatus LOSSY or FULL_RESOLUTION, so the pane can say which one is on screen.
import { Enums, cache, imageLoader, type Types } from '@cornerstonejs/core';
import { createImage, wadors } from '@cornerstonejs/dicom-image-loader';
import { SCHEME, type Stack } from './dicomweb';
import { readParts } from './multipart';
import {
  ACCEPT, PreviewFeed, frameOf, frameUrl, type Frame, type PreviewListener, type Quality,
} from './previews';

const FULL_AT_ONCE = 3;     // full-quality frames in flight once every preview is in
const DECODES_AT_ONCE = 2;  // keeps a decoder busy while the main thread caches the last one
const FULL_WAITING = 6;     // full frames fetched but not decoded yet: fetch no further ahead

export type { Quality };
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

/** The series' metadata, for the WADO-RS loader's metadata provider (createImage reads it). */
export function registerStack(stack: Stack): void {
  stack.imageIds.forEach((imageId, index) => {
    wadors.metaDataManager.add(imageId, stack.instances[index] as never);
  });
}

/** What the cache holds for an image: a preview, full quality, or nothing yet. */
export function qualityOf(imageId: string): Quality {
  const status = cache.getImageQuality(imageId);
  if (status === undefined) return null;
  return status >= ImageQualityStatus.FULL_RESOLUTION ? 'full' : 'preview';
}

export class FrameFeed implements PreviewListener {
  private readonly full = new Map<number, Frame>();   // until decoded into the cache
  private readonly waiters = new Map<number, Waiter[]>();
  private readonly fetchingFull = new Set<number>();
  private readonly broken = new Set<number>();  // full quality failed: not asked again
  private readonly undecoded = new Set<number>();  // previews in, not yet in the cache
  private readonly decoding = new Set<number>();
  private readonly controller = new AbortController();
  private focusIndex: number;
  /** A slice now has full quality in the cache (the pane redraws it if it is on screen). */
  onUpgrade: (index: number, image: Types.IImage) => void = () => {};
  /** Something was added to the cache (progress changed). */
  onProgress: () => void = () => {};

  /** ``previews`` may already be streaming (the first viewer started it): what it has is
   * decoded into the cache, what it brings later too. */
  constructor(readonly stack: Stack, focus: number,
              readonly previews: PreviewFeed = new PreviewFeed(stack)) {
    this.focusIndex = focus;
    stack.imageIds.forEach((imageId, index) => feeds.set(imageId, [this, index]));
    this.previews.listen(this);
    this.previews.frames.forEach((frame, index) => {
      if (frame) this.arrived(index, frame);
    });
  }

  /** Start (or join) the series' preview stream and the full-quality pass. */
  start(): void {
    this.previews.start();
    this.pumpFull();
  }

  stop(): void {
    this.controller.abort();
    this.previews.stop();
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
    const ready = this.full.get(index) ?? this.previews.frames[index];
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      this.waiters.set(index, [...(this.waiters.get(index) ?? []), { resolve, reject }]);
      this.previews.want(index);
    });
  }

  // --- what the preview feed reports ------------------------------------------------------

  streamEnded(): void {
    for (const index of this.waiters.keys()) this.previews.want(index);  // what the stream missed
    this.pumpFull();
  }

  failed(index: number, error: unknown): void {
    this.settle(index, undefined, error);
  }

  // --- full quality ------------------------------------------------------------------------

  private pumpFull(): void {
    for (;;) {
      // While previews stream in, only the slice on screen gets its full quality.
      const limit = this.previews.streamDone ? FULL_AT_ONCE : 1;
      if (this.fetchingFull.size >= limit || this.full.size >= FULL_WAITING
        || this.controller.signal.aborted) return;
      const index = this.nextFull();
      if (index < 0) return;
      this.fetchingFull.add(index);
      void this.fetchFull(index).finally(() => {
        this.fetchingFull.delete(index);
        this.pumpFull();
      });
    }
  }

  private nextFull(): number {
    let best = -1;
    let distance = Infinity;
    const candidates = this.previews.streamDone ? this.stack.imageIds.keys() : [this.focusIndex];
    for (const index of candidates) {
      const d = Math.abs(index - this.focusIndex);
      if (d >= distance || this.fetchingFull.has(index) || this.full.has(index)
        || this.broken.has(index) || this.quality(index) === 'full') continue;
      best = index;
      distance = d;
    }
    return best;
  }

  // --- arrivals ------------------------------------------------------------------------------

  private async fetchFull(index: number): Promise<void> {
    try {
      await readParts(frameUrl(this.stack, index), ACCEPT.full, this.controller.signal,
        (part) => this.arrived(index, frameOf(part, 'full')));
    } catch (error) {
      if (this.controller.signal.aborted) return;
      console.warn(`slice ${index + 1}: full quality failed`, error);
      this.broken.add(index);
    }
  }

  private settle(index: number, frame?: Frame, error?: unknown): void {
    for (const waiter of this.waiters.get(index) ?? []) {
      if (frame) waiter.resolve(frame);
      else waiter.reject(error);
    }
    this.waiters.delete(index);
  }

  /** A frame's bytes are in: hand them to whoever waits, then decode them into the cache.
   * Raw frames (the fallback) and anything but a lossy HTJ2K preview are full quality. */
  arrived(index: number, frame: Frame): void {
    if (index < 0 || this.controller.signal.aborted) return;
    if (frame.kind === 'preview') this.undecoded.add(index);
    else this.full.set(index, frame);
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
        this.broken.add(index);
        console.warn(`slice ${index + 1}: full quality could not be decoded`, error);
      }
    }
    this.full.delete(index);
    this.onProgress();
  }
}
