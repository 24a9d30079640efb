// The first viewer (issue 14): before Cornerstone (~0.9 MB compressed) has loaded, the
// series' lossy HTJ2K previews (previews.ts) are decoded by OpenJPH (pixels.ts) and drawn
// on a canvas with the viewer's own windowing (windowing.ts), so a patient on a slow link
// can scroll (wheel, finger, keys, slider) and window (drag, presets) within a second or
// two. Cornerstone then takes over at the same slice and window (pane.ts, Handover), and
// this canvas steps aside. It draws previews only: full quality is Cornerstone's job.
import { nearestIndex, numbers, type Stack } from './dicomweb';
import { t } from './i18n';
import type { PaneView } from './paneview';
import { decodeFrame, type Pixels } from './pixels';
import { PreviewFeed, type Frame, type PreviewListener } from './previews';
import type { Actions, Shell, ToolKey, ViewAction } from './shell';
import {
  PRESETS, dragWindow, greyTable, toRange, toWindowLevel, type PresetName, type Range,
} from './windowing';

type Mode = 'windowLevel' | 'scroll';
const KEPT = 24;  // decoded slices kept (512² × 2 bytes each) for scrolling back and forth
const KEY_STEPS: Record<string, number> = {
  ArrowUp: -1, ArrowLeft: -1, ArrowDown: 1, ArrowRight: 1, PageUp: -10, PageDown: 10,
};

/** The same media query as the app: on a phone one finger scrolls, W/L is a mode. */
const phone = matchMedia('(max-width: 699px)');

function defaultMode(): Mode {
  return phone.matches ? 'scroll' : 'windowLevel';
}

function nextFrame(): Promise<void> {
  return new Promise((resolve) => requestAnimationFrame(() => resolve()));
}

export class QuickView implements PreviewListener {
  readonly previews: PreviewFeed;
  /** The first slice is on the canvas and the canvas answers the reader. */
  interactive = false;
  private target: number;                  // the slice wanted (shown in the overlays)
  private drawn = -1;                      // the slice on the canvas
  private range: Range | null = null;      // the window, modality values
  private studyRange: Range | null = null; // the window stored with the images
  private dynamicRange = 1024;
  private mode: Mode;
  private frozen = false;
  private dirty = false;
  private drawing = false;
  private progressPending = false;
  private readonly decoded = new Map<number, Pixels>();
  private readonly input = new AbortController();
  private readonly offscreen = document.createElement('canvas');
  private image: ImageData | null = null;
  private table: { key: string; values: Uint32Array } | null = null;
  private drag: { id: number; x: number; y: number; rest: number } | null = null;
  private readonly pointers = new Set<number>();
  private unlisten: () => void = () => {};
  private readonly resized = new ResizeObserver(() => this.requestDraw());
  private resolveFirst: () => void = () => {};
  private rejectFirst: (error: unknown) => void = () => {};

  constructor(readonly view: PaneView, readonly stack: Stack, private readonly shell: Shell,
              wanted: string | null) {
    this.previews = new PreviewFeed(stack);
    this.target = Math.floor(stack.imageIds.length / 2);
    this.mode = wanted === 'scroll' || wanted === 'windowLevel' ? wanted : defaultMode();
  }

  /** The toolbar's answers while this viewer is on screen. */
  readonly actions: Actions = {
    tool: (key: ToolKey) => this.setMode(key),
    preset: (name: PresetName) => this.preset(name),
    view: (action: ViewAction) => { if (action === 'reset') this.preset('study', false); },
    prior: () => {},
    link: () => {},
  };

  /** Fetch the slice in the middle; resolves once it is drawn. */
  start(): Promise<void> {
    const first = new Promise<void>((resolve, reject) => {
      this.resolveFirst = resolve;
      this.rejectFirst = reject;
    });
    this.listen();
    this.shell.actions = this.actions;
    this.shell.pressTool(this.mode);
    this.view.setCount(this.stack.imageIds.length, this.target);
    this.overlays();
    this.unlisten = this.previews.listen(this);
    // The slice in the middle on its own. The series' 2 MB of previews wait for the first
    // scroll (or Cornerstone): a reader who only looks gets Cornerstone sooner on a slow link.
    this.previews.want(this.target);
    return first;
  }

  // --- the Handover to Cornerstone (pane.ts) ---------------------------------------------

  index(): number {
    return this.target;
  }

  freeze(): { index: number; range: Range } {
    this.frozen = true;
    this.input.abort();
    this.pointers.clear();
    return { index: this.target, range: { ...(this.range ?? this.studyRange!) } };
  }

  release(): void {
    const focused = document.activeElement === this.view.canvas;
    this.view.canvas.hidden = true;
    if (focused) this.view.element.focus();
    this.unlisten();
    this.resized.disconnect();
    this.decoded.clear();
    this.image = null;
  }

  /** Give up (Cornerstone starts afresh): the canvas goes, its downloads stop. */
  abandon(): void {
    this.freeze();
    this.release();
    this.previews.stop();
    this.rejectFirst(new Error('the first viewer was abandoned'));
  }

