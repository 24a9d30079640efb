// One viewport pane: a Cornerstone stack viewport with its preview image, overlays,
// slice slider and loading progress. The app owns the rendering engine and tools.
import {
  Enums, RenderingEngine, cache, eventTarget, utilities as csUtils, type StackViewport, type Types,
} from '@cornerstonejs/core';
import { utilities as toolUtils } from '@cornerstonejs/tools';
import { loadStack, previewUrl, type Stack } from './dicomweb';
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
  stack: Stack | null = null;
  shown = false;            // a full-quality image has been displayed
  private loaded = new Set<string>();
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
    this.progress = el('progress', { max: 1, value: 0 });
    this.progressText = el('span', { className: 'progress-text' });
    const progressBox = el('div', { className: 'progress', role: 'status' },
      this.progress, this.progressText);
    this.slider = el('input', {
      type: 'range', className: 'slider', min: '1', max: '1', step: '1', value: '1',
      'aria-label': t('pane.slider'), disabled: true,
    });
    const stage = el('div', { className: 'stage' }, this.element, this.preview, this.sliceText,
      this.windowText, this.label, progressBox);
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
      this.onIndexChange(this, e.detail.imageIdIndex);
    }) as EventListener);
    this.element.addEventListener(Enums.Events.STACK_VIEWPORT_SCROLL, ((e: CustomEvent) => {
      this.onIndexChange(this, e.detail.newImageIdIndex);
    }) as EventListener);
    for (const type of [Enums.Events.VOI_MODIFIED, Enums.Events.CAMERA_MODIFIED]) {
      this.element.addEventListener(type, () => this.scheduleRefresh());
    }
    eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, ((e: CustomEvent) => {
      const id = e.detail?.image?.imageId;
      if (this.stack && id && this.stack.imageIds.includes(id)) {
        this.loaded.add(id);
        this.scheduleRefresh();
      }
    }) as EventListener);
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

  loadedCount(): number {
    if (!this.stack) return 0;
    let n = 0;
    for (const id of this.stack.imageIds) if (this.loaded.has(id) || cache.isLoaded(id)) n++;
    return n;
  }

  /** Load a series: metadata first, then a server-rendered preview, then full frames. */
  async open(study: string, series: string, placeholder: string | null = null): Promise<void> {
    this.shown = false;
    this.loaded = new Set();
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
    await this.viewport.setStack(stack.imageIds, start);
    toolUtils.stackPrefetch.enable(this.element);
    this.firstImageShown();
    this.refresh();
  }

  private showPreview(url: string): void {
    this.preview.src = url;
    this.preview.alt = t('pane.preview');
    this.preview.hidden = false;
  }

  /** Performance marks (cf-preview-left, cf-first-image-left, cf-all-loaded-left) for
   * benchmarks/bench_viewer.py; once per series. */
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
    const loaded = this.loadedCount();
    this.progress.max = count;
    this.progress.value = loaded;
    this.progressText.textContent = loaded < count
      ? t('pane.loading', { loaded, total: count }) : t('pane.loaded', { total: count });
    this.root.classList.toggle('complete', loaded >= count);
    if (loaded >= count) this.mark('all-loaded');
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
