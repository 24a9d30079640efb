// One viewport pane: a Cornerstone stack viewport in a PaneView (paneview.ts: overlays,
// slider, progress). The app owns the rendering engine and tools. A pane can take over
// from the first viewer (quickview.ts) at the slice and window the reader has reached.
import {
  Enums, RenderingEngine, utilities as csUtils, type StackViewport, type Types,
} from '@cornerstonejs/core';
import { loadStack, previewUrl, type Stack } from './dicomweb';
import { FrameFeed, registerStack, type Quality } from './frames';
import { PaneView, el, type SideName } from './paneview';
import type { PreviewFeed } from './previews';
import { toWindowLevel, type Range, type WindowLevel } from './windowing';

export { el, type SideName };

/** The first viewer, handing its series over to Cornerstone. */
export interface Handover {
  stack: Stack;
  previews: PreviewFeed;
  /** The slice the reader is on now. */
  index(): number;
  /** Stop taking input; where the reader is and the window shown (modality values). */
  freeze(): { index: number; range: Range };
  /** Cornerstone has drawn that slice with that window: the first viewer steps aside. */
  release(): void;
}

const HANDOVER_RENDER_MS = 2000;  // never wait longer for Cornerstone's first render event

export class Pane {
  readonly view: PaneView;
  readonly root: HTMLElement;
  readonly element: HTMLDivElement;   // the Cornerstone element
  readonly slider: HTMLInputElement;
  stack: Stack | null = null;
  feed: FrameFeed | null = null;
  shown = false;            // Cornerstone has drawn an image (a preview or full quality)
  private handover: Handover | null = null;
  private pendingUpdate = 0;
  onIndexChange: (pane: Pane, index: number) => void = () => {};
  /** The user acted on this pane (pointer, wheel, key, slider): it drives any linked pane. */
  onInteract: (pane: Pane) => void = () => {};

  constructor(readonly side: SideName, readonly engine: RenderingEngine, public title: string,
              view: PaneView | null = null) {
    this.view = view ?? new PaneView(side, title);
    this.view.setTitle(title);
    this.view.onPreviewShown = () => this.mark('preview');
    this.root = this.view.root;
    this.element = this.view.element;
    this.slider = this.view.slider;
    this.slider.addEventListener('input', () => {
      this.onInteract(this);
      void this.setIndex(Number(this.slider.value) - 1);
    });
    for (const type of ['pointerdown', 'wheel', 'touchstart', 'keydown', 'focusin']) {
      this.root.addEventListener(type, () => this.onInteract(this), { passive: true, capture: true });
    }
    this.element.addEventListener('keydown', (e) => this.onKey(e));
    this.element.addEventListener(Enums.Events.STACK_NEW_IMAGE, ((e: CustomEvent) => {
      if (!this.handover) this.firstImageShown();
      this.refresh();
      this.feed?.focus(e.detail.imageIdIndex);
      this.onIndexChange(this, e.detail.imageIdIndex);
    }) as EventListener);
    this.element.addEventListener(Enums.Events.STACK_VIEWPORT_SCROLL, ((e: CustomEvent) => {
      this.feed?.focus(e.detail.newImageIdIndex);
      this.onIndexChange(this, e.detail.newImageIdIndex);
    }) as EventListener);
    for (const type of [Enums.Events.VOI_MODIFIED, Enums.Events.CAMERA_MODIFIED]) {
      this.element.addEventListener(type, () => this.scheduleRefresh());
    }
  }

  get viewport(): StackViewport {
    return this.engine.getViewport(this.side) as StackViewport;
  }

  index(): number {
    if (this.handover) return this.handover.index();
    return this.shown ? this.viewport.getCurrentImageIdIndex() : this.initialIndex();
  }

  /** The target index (where scrolling is heading, even before that image arrives). */
  targetIndex(): number {
    const vp = this.viewport as unknown as { targetImageIdIndex?: number };
    return this.shown && typeof vp.targetImageIdIndex === 'number'
      ? vp.targetImageIdIndex : this.index();
  }

  count(): number {
    return this.stack?.imageIds.length ?? 0;
  }

  z(index = this.index()): number {
    return this.stack?.z[index] ?? Number.NaN;
  }

  private initialIndex(): number {
    return Math.floor(this.count() / 2);
  }

  /** Slices in memory at least as a preview, and at full quality. */
  counts(): { preview: number; full: number; total: number } {
    return this.feed?.counts() ?? { preview: 0, full: 0, total: this.count() };
  }

  /** Quality of the image on screen (what Cornerstone draws, not what is cached). */
  quality(): Quality {
    if (!this.shown) return null;
    const status = this.viewport.getCornerstoneImage()?.imageQualityStatus;
    if (status === undefined) return null;
    return status >= Enums.ImageQualityStatus.FULL_RESOLUTION ? 'full' : 'preview';
  }

