// The "Measure nodule" tool (issue 6): a click on a nodule asks the server to segment it
// (POST /api/studies/{study}/nodules/measure) and the viewer draws the returned outline
// and axes over the slice, with the numbers in a panel. The server measures the stored
// series at full quality, whatever quality is on screen; the result is decision support
// for a clinician, who checks the outline. Coordinates sent and received are pixel
// indices ((0, 0) is the centre of the top-left pixel); Cornerstone's image coordinates
// are those plus 0.5.
import { Enums, utilities as csUtils, type Types } from '@cornerstonejs/core';
import { HttpError } from './dicomweb';
import { num, t } from './i18n';
import { el, type Pane } from './pane';

type Point = [number, number];

export interface NoduleMeasurement {
  id: number;
  long_axis_mm: number;
  short_axis_mm: number;
  mean_diameter_mm: number;
  volume_mm3: number | null;
  suggested_type: string;
  center_patient_mm: number[];
  outline: { instance_uid: string; contour: Point[]; long_axis: Point[]; short_axis: Point[] };
}

export interface NoduleResult {
  measurement: NoduleMeasurement;
  nodule: { id: number; label: string } | null;
}

function cookie(name: string): string {
  const found = document.cookie.split(';').map((c) => c.trim().split('='))
    .find(([key]) => key === name);
  return found ? decodeURIComponent(found.slice(1).join('=')) : '';
}

/** POST JSON with the session's CSRF token; the answer, or the server's reason as an error. */
export async function postJSON<T>(url: string, body?: unknown): Promise<T> {
  const response = await fetch(url, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json',
      'X-CSRF-Token': cookie('cf_csrf') },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let reason = `${response.status} ${response.statusText}`;
    try {
      reason = (await response.json()).error ?? reason;
    } catch { /* not JSON */ }
    throw new HttpError(response.status, reason);
  }
  return response.json() as Promise<T>;
}

/** Segment the nodule at (column, row) of one slice; the server's reason on failure. */
export function measureNodule(study: string, series: string, instance: string,
                              column: number, row: number): Promise<NoduleResult> {
  return postJSON<NoduleResult>(`/api/studies/${study}/nodules/measure`,
    { series_uid: series, instance_uid: instance, x: column, y: row });
}

/** Whether this login is a clinician (physician, operator, admin); asked once per page. */
export const isClinician = (() => {
  let asked: Promise<boolean> | null = null;
  return () => asked ??= fetch('/api/me', { credentials: 'same-origin' })
    .then(async (me) => me.ok && ['physician', 'operator', 'admin']
      .includes((await me.json() as { role?: string | null }).role ?? ''))
    .catch(() => false);
})();

/** Whether this login may measure in this study: a clinician (physician, operator, admin)
 * whose grant allows writing into it; patients are not asked about the study at all. */
export async function mayMeasure(study: string): Promise<boolean> {
  if (!await isClinician()) return false;
  const rights = await fetch(`/api/studies/${study}/tools`, { credentials: 'same-origin' });
  return rights.ok && (await rights.json() as { measure_nodule?: boolean }).measure_nodule === true;
}

const SVG = 'http://www.w3.org/2000/svg';

/** Canvas position (CSS px) of a pixel index on the image on screen. */
export function pixelToCanvas(pane: Pane, imageId: string, [column, row]: Point): Point | null {
  const world = csUtils.imageToWorldCoords(imageId, [column + 0.5, row + 0.5]);
  if (!world) return null;
  const [x, y] = pane.viewport.worldToCanvas(world as Types.Point3);
  return [x, y];
}

/** The outline and axes of one measurement, drawn over a pane on the slice they belong to. */
export class NoduleOverlay {
  private readonly svg: SVGSVGElement;
  private result: NoduleResult | null = null;

  constructor(private readonly pane: Pane) {
    this.svg = document.createElementNS(SVG, 'svg');
    this.svg.classList.add('nodule-overlay');
    this.svg.setAttribute('aria-hidden', 'true');
    pane.element.parentElement!.append(this.svg);
    pane.element.addEventListener(Enums.Events.IMAGE_RENDERED, () => this.draw());
  }

  show(result: NoduleResult | null): void {
    this.result = result;
    this.draw();
  }

  private draw(): void {
    this.svg.replaceChildren();
    const outline = this.result?.measurement.outline;
    const stack = this.pane.stack;
    if (!outline || !stack || !this.pane.shown) return;
    const index = this.pane.index();
    if (stack.sops[index] !== outline.instance_uid) return;
    const imageId = stack.imageIds[index];
    const path = (points: Point[], closed: boolean, kind: string) => {
      const xy = points.map((p) => pixelToCanvas(this.pane, imageId, p)).filter((p): p is Point => !!p);
      if (xy.length < 2) return;
      const node = document.createElementNS(SVG, closed ? 'polygon' : 'polyline');
      node.setAttribute('points', xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' '));
      node.setAttribute('class', kind);
      this.svg.append(node);
    };
    path(outline.contour, true, 'contour');
    path(outline.long_axis, false, 'axis long');
    path(outline.short_axis, false, 'axis short');
  }
}

/** The numbers of the last measurement (or why there is none), beside the images. */
export class NodulePanel {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly heading: HTMLElement;

  constructor(onClose: () => void) {
    this.heading = el('h2', { id: 'nodule-panel-title' });
    this.body = el('div', { className: 'nodule-body' });
    const close = el('button', { type: 'button', className: 'close', title: t('nodule.close'),
      'aria-label': t('nodule.close') }, '×');
    close.addEventListener('click', onClose);
    this.root = el('aside', { className: 'nodule-panel', hidden: true,
      'aria-labelledby': 'nodule-panel-title', role: 'region' },
    el('div', { className: 'nodule-head' }, this.heading, close), this.body);
  }