  // --- what the preview feed reports -------------------------------------------------------

  arrived(index: number, _frame: Frame): void {
    if (index === this.target) this.requestDraw();
    this.scheduleProgress();
  }

  failed(index: number, error: unknown): void {
    if (index === this.target && !this.interactive) this.rejectFirst(error);
  }

  // --- reader input -------------------------------------------------------------------------

  private listen(): void {
    const { canvas, slider } = this.view;
    const signal = this.input.signal;
    canvas.addEventListener('wheel', (e) => {
      e.preventDefault();
      if (e.deltaY) this.setIndex(this.target + Math.sign(e.deltaY));
    }, { signal, passive: false });
    canvas.addEventListener('keydown', (e) => this.onKey(e), { signal });
    canvas.addEventListener('pointerdown', (e) => this.onPointerDown(e), { signal });
    canvas.addEventListener('pointermove', (e) => this.onPointerMove(e), { signal });
    for (const type of ['pointerup', 'pointercancel'] as const) {
      canvas.addEventListener(type, (e) => this.onPointerUp(e), { signal });
    }
    // Touches on the image are ours alone (as Cornerstone's are): no browser gestures, so no
    // fling whose end would swallow the next tap on a button, and no emulated mouse events.
    for (const type of ['touchstart', 'touchmove'] as const) {
      canvas.addEventListener(type, (e) => e.preventDefault(), { signal, passive: false });
    }
    slider.addEventListener('input', () => this.setIndex(Number(slider.value) - 1), { signal });
    this.resized.observe(this.view.stage);
  }

  private onKey(e: KeyboardEvent): void {
    if (e.key in KEY_STEPS) {
      e.preventDefault();
      this.setIndex(this.target + KEY_STEPS[e.key]);
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      this.setIndex(e.key === 'Home' ? 0 : this.stack.imageIds.length - 1);
    }
  }

  /** One finger or the left button drags; a second finger ends it (pinch is Cornerstone's). */
  private onPointerDown(e: PointerEvent): void {
    this.pointers.add(e.pointerId);
    if (this.pointers.size > 1 || (e.pointerType === 'mouse' && e.button !== 0)) {
      this.drag = null;
      return;
    }
    this.view.canvas.focus({ preventScroll: true });
    this.view.canvas.setPointerCapture?.(e.pointerId);
    this.drag = { id: e.pointerId, x: e.clientX, y: e.clientY, rest: 0 };
  }

  private onPointerMove(e: PointerEvent): void {
    const drag = this.drag;
    if (!drag || drag.id !== e.pointerId) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    drag.x = e.clientX;
    drag.y = e.clientY;
    if (this.mode === 'windowLevel') {
      if (!this.range) return;
      this.range = dragWindow(this.range, dx, dy, this.dynamicRange);
      this.requestDraw();
      return;
    }
    // Cornerstone's StackScrollTool: one slice per (height / slices) pixels dragged.
    const perSlice = Math.max(2, this.view.canvas.clientHeight / Math.max(this.stack.imageIds.length, 8));
    const total = drag.rest + dy;
    if (Math.abs(total) < perSlice) {
      drag.rest = total;
      return;
    }
    drag.rest = total % perSlice;
    this.setIndex(this.target + Math.round(total / perSlice));
  }

  private onPointerUp(e: PointerEvent): void {
    this.pointers.delete(e.pointerId);
    if (this.drag?.id === e.pointerId) this.drag = null;
  }

  private setMode(key: ToolKey): void {
    if (key !== 'windowLevel' && key !== 'scroll') return;
    this.mode = key === this.mode && key !== defaultMode() ? defaultMode() : key;
    this.shell.pressTool(this.mode);
    this.shell.say(t('status.dragMode', { tool: t(`tools.${this.mode}`) }));
  }

  private preset(name: PresetName, announce = true): void {
    const range = name === 'study' ? this.studyRange
      : toRange(PRESETS[name].width, PRESETS[name].center);
    if (!range) return;
    this.range = { ...range };
    this.requestDraw();
    if (announce) this.shell.say(t('status.presetApplied', { preset: t(`presets.${name}`) }));
  }

  setIndex(index: number): void {
    const clamped = Math.max(0, Math.min(this.stack.imageIds.length - 1, Math.round(index)));
    if (clamped === this.target || this.frozen) return;
    this.previews.start();
    this.target = clamped;
    this.overlays();
    if (!this.previews.frames[clamped]) this.previews.want(clamped);
    this.requestDraw();
  }

  // --- drawing ------------------------------------------------------------------------------

  /** Draw the wanted slice on the next animation frame (at most one decode at a time). */
  private requestDraw(): void {
    this.dirty = true;
    if (this.drawing) return;
    this.drawing = true;
    void (async () => {
      try {
        while (this.dirty) {
          this.dirty = false;
          await nextFrame();
          await this.drawTarget();
        }
      } finally {
        this.drawing = false;
      }
    })();
  }