  /**
   * Load a series: metadata, a server-rendered JPEG of the slice, then every slice as an
   * HTJ2K preview and at full quality (frames.ts). With a ``handover`` the first viewer
   * has the metadata and the previews already, and Cornerstone starts where it is.
   */
  async open(study: string, series: string, placeholder: string | null = null,
             handover: Handover | null = null): Promise<void> {
    this.shown = false;
    this.feed?.stop();
    this.feed = null;
    this.marked = new Set();
    if (this.handover && this.handover !== handover) {  // another series before the takeover
      this.handover.freeze();
      this.handover.release();
    }
    this.handover = handover;
    if (placeholder) this.view.showPreview(placeholder);  // already fetched by the boot screen
    const stack = handover?.stack ?? await loadStack(study, series);
    registerStack(stack);
    this.stack = stack;
    const start = this.index();
    if (!handover) {
      // The exact slice, small and server-rendered; swapped in once it has arrived.
      const exact = new Image();
      exact.onload = () => { if (!this.shown) this.view.showPreview(exact.src); };
      exact.src = previewUrl(stack, start);
      this.view.setCount(stack.imageIds.length, start);
    }
    this.refresh();
    const feed = this.feed = new FrameFeed(stack, start, handover?.previews);
    feed.onProgress = () => this.scheduleRefresh();
    feed.onUpgrade = (index, image) => this.upgraded(index, image);
    await this.viewport.setStack(stack.imageIds, start);
    feed.start();
    if (handover) await this.takeOver(handover);
    this.firstImageShown();
    this.refresh();
  }

  /** Show the first viewer's slice and window, then let it step aside: no visible jump. */
  private async takeOver(handover: Handover): Promise<void> {
    const { index, range } = handover.freeze();
    if (index !== this.viewport.getCurrentImageIdIndex()) await this.viewport.setImageIdIndex(index);
    const drawn = new Promise<void>((resolve) => {
      this.element.addEventListener(Enums.Events.IMAGE_RENDERED, () => resolve(), { once: true });
      setTimeout(resolve, HANDOVER_RENDER_MS);
    });
    this.viewport.setProperties({ voiRange: { ...range } });
    this.viewport.render();
    await drawn;
    this.handover = null;
    handover.release();
  }

  /** Full quality arrived for a slice: if it is the one on screen, draw it now. */
  private upgraded(index: number, image: Types.IImage): void {
    if (!this.shown || !this.stack || this.viewport.getCurrentImageIdIndex() !== index) return;
    this.viewport.successCallback(this.stack.imageIds[index], image);
  }

  /** Performance marks for benchmarks/bench_viewer.py, once per series: cf-preview-left
   * (server-rendered JPEG), cf-first-image-left (Cornerstone drew a slice), cf-first-full-left
   * (the slice on screen at full quality), cf-all-preview-left, cf-all-full-left; and
   * cf-interactive-left where the first viewer did not set it (it can be scrolled and
   * windowed from here on). */
  private marked = new Set<string>();
  private mark(what: string): void {
    if (this.marked.has(what)) return;
    this.marked.add(what);
    const name = `cf-${what}-${this.side}`;
    if (!performance.getEntriesByName(name).length) performance.mark(name);
  }

  private firstImageShown(): void {
    if (this.shown) return;
    this.mark('first-image');
    this.mark('interactive');
    this.shown = true;
    this.view.hidePreview();
    this.root.classList.add('shown');
  }

  async setIndex(index: number): Promise<void> {
    if (!this.stack) return;
    const clamped = Math.max(0, Math.min(this.count() - 1, Math.round(index)));
    if (!this.shown) return;
    if (clamped === this.viewport.getCurrentImageIdIndex()) return;
    this.scheduleRefresh();
    await this.viewport.setImageIdIndex(clamped);
  }

  private onKey(e: KeyboardEvent): void {
    const steps: Record<string, number> = {
      ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10,
    };
    if (e.key in steps) {
      e.preventDefault();
      void this.setIndex(this.targetIndex() + steps[e.key]);
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      void this.setIndex(e.key === 'Home' ? 0 : this.count() - 1);
    }
  }

  scheduleRefresh(): void {
    if (this.pendingUpdate) return;
    this.pendingUpdate = requestAnimationFrame(() => {
      this.pendingUpdate = 0;
      this.refresh();
    });
  }

  /** Overlays, slider, progress and the accessible description follow the viewport (the
   * first viewer keeps them while it is on screen). */
  refresh(): void {
    const count = this.count();
    if (!count || this.handover) return;
    const index = this.targetIndex();
    this.view.showSlice(index, count, this.z(index));
    if (this.shown) {
      const wl = this.windowLevel();
      if (wl) this.view.showWindow(wl, this.viewport.getZoom());
    }
    const { preview, full } = this.counts();
    // Previews in but not decoded yet can be shown too: the count never goes back at the
    // takeover from the first viewer, which counts arrivals.
    this.view.showProgress(Math.max(preview, this.feed?.previews.arrivedCount() ?? 0), full, count);
    const quality = this.quality();
    this.view.showQuality(quality);
    if (quality === 'full') this.mark('first-full');
    if (preview >= count) this.mark('all-preview');
    if (full >= count) this.mark('all-full');
  }

  setTitle(title: string): void {
    this.title = title;
    this.view.setTitle(title);
    this.refresh();
  }

  voi(): Types.VOIRange | undefined {
    return this.shown ? this.viewport.getProperties().voiRange : undefined;
  }

  /** The pixel index (column, row) under a canvas position (CSS px) on the slice on screen. */
  canvasToPixel(x: number, y: number): [number, number] {
    const vp = this.viewport;
    const [column, row] = csUtils.worldToImageCoords(vp.getCurrentImageId(), vp.canvasToWorld([x, y]))
      .map((v) => v - 0.5);
    return [column, row];
  }

  /** The window as DICOM states it (width/centre of the linear VOI function). */
  windowLevel(): WindowLevel | null {
    const range = this.voi();
    return range ? toWindowLevel(range) : null;
  }
}
