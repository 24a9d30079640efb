// One viewport pane: a Cornerstone stack viewport with its preview image, overlays,
// slice slider and loading progress. The app owns the rendering engine and tools.
import {
  Enums, RenderingEngine, utilities as csUtils, type StackViewport, type Types,
} from '@cornerstonejs/core';
import { loadStack, previewUrl, type Stack } from './dicomweb';
import { FrameFeed, type Quality } from './frames';
import { num, t } from './i18n';

export type SideName = 'left' | 'right';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K, props: Partial<HTMLElementTagNameMap[K]> & Record<string, unknown> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, val] of Object.entries(props)) {
    if (key.startsWith('aria-') || key.startsWith('data-') || key === 'role') {
      node.setAttribute(key, String(val));
    } else {
      (node as unknown as Record<string, unknown>)[key] = val;
    }
  }
  node.append(...children);
  return node;
}
export { el };

export class Pane {
  readonly root: HTMLElement;
  readonly element: HTMLDivElement;   // the Cornerstone element
  readonly slider: HTMLInputElement;
  private readonly preview: HTMLImageElement;
  private readonly label: HTMLElement;
  private readonly sliceText: HTMLElement;
  private readonly windowText: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly progressText: HTMLElement;
  private readonly badge: HTMLElement;
  stack: Stack | null = null;
  feed: FrameFeed | null = null;
  shown = false;            // Cornerstone has drawn an image (a preview or full quality)
  private pendingUpdate = 0;
  onIndexChange: (pane: Pane, index: number) => void = () => {};
  /** The user acted on this pane (pointer, wheel, key, slider): it drives any linked pane. */
  onInteract: (pane: Pane) => void = () => {};