  private async drawTarget(): Promise<void> {
    const index = this.target;
    const frame = this.previews.frames[index];
    if (!frame) return;  // drawn when it arrives; the last slice stays meanwhile
    let pixels = this.decoded.get(index);
    if (!pixels) {
      try {
        pixels = await decodeFrame(frame, this.stack.instances[index]);
      } catch (error) {
        console.warn(`slice ${index + 1}: the first viewer cannot draw it`, error);
        if (!this.interactive) this.rejectFirst(error);
        return;
      }
      this.keep(index, pixels);
    }
    if (!this.studyRange) this.studyRange = this.storedWindow(index, pixels);
    this.range ??= { ...this.studyRange };
    this.dynamicRange = (pixels.max - pixels.min) * Math.abs(pixels.slope);
    this.paint(pixels);
    this.drawn = index;
    this.overlays();
    if (!this.interactive) this.becomeInteractive();
  }

  private keep(index: number, pixels: Pixels): void {
    this.decoded.set(index, pixels);
    if (this.decoded.size <= KEPT) return;
    let farthest = -1;
    for (const kept of this.decoded.keys()) {
      if (farthest < 0 || Math.abs(kept - this.target) > Math.abs(farthest - this.target)) {
        farthest = kept;
      }
    }
    this.decoded.delete(farthest);
  }

  /** The window stored with the image (its first one), else its whole range of values. */
  private storedWindow(index: number, pixels: Pixels): Range {
    const attrs = this.stack.instances[index];
    const center = numbers(attrs, '00281050')[0];
    const width = numbers(attrs, '00281051')[0];
    if (Number.isFinite(center) && Number.isFinite(width) && width > 0) return toRange(width, center);
    const a = pixels.min * pixels.slope + pixels.intercept;
    const b = pixels.max * pixels.slope + pixels.intercept;
    return { lower: Math.min(a, b), upper: Math.max(a, b) };
  }

  private becomeInteractive(): void {
    this.interactive = true;
    this.view.canvas.hidden = false;
    this.view.hidePreview();
    if (!performance.getEntriesByName(`cf-interactive-${this.view.side}`).length) {
      performance.mark(`cf-interactive-${this.view.side}`);
    }
    this.resolveFirst();
  }

  /** Stored values → grey levels (one table lookup a pixel), then fitted into the stage
   * as Cornerstone fits it: the whole image, centred, square pixels of PixelSpacing. */
  private paint(pixels: Pixels): void {
    const { columns, rows, samples, min, max } = pixels;
    if (!this.image || this.image.width !== columns || this.image.height !== rows) {
      this.image = new ImageData(columns, rows);
      this.offscreen.width = columns;
      this.offscreen.height = rows;
    }
    const range = this.range!;
    const key = `${min}/${max}/${pixels.slope}/${pixels.intercept}/${range.lower}/${range.upper}/${pixels.inverted}`;
    if (this.table?.key !== key) {
      this.table = { key, values: greyTable(min, max - min + 1, pixels.slope, pixels.intercept,
        range, pixels.inverted) };
    }
    const table = this.table.values;
    const out = new Uint32Array(this.image.data.buffer);
    for (let i = 0; i < samples.length; i++) out[i] = table[samples[i] - min];
    this.offscreen.getContext('2d')!.putImageData(this.image, 0, 0);

    const canvas = this.view.canvas;
    const ratio = devicePixelRatio || 1;
    const width = Math.max(1, Math.round(this.view.stage.clientWidth * ratio));
    const height = Math.max(1, Math.round(this.view.stage.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const [rowSpacing, columnSpacing] = this.stack.pixelSpacing ?? [1, 1];
    const physical = [columns * columnSpacing, rows * rowSpacing];
    const scale = Math.min(width / physical[0], height / physical[1]);
    const [w, h] = [physical[0] * scale, physical[1] * scale];
    const ctx = canvas.getContext('2d')!;
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, width, height);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.offscreen, (width - w) / 2, (height - h) / 2, w, h);
  }

  // --- what the pane says -----------------------------------------------------------------

  private overlays(): void {
    const count = this.stack.imageIds.length;
    this.view.showSlice(this.target, count, this.stack.z[this.target]);
    if (this.range) this.view.showWindow(toWindowLevel(this.range), 1);
    this.view.showQuality(this.drawn >= 0 ? this.previews.frames[this.drawn]?.kind ?? null : null);
    this.showProgress();
  }

  private scheduleProgress(): void {
    if (this.progressPending) return;
    this.progressPending = true;
    requestAnimationFrame(() => {
      this.progressPending = false;
      if (!this.frozen) this.showProgress();
    });
  }

  private showProgress(): void {
    const count = this.stack.imageIds.length;
    this.view.showProgress(this.previews.arrivedCount(), 0, count);
  }

  /** For tests and the curious: what the first viewer shows. */
  readonly hook = {
    active: () => this.interactive && !this.view.canvas.hidden,
    interactive: () => this.interactive,
    currentIndex: () => this.target,
    drawnIndex: () => this.drawn,
    count: () => this.stack.imageIds.length,
    voi: () => (this.range ? toWindowLevel(this.range) : null),
    mode: () => this.mode,
    indexNearestZ: (z: number) => nearestIndex(this.stack.z, z),
  };
}