  hide(): void {
    this.root.hidden = true;
  }

  busy(): void {
    this.heading.textContent = t('nodule.measuring');
    this.body.replaceChildren();
    this.root.hidden = false;
    this.root.setAttribute('aria-busy', 'true');
  }

  failed(reason: string): void {
    this.root.removeAttribute('aria-busy');
    this.heading.textContent = t('nodule.none');
    this.body.replaceChildren(el('p', { className: 'reason', role: 'alert' }, reason));
    this.root.hidden = false;
  }

  show(result: NoduleResult): void {
    const m = result.measurement;
    this.root.removeAttribute('aria-busy');
    this.heading.textContent = result.nodule
      ? t('nodule.title', { label: result.nodule.label }) : t('nodule.titleNew');
    const row = (key: string, field: string, value: string) => [
      el('dt', {}, t(key)), el('dd', { 'data-field': field }, value)];
    const mm = (v: number) => t('nodule.mm', { value: num(v) });
    this.body.replaceChildren(el('dl', {},
      ...row('nodule.long', 'long', mm(m.long_axis_mm)),
      ...row('nodule.short', 'short', mm(m.short_axis_mm)),
      ...row('nodule.mean', 'mean', mm(m.mean_diameter_mm)),
      ...row('nodule.volume', 'volume', m.volume_mm3 == null ? '—'
        : t('nodule.mm3', { value: num(m.volume_mm3, 0) })),
      ...row('nodule.type', 'type', t(`nodule.type.${m.suggested_type}`))),
    el('p', { className: 'note' }, t('nodule.note')));
    this.root.hidden = false;
  }
}

/**
 * The tool itself: with it switched on, a click (not a drag) on a pane measures the nodule
 * under the pointer; the overlay and panel show the result, ``say`` announces it.
 */
export class NoduleTool {
  readonly panel = new NodulePanel(() => this.close());
  result: NoduleResult | null = null;
  error: string | null = null;
  private readonly overlays = new Map<Pane, NoduleOverlay>();

  constructor(private readonly button: HTMLButtonElement,
              private readonly say: (message: string, stay?: boolean) => void,
              private readonly active: () => boolean,
              private readonly goTo: (pane: Pane, index: number) => Promise<void>) {}

  /** Show the tool's button to those the API lets measure (clinicians); whether it is. */
  async offerIfAllowed(study: string): Promise<boolean> {
    const allowed = await mayMeasure(study).catch(() => false);
    this.button.hidden = !allowed;
    return allowed;
  }

  attach(pane: Pane): void {
    this.overlays.set(pane, new NoduleOverlay(pane));
    let down: [number, number] = [0, 0];
    pane.element.addEventListener('pointerdown', (e) => { down = [e.clientX, e.clientY]; });
    pane.element.addEventListener('click', (e) => {
      if (!this.active() || Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 6) return;
      void this.measureAt(pane, e.clientX, e.clientY);
    });
  }

  close(): void {
    this.result = null;
    this.panel.hide();
    for (const overlay of this.overlays.values()) overlay.show(null);
  }

  /** Measure at a click: the pixel under it on the slice on screen. */
  async measureAt(pane: Pane, clientX: number, clientY: number): Promise<void> {
    const stack = pane.stack;
    if (!stack || !pane.shown) return;
    const box = pane.element.getBoundingClientRect();
    const [column, row] = pane.canvasToPixel(clientX - box.left, clientY - box.top);
    if (column < -0.5 || row < -0.5 || column > stack.columns - 0.5 || row > stack.rows - 0.5) {
      this.say(t('nodule.outside'));
      return;
    }
    const instance = stack.sops[pane.index()];
    this.panel.busy();
    this.say(t('nodule.measuring'), true);
    this.button.setAttribute('aria-busy', 'true');
    let result: NoduleResult;
    try {
      result = await measureNodule(stack.study, stack.series, instance, column, row);
    } catch (error) {
      this.failed(pane, (error as Error).message);
      return;
    } finally {
      this.button.removeAttribute('aria-busy');
    }
    await this.show(pane, result);
  }

  private failed(pane: Pane, reason: string): void {
    this.result = null;
    this.error = reason;
    this.overlays.get(pane)?.show(null);
    this.panel.failed(reason);
    this.say(t('nodule.failed', { reason }), true);
  }

  /** Show a measurement made elsewhere (an accepted AI candidate) as if measured here. */
  present(pane: Pane | null, result: NoduleResult): Promise<void> {
    if (pane) return this.show(pane, result);
    this.result = result;
    this.error = null;
    this.panel.show(result);
    return Promise.resolve();
  }

  private async show(pane: Pane, result: NoduleResult): Promise<void> {
    this.result = result;
    this.error = null;
    const { measurement, nodule } = result;
    this.panel.show(result);
    this.panel.root.scrollIntoView({ block: 'nearest' });
    this.overlays.get(pane)?.show(result);
    // The axes are measured on the slice where the nodule is widest: show that one.
    const best = pane.stack?.sops.indexOf(measurement.outline.instance_uid) ?? -1;
    if (best >= 0 && best !== pane.index()) await this.goTo(pane, best);
    this.say(t('status.noduleMeasured', {
      label: nodule?.label ?? '', mean: num(measurement.mean_diameter_mm),
    }));
  }
}