  constructor(readonly side: SideName, readonly engine: RenderingEngine, public title: string) {
    this.element = el('div', {
      className: 'viewport', tabIndex: 0, role: 'img', 'aria-label': title,
    });
    this.element.addEventListener('contextmenu', (e) => e.preventDefault());
    this.preview = el('img', { className: 'preview', alt: '', hidden: true, decoding: 'async' });
    this.preview.addEventListener('load', () => this.mark('preview'));
    this.sliceText = el('div', { className: 'overlay tl', 'aria-live': 'off' });
    this.windowText = el('div', { className: 'overlay bl' });
    this.label = el('div', { className: 'overlay tr' }, title);
    this.badge = el('div', {
      className: 'quality-badge', hidden: true, title: t('pane.previewBadge.long'),
      'aria-label': t('pane.previewBadge.long'),
    }, t('pane.previewBadge'));
    this.progress = el('progress', { max: 1, value: 0 });
    this.progressText = el('span', { className: 'progress-text' });
    const progressBox = el('div', { className: 'progress', role: 'status' },
      this.progress, this.progressText);
    this.slider = el('input', {
      type: 'range', className: 'slider', min: '1', max: '1', step: '1', value: '1',
      'aria-label': t('pane.slider'), disabled: true,
    });
    const stage = el('div', { className: 'stage' }, this.element, this.preview, this.sliceText,
      this.windowText, this.label, progressBox, this.badge);
    this.root = el('section', { className: 'pane', 'data-side': side, 'aria-label': title },
      stage, this.slider);
    this.slider.addEventListener('input', () => {
      this.onInteract(this);
      void this.setIndex(Number(this.slider.value) - 1);
    });
    for (const type of ['pointerdown', 'wheel', 'touchstart', 'keydown', 'focusin']) {
      this.root.addEventListener(type, () => this.onInteract(this), { passive: true, capture: true });
    }
    this.element.addEventListener('keydown', (e) => this.onKey(e));
    this.element.addEventListener(Enums.Events.STACK_NEW_IMAGE, ((e: CustomEvent) => {
      this.firstImageShown();
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
   * HTJ2K preview and at full quality (frames.ts).
   */
  async open(study: string, series: string, placeholder: string | null = null): Promise<void> {
    this.shown = false;
    this.feed?.stop();
    this.feed = null;
    this.marked = new Set();
    if (placeholder) this.showPreview(placeholder);  // already fetched by the boot screen
    const stack = await loadStack(study, series);
    this.stack = stack;
    const start = this.initialIndex();
    // The exact slice, small and server-rendered; swapped in once it has arrived.
    const exact = new Image();
    exact.onload = () => { if (!this.shown) this.showPreview(exact.src); };
    exact.src = previewUrl(stack, start);
    this.slider.max = String(stack.imageIds.length);
    this.slider.value = String(start + 1);
    this.slider.disabled = stack.imageIds.length < 2;
    this.refresh();
    const feed = this.feed = new FrameFeed(stack, start);
    feed.onProgress = () => this.scheduleRefresh();
    feed.onUpgrade = (index, image) => this.upgraded(index, image);
    await this.viewport.setStack(stack.imageIds, start);
    feed.start();
    this.firstImageShown();
    this.refresh();
  }

  /** Full quality arrived for a slice: if it is the one on screen, draw it now. */
  private upgraded(index: number, image: Types.IImage): void {
    if (!this.shown || !this.stack || this.viewport.getCurrentImageIdIndex() !== index) return;
    this.viewport.successCallback(this.stack.imageIds[index], image);
  }

  private showPreview(url: string): void {
    this.preview.src = url;
    this.preview.alt = t('pane.preview');
    this.preview.hidden = false;
  }

  /** Performance marks for benchmarks/bench_viewer.py, once per series: cf-preview-left
   * (server-rendered JPEG), cf-first-image-left (Cornerstone drew a slice), cf-first-full-left
   * (the slice on screen at full quality), cf-all-preview-left, cf-all-full-left. */
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
    this.shown = true;
    this.preview.hidden = true;
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

  /** Overlays, slider, progress and the accessible description follow the viewport. */
  refresh(): void {
    const count = this.count();
    if (!count) return;
    const index = this.targetIndex();
    const z = this.z(index);
    const slice = t('pane.slice', { index: index + 1, count });
    this.sliceText.textContent = Number.isFinite(z)
      ? `${slice} · ${t('pane.position', { z: num(z) })}` : slice;
    if (document.activeElement !== this.slider) this.slider.value = String(index + 1);
    this.slider.setAttribute('aria-valuetext', slice);
    this.element.setAttribute('aria-label', t('pane.viewport', {
      label: this.title, index: index + 1, count,
    }));
    if (this.shown) {
      const wl = this.windowLevel();
      const zoom = this.viewport.getZoom();
      if (wl) {
        this.windowText.textContent = `${t('pane.window', {
          width: num(wl.width, 0), center: num(wl.center, 0),
        })} · ${t('pane.zoom', { zoom: Math.round(zoom * 100) })}`;
      }
    }
    const { preview, full } = this.counts();
    this.progress.max = 2 * count;
    this.progress.value = preview + full;
    this.progressText.textContent = preview < count ? t('pane.loading', { loaded: preview, total: count })
      : full < count ? t('pane.loadingFull', { full, total: count }) : t('pane.loaded', { total: count });
    this.root.classList.toggle('complete', full >= count);
    const quality = this.quality();
    this.badge.hidden = quality !== 'preview';
    this.root.dataset.quality = quality ?? '';
    if (quality === 'full') this.mark('first-full');
    if (preview >= count) this.mark('all-preview');
    if (full >= count) this.mark('all-full');
  }

  setTitle(title: string): void {
    this.title = title;
    this.label.textContent = title;
    this.root.setAttribute('aria-label', title);
    this.refresh();
  }

  voi(): Types.VOIRange | undefined {
    return this.shown ? this.viewport.getProperties().voiRange : undefined;
  }

  /** The window as DICOM states it (width/centre of the linear VOI function). */
  windowLevel(): { width: number; center: number } | null {
    const range = this.voi();
    if (!range) return null;
    const { windowWidth, windowCenter } = csUtils.windowLevel.toWindowLevel(range.lower, range.upper);
    return { width: windowWidth, center: windowCenter };
  }
}
