// AI candidates (issue 15, IHE AI Results): nodules found by software (the built-in finder
// or an AI service that answered with a TID 1500 SR) wait here for a physician, who accepts,
// corrects or rejects each one. Only an accepted candidate becomes a measurement (the same
// semi-automatic segmentation as the "Measure nodule" tool); nothing reaches a patient
// before that, and the API answers patients, caregivers and link visitors 404, so the viewer
// asks only for clinicians. Each candidate is drawn as a circle of its diameter at its
// centre on the slice it names. Pixel indices: (0, 0) is the centre of the top-left pixel.
import { Enums } from '@cornerstonejs/core';
import { HttpError } from './dicomweb';
import { num, t } from './i18n';
import { pixelToCanvas, postJSON, type NoduleMeasurement, type NoduleResult } from './nodules';
import { el, type Pane } from './pane';

export type CandidateStatus = 'pending' | 'accepted' | 'rejected';

export interface AiCandidate {
  id: number;
  series_uid: string;
  source: string;
  algorithm: { name: string; version: string };
  center_mm: number[];
  diameter_mm: number;
  volume_mm3: number | null;
  score: number | null;
  instance_uid: string;
  column: number;
  row: number;
  status: CandidateStatus;
  measurement: Record<string, unknown> | null;
}

/** A corrected centre the physician clicked on a slice (the "edit" before accepting). */
export interface Point { instance_uid: string; column: number; row: number }

/** The accept/reject answer; accept adds the measure tool's ``measurement`` and ``nodule``. */
interface Decided {
  candidate: AiCandidate;
  measurement?: Record<string, unknown> | null;
  nodule?: { id: number; label: string } | null;
}

/** ``?candidate=ID`` (the study page's "Review in the viewer" link): open at that one. */
const WANTED = new URLSearchParams(location.search).get('candidate');
const POLL_FIRST_MS = 1000;
const POLL_MAX_MS = 5000;
const POLL_GIVE_UP_MS = 5 * 60_000;

/** Where the study's latest run of the built-in finder is (the server's job ledger). */
export interface Detection {
  state: 'queued' | 'running' | 'failed' | 'idle';
  error: string;
}

