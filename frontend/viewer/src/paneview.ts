// What one pane shows around its image: the stage (the element Cornerstone draws into, the
// first viewer's canvas above it, the server-rendered preview), the overlays, the loading
// progress, the quality badge and the slice slider. No Cornerstone here: the first script
// builds the pane, the first viewer (quickview.ts) fills it, and Cornerstone's Pane
// (pane.ts) takes it over as it is, so nothing on screen moves at the handover.
import { num, t } from './i18n';
import type { Quality } from './previews';
import type { WindowLevel } from './windowing';

export type SideName = 'left' | 'right';

export function el<K extends keyof HTMLElementTagNameMap>(
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

export class PaneView {
  readonly root: HTMLElement;
  readonly stage: HTMLElement;
  readonly element: HTMLDivElement;        // where Cornerstone draws
  readonly canvas: HTMLCanvasElement;      // where the first viewer draws, above it
  readonly slider: HTMLInputElement;
  private readonly preview: HTMLImageElement;
  private readonly label: HTMLElement;
  private readonly sliceText: HTMLElement;
  private readonly windowText: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly progressText: HTMLElement;
  private readonly badge: HTMLElement;
  /** The server-rendered preview is on screen (once per page, for the benchmark). */
  onPreviewShown: () => void = () => {};

  constructor(readonly side: SideName, public title: string) {
    this.element = el('div', {
      className: 'viewport', tabIndex: 0, role: 'img', 'aria-label': title,
    });
    this.element.addEventListener('contextmenu', (e) => e.preventDefault());
    this.canvas = el('canvas', {
      className: 'quick', tabIndex: 0, role: 'img', 'aria-label': title, hidden: true,
    });
    this.canvas.addEventListener('contextmenu', (e) => e.preventDefault());
    // High priority: an image would otherwise queue behind the first viewer's fetches.
    this.preview = el('img', {
      className: 'preview', alt: '', hidden: true, decoding: 'async', fetchPriority: 'high',
    });
    this.preview.addEventListener('load', () => this.onPreviewShown());
    this.preview.addEventListener('error', () => { this.preview.hidden = true; });
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
    this.stage = el('div', { className: 'stage' }, this.element, this.preview, this.canvas,
      this.sliceText, this.windowText, this.label, progressBox, this.badge);
    this.root = el('section', { className: 'pane', 'data-side': side, 'aria-label': title },
      this.stage, this.slider);
  }

  /** A server-rendered JPEG, shown (slightly blurred) until a real image is drawn. */
  showPreview(url: string): void {
    this.preview.src = url;
    this.preview.alt = t('pane.preview');
    this.preview.hidden = false;
  }

  hidePreview(): void {
    this.preview.hidden = true;
  }

  /** The slider's range once the number of slices is known. */
  setCount(count: number, index: number): void {
    this.slider.max = String(count);
    this.slider.value = String(index + 1);
    this.slider.disabled = count < 2;
  }

  showSlice(index: number, count: number, z: number): void {
    const slice = t('pane.slice', { index: index + 1, count });
    this.sliceText.textContent = Number.isFinite(z)
      ? `${slice} · ${t('pane.position', { z: num(z) })}` : slice;
    if (document.activeElement !== this.slider) this.slider.value = String(index + 1);
    this.slider.setAttribute('aria-valuetext', slice);
    const label = t('pane.viewport', { label: this.title, index: index + 1, count });
    this.element.setAttribute('aria-label', label);
    this.canvas.setAttribute('aria-label', label);
  }

  showWindow(wl: WindowLevel, zoom: number): void {
    this.windowText.textContent = `${t('pane.window', {
      width: num(wl.width, 0), center: num(wl.center, 0),
    })} · ${t('pane.zoom', { zoom: Math.round(zoom * 100) })}`;
  }

  /** ``preview`` and ``full``: slices ready as a preview at least, and at full quality. */
  showProgress(preview: number, full: number, count: number): void {
    this.progress.max = 2 * count;
    this.progress.value = preview + full;
    this.progressText.textContent = preview < count
      ? t('pane.loading', { loaded: preview, total: count })
      : full < count ? t('pane.loadingFull', { full, total: count })
        : t('pane.loaded', { total: count });
    this.root.classList.toggle('complete', full >= count);
  }

  showQuality(quality: Quality): void {
    this.badge.hidden = quality !== 'preview';
    this.root.dataset.quality = quality ?? '';
  }

  setTitle(title: string): void {
    this.title = title;
    this.label.textContent = title;
    this.root.setAttribute('aria-label', title);
  }
}