export async function listCandidates(study: string):
    Promise<{ candidates: AiCandidate[]; detection: Detection }> {
  const response = await fetch(`/api/studies/${study}/ai-candidates`,
    { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!response.ok) throw new HttpError(response.status, `${response.status}`);
  return await response.json() as { candidates: AiCandidate[]; detection: Detection };
}

/** The accept answer's measurement as the measure tool's result (either shape the API sends). */
export function asNoduleResult(raw: Record<string, unknown>): NoduleResult {
  if (raw.measurement && typeof raw.measurement === 'object') return raw as unknown as NoduleResult;
  const m = raw as unknown as NoduleMeasurement & { type?: string; label?: string | null;
    nodule_id?: number | null };
  const measurement = { ...m, suggested_type: m.suggested_type ?? m.type ?? 'solid' };
  const nodule = m.nodule_id != null ? { id: m.nodule_id, label: m.label ?? '' } : null;
  return { measurement, nodule };
}

const SVG = 'http://www.w3.org/2000/svg';

/** The candidates' circles (and a corrected point being placed) over one pane. */
export class CandidateOverlay {
  private readonly svg: SVGSVGElement;

  constructor(private readonly pane: Pane, private readonly source: AiCandidates) {
    this.svg = document.createElementNS(SVG, 'svg');
    this.svg.classList.add('ai-overlay');
    this.svg.setAttribute('aria-hidden', 'true');
    pane.element.parentElement!.append(this.svg);
  }

  draw(): void {
    this.svg.replaceChildren();
    const stack = this.pane.stack;
    if (!stack || !this.pane.shown || !this.source.visible) return;
    const index = this.pane.index();
    const sop = stack.sops[index];
    const imageId = stack.imageIds[index];
    const spacing = stack.pixelSpacing?.[1] ?? 1;
    this.source.candidates.forEach((c, i) => {
      // A decided candidate is no longer drawn: an accepted one is its measurement's outline.
      if (c.status !== 'pending' || c.instance_uid !== sop) return;
      const centre = pixelToCanvas(this.pane, imageId, [c.column, c.row]);
      const edge = pixelToCanvas(this.pane, imageId, [c.column + c.diameter_mm / 2 / spacing, c.row]);
      if (!centre || !edge) return;
      const radius = Math.max(6, Math.hypot(edge[0] - centre[0], edge[1] - centre[1]));
      const circle = this.node('circle', { cx: centre[0], cy: centre[1], r: radius,
        class: `ai-candidate${this.source.selected === c.id ? ' selected' : ''}` });
      circle.dataset.candidate = String(c.id);
      const label = this.node('text', { x: centre[0] + radius + 3, y: centre[1] - radius });
      label.textContent = t('ai.marker', { number: i + 1 });
      this.svg.append(circle, label);
    });
    const point = this.source.editPoint;
    if (point && point.instance_uid === sop) {
      const at = pixelToCanvas(this.pane, imageId, [point.column, point.row]);
      if (at) this.svg.append(this.node('path', { class: 'ai-point',
        d: `M${at[0] - 8},${at[1]}h16M${at[0]},${at[1] - 8}v16` }));
    }
  }

  private node(tag: string, attrs: Record<string, string | number>): SVGElement {
    const node = document.createElementNS(SVG, tag) as SVGElement;
    for (const [key, value] of Object.entries(attrs)) {
      node.setAttribute(key, typeof value === 'number' ? value.toFixed(1) : value);
    }
    return node;
  }
}

/** What the viewer lends the candidates: where to go, how to show a measurement, speech. */
export interface CandidateHost {
  say(message: string, stay?: boolean): void;
  /** Open the candidate's series in the main pane at its slice; that pane, or null. */
  goTo(series: string, instance: string): Promise<Pane | null>;
  /** Show an accepted candidate's measurement as the measure tool does. */
  showMeasurement(pane: Pane | null, result: NoduleResult): Promise<void>;
}

/** The "AI candidates" panel, its toolbar button, and the decisions. */
export class AiCandidates {
  candidates: AiCandidate[] = [];
  selected: number | null = null;
  editing: number | null = null;
  editPoint: Point | null = null;
  visible = false;
  mayDecide = false;
  error: string | null = null;
  readonly toggle: HTMLButtonElement;
  readonly root: HTMLElement;
  private readonly list: HTMLElement;
  private readonly count: HTMLElement;
  private readonly findButton: HTMLButtonElement;
  private readonly overlays = new Map<Pane, CandidateOverlay>();
  private polling = 0;
  private detection: Detection = { state: 'idle', error: '' };

  constructor(private readonly study: string, private readonly host: CandidateHost) {
    this.toggle = el('button', { type: 'button', hidden: true, 'data-action': 'ai-candidates',
      'aria-expanded': 'false', 'aria-controls': 'ai-panel', title: t('ai.toggle.long'),
      'aria-label': `${t('ai.toggle')}: ${t('ai.toggle.long')}` }, t('ai.toggle'));
    this.toggle.addEventListener('click', () => this.show(!this.visible));
    this.count = el('span', { className: 'ai-count' });
    this.findButton = el('button', { type: 'button', className: 'ai-find', 'data-action': 'detect',
      title: t('ai.find.long'), 'aria-label': `${t('ai.find')}: ${t('ai.find.long')}` },
    t('ai.find'));
    this.findButton.addEventListener('click', () => void this.find());
    const close = el('button', { type: 'button', className: 'close', title: t('nodule.close'),
      'aria-label': t('nodule.close') }, '×');
    close.addEventListener('click', () => this.show(false));
    this.list = el('ol', { className: 'ai-list' });
    this.root = el('aside', { className: 'ai-panel', id: 'ai-panel', hidden: true, role: 'region',
      'aria-labelledby': 'ai-panel-title' },
    el('div', { className: 'nodule-head' },
      el('h2', { id: 'ai-panel-title' }, t('ai.title'), ' ', this.count), close),
    this.list, el('div', { className: 'ai-actions' }, this.findButton),
    el('p', { className: 'note' }, t('ai.note')));
  }

  /** Clinicians only (the API hides candidates from everyone else): fetch and offer them. */
  async offer(clinician: boolean, mayDecide: boolean): Promise<void> {
    if (!clinician) return;
    this.mayDecide = mayDecide;
    try {
      await this.reload();
    } catch {
      return;  // no candidates here for this login (the API's 404): nothing to offer
    }
    this.toggle.hidden = false;
    this.findButton.hidden = !mayDecide;
    const phone = matchMedia('(max-width: 699px)').matches;
    const wanted = this.candidates.find((c) => String(c.id) === WANTED);
    const pending = this.candidates.some((c) => c.status === 'pending');
    if (wanted || WANTED === 'all' || (!phone && pending)) this.show(true);
    if (wanted) await this.goTo(wanted);
  }

  attach(pane: Pane): void {
    this.overlays.set(pane, new CandidateOverlay(pane, this));
    pane.element.addEventListener(Enums.Events.IMAGE_RENDERED, () => this.overlays.get(pane)?.draw());
    let down: [number, number] = [0, 0];
    pane.element.addEventListener('pointerdown', (e) => { down = [e.clientX, e.clientY]; });
    pane.element.addEventListener('click', (e) => {
      if (this.editing === null || Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 6) return;
      this.pick(pane, e.clientX, e.clientY);
    });
  }

  show(on: boolean): void {
    this.visible = on;
    this.root.hidden = !on;
    this.toggle.setAttribute('aria-expanded', String(on));
    this.toggle.setAttribute('aria-pressed', String(on));
    if (!on) this.stopEditing();
    this.redraw();
  }

  async reload(): Promise<void> {
    const answer = await listCandidates(this.study);
    this.candidates = answer.candidates;
    this.detection = answer.detection;
    this.render();
  }

  private redraw(): void {
    for (const overlay of this.overlays.values()) overlay.draw();
  }

  private render(): void {
    const pending = this.candidates.filter((c) => c.status === 'pending').length;
    this.count.textContent = this.candidates.length ? t('ai.count', { pending }) : '';
    this.toggle.textContent = pending ? `${t('ai.toggle')} (${pending})` : t('ai.toggle');
    this.list.replaceChildren(...(this.candidates.length
      ? this.candidates.map((c, i) => this.item(c, i + 1))
      : [el('li', { className: 'ai-none' }, t('ai.none'))]));
    this.redraw();
  }

  private item(c: AiCandidate, number: number): HTMLElement {
    const source = c.source === 'builtin' ? t('ai.source.builtin')
      : t('ai.source.node', { name: c.source });
    const size = c.volume_mm3 == null ? t('nodule.mm', { value: num(c.diameter_mm) })
      : `${t('nodule.mm', { value: num(c.diameter_mm) })} · ${t('nodule.mm3', { value: num(c.volume_mm3, 0) })}`;
    const row = (key: string, field: string, value: string) => [
      el('dt', {}, t(key)), el('dd', { 'data-field': field }, value)];
    const li = el('li', { className: `ai-item ${c.status}`, 'data-candidate': String(c.id),
      'data-status': c.status },
    el('h3', {}, t('ai.item', { number }), ' ',
      el('span', { className: 'ai-status' }, t(`ai.status.${c.status}`))),
    el('dl', {},
      ...row('ai.algorithm', 'algorithm', `${c.algorithm.name} ${c.algorithm.version}`),
      ...row('ai.source', 'source', source),
      ...row('ai.score', 'score', c.score == null ? '—' : num(c.score, 2)),
      ...row('ai.size', 'size', size)));
    li.append(this.controls(c, number));
    return li;
  }

  private controls(c: AiCandidate, number: number): HTMLElement {
    const box = el('div', { className: 'ai-buttons' });
    const add = (key: string, action: string, run: () => void) => {
      const b = el('button', { type: 'button', 'data-action': action, title: t(`${key}.long`),
        'aria-label': `${t(key)}: ${t(`${key}.long`)} (${t('ai.item', { number })})` }, t(key));
      b.addEventListener('click', run);
      box.append(b);
    };
    const label = (c.measurement as { label?: string | null } | null)?.label;
    if (c.status === 'accepted' && label) {
      box.append(el('p', { className: 'ai-outcome' }, t('ai.acceptedAs', { label })));
    }
    add('ai.show', 'show', () => void this.goTo(c));
    if (c.status !== 'pending' || !this.mayDecide) return box;
    if (this.editing === c.id) {
      box.append(el('p', { className: 'ai-hint', role: 'status' },
        this.editPoint ? t('ai.pointChosen') : t('ai.pick')));
      if (this.editPoint) add('ai.acceptHere', 'accept-here', () => void this.accept(c, number, this.editPoint));
      add('ai.cancel', 'cancel', () => this.stopEditing());
      return box;
    }
    add('ai.accept', 'accept', () => void this.accept(c, number, null));
    add('ai.edit', 'edit', () => void this.startEditing(c));
    add('ai.reject', 'reject', () => void this.reject(c, number));
    return box;
  }

  async goTo(c: AiCandidate): Promise<Pane | null> {
    this.selected = c.id;
    const pane = await this.host.goTo(c.series_uid, c.instance_uid);
    this.redraw();
    return pane;
  }

  private async startEditing(c: AiCandidate): Promise<void> {
    this.editing = c.id;
    this.editPoint = null;
    for (const pane of this.overlays.keys()) pane.root.classList.add('picking-point');
    this.render();
    await this.goTo(c);
    this.host.say(t('ai.pick'), true);
  }

  stopEditing(): void {
    if (this.editing === null) return;
    this.editing = null;
    this.editPoint = null;
    for (const pane of this.overlays.keys()) pane.root.classList.remove('picking-point');
    this.render();
  }

  /** The pixel under a click on the slice on screen becomes the corrected centre. */
  private pick(pane: Pane, clientX: number, clientY: number): void {
    const stack = pane.stack;
    if (!stack || !pane.shown) return;
    const box = pane.element.getBoundingClientRect();
    const [column, row] = pane.canvasToPixel(clientX - box.left, clientY - box.top);
    if (column < -0.5 || row < -0.5 || column > stack.columns - 0.5 || row > stack.rows - 0.5) {
      this.host.say(t('nodule.outside'));
      return;
    }
    this.editPoint = { instance_uid: stack.sops[pane.index()], column, row };
    this.render();
    this.host.say(t('ai.pointChosen'));
  }

  private async accept(c: AiCandidate, number: number, point: Point | null): Promise<void> {
    this.host.say(t('nodule.measuring'), true);
    let answer: Decided;
    try {
      answer = await postJSON<Decided>(`/api/ai-candidates/${c.id}/accept`, point ?? undefined);
    } catch (error) {
      this.failed(error);
      return;
    }
    this.error = null;
    this.replace(answer.candidate);
    this.stopEditing();
    this.render();
    if (!answer.measurement) return;
    const result = asNoduleResult(answer.nodule === undefined ? answer.measurement
      : { measurement: answer.measurement, nodule: answer.nodule });
    const measured = result.measurement as NoduleMeasurement & { series_uid?: string };
    const pane = await this.host.goTo(measured.series_uid ?? c.series_uid,
      measured.outline?.instance_uid ?? c.instance_uid);
    await this.host.showMeasurement(pane, result);
    this.host.say(t('ai.accepted', { number, mean: num(result.measurement.mean_diameter_mm) }));
  }

  private async reject(c: AiCandidate, number: number): Promise<void> {
    try {
      this.replace((await postJSON<Decided>(`/api/ai-candidates/${c.id}/reject`)).candidate);
    } catch (error) {
      this.failed(error);
      return;
    }
    this.error = null;
    this.render();
    this.host.say(t('ai.rejected', { number }));
  }

  private replace(updated: AiCandidate): void {
    this.candidates = this.candidates.map((c) => (c.id === updated.id ? updated : c));
  }

  private failed(error: unknown): void {
    this.error = (error as Error).message;
    this.host.say(t('ai.failed', { reason: this.error }), true);
    void this.reload().catch(() => undefined);  // it may have been decided elsewhere (409)
  }

  /** Run the built-in finder (a job), then poll the list until its candidates are in. */
  async find(): Promise<void> {
    const before = this.signature();
    this.findButton.disabled = true;
    this.findButton.setAttribute('aria-busy', 'true');
    this.host.say(t('ai.finding'), true);
    try {
      await postJSON(`/api/studies/${this.study}/nodules/detect`);
    } catch (error) {
      this.endFinding(t('ai.findFailed', { reason: (error as Error).message }));
      return;
    }
    const started = performance.now();
    const poll = async (wait: number): Promise<void> => {
      await this.reload().catch(() => undefined);
      const { state, error } = this.detection;
      if (this.signature() !== before || state === 'idle') {
        const pending = this.candidates.filter((c) => c.status === 'pending').length;
        if (this.signature() !== before) {
          this.endFinding(t('ai.found', { count: pending }));
          this.show(true);
        } else {
          this.endFinding(t('ai.foundNone'));
        }
      } else if (state === 'failed') {
        this.endFinding(t('ai.detectFailed', { reason: error }));
      } else if (performance.now() - started > POLL_GIVE_UP_MS) {
        this.endFinding(t('ai.foundNone'));
      } else {
        this.polling = window.setTimeout(() => void poll(Math.min(POLL_MAX_MS, wait * 1.5)), wait);
      }
    };
    this.polling = window.setTimeout(() => void poll(POLL_FIRST_MS), POLL_FIRST_MS);
  }

  /** The built-in finder's pending candidates: a re-run replaces them (new ids). */
  private signature(): string {
    return this.candidates.filter((c) => c.source === 'builtin' && c.status === 'pending')
      .map((c) => c.id).join(',');
  }

  get finding(): boolean {
    return this.findButton.getAttribute('aria-busy') === 'true';
  }

  private endFinding(message: string): void {
    clearTimeout(this.polling);
    this.findButton.disabled = false;
    this.findButton.removeAttribute('aria-busy');
    this.host.say(message, true);
  }
}
