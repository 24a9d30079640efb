// cloudfilm's patient/clinic viewer: /view/{study} and /view/{study}/compare/{prior}.
// Cornerstone3D stack viewports over the archive's own DICOMweb, with window presets,
// measurements, touch gestures, progressive loading and a position-linked comparison.
// Loaded by main.ts once the study's preview is already on screen.
import {
  Enums, RenderingEngine, eventTarget, init as csInit, utilities as csUtils, type Types,
} from '@cornerstonejs/core';
import {
  Enums as ToolEnums, LengthTool, PanTool, StackScrollTool, ToolGroupManager, WindowLevelTool,
  ZoomTool, addTool, annotation, init as toolsInit,
} from '@cornerstonejs/tools';
import { init as loaderInit } from '@cornerstonejs/dicom-image-loader';
import {
  HttpError, getJSON, listSeries, mainSeries, nearestIndex, studyInfo, type SeriesInfo,
  type Stack, type StudyInfo,
} from './dicomweb';
import { registerFrameLoader } from './frames';
import { language, num, t } from './i18n';
import { NoduleTool } from './nodules';
import { Pane, el, type SideName } from './pane';

const { MouseBindings, KeyboardBindings } = ToolEnums;

// --- where we are --------------------------------------------------------------------------

const route = location.pathname.match(/^\/view\/([0-9.]{1,64})(?:\/compare\/([0-9.]{1,64}))?\/?$/);
const studyUid = route?.[1] ?? '';
const priorUid = route?.[2] ?? '';
const compare = Boolean(priorUid);
const wantedSeries = new URLSearchParams(location.search).get('series');
/** ``?tool=nodule`` (the study page's "Measure a nodule" link) or another tool's key. */
const wantedTool = new URLSearchParams(location.search).get('tool');
/** The phone layout (style.css uses the same width): one finger scrolls, W/L is a mode. */
const phone = matchMedia('(max-width: 699px)');

export const PRESETS = {
  lung: { width: 1500, center: -600 },
  mediastinum: { width: 350, center: 40 },
  bone: { width: 2000, center: 300 },
} as const;
type PresetName = keyof typeof PRESETS | 'study';

// --- the shell -----------------------------------------------------------------------------

const status = el('div', { className: 'status', role: 'status', 'aria-live': 'polite' });
let sayTimer = 0;
/** A short message in the live region; it fades after a few seconds unless it must stay. */
function say(message: string, stay = false): void {
  status.textContent = message;
  clearTimeout(sayTimer);
  if (!stay) sayTimer = window.setTimeout(() => { status.textContent = ''; }, 4000);
}

/** A button whose accessible name starts with its visible label (WCAG 2.5.3), then says more. */
function button(label: string, long: string, onClick: () => void, extra: Record<string, unknown> = {}) {
  const name = long.toLowerCase().startsWith(label.toLowerCase()) ? long : `${label}: ${long}`;
  const b = el('button', { type: 'button', title: long, 'aria-label': name, ...extra }, label);
  b.addEventListener('click', onClick);
  return b;
}

function group(labelKey: string, ...children: HTMLElement[]) {
  return el('div', { className: 'group', role: 'group', 'aria-label': t(labelKey) }, ...children);
}

const TOOLS = [
  ['windowLevel', WindowLevelTool.toolName],
  ['pan', PanTool.toolName],
  ['zoom', ZoomTool.toolName],
  ['length', LengthTool.toolName],
  ['scroll', StackScrollTool.toolName],
] as const;

/** Not a Cornerstone tool: a click on the image measures the nodule there (nodules.ts). */
const NODULE_TOOL = 'MeasureNodule';

const toolButtons = new Map<string, HTMLButtonElement>();
const toolGroupEl = group('tools.group', ...[...TOOLS, ['nodule', NODULE_TOOL] as const]
  .map(([key, name]) => {
    const b = button(t(`tools.${key}`), t(`tools.${key}.long`), () => toggleTool(name),
      { 'aria-pressed': 'false', 'data-tool': key, hidden: name === NODULE_TOOL,
        className: key === 'windowLevel' ? 'essential' : '' });
    toolButtons.set(name, b);
    return b;
  }));

const presetGroupEl = group('presets.group',
  ...(['lung', 'mediastinum', 'bone', 'study'] as PresetName[]).map((name) =>
    button(t(`presets.${name}`), t(`presets.${name}.long`), () => applyPreset(name),
      { 'data-preset': name, className: 'essential' })));

const viewGroupEl = group('view.group',
  button(t('view.rotate'), t('view.rotate.long'), () => rotate(), { 'data-action': 'rotate' }),
  button(t('view.flipH'), t('view.flipH.long'), () => flip('h'), { 'data-action': 'flip-h' }),
  button(t('view.flipV'), t('view.flipV.long'), () => flip('v'), { 'data-action': 'flip-v' }),
  button(t('view.invert'), t('view.invert.long'), () => invert(), { 'data-action': 'invert' }),
  button(t('view.reset'), t('view.reset.long'), () => reset(),
    { 'data-action': 'reset', className: 'essential' }),
  button(t('view.clear'), t('view.clear.long'), () => clearMeasurements(), { 'data-action': 'clear' }));

const seriesNav = el('nav', { className: 'series', 'aria-label': t('series.label') });
const seriesToggle = button(t('series.toggle'), t('series.toggle.long'), () => {
  const hidden = seriesNav.hidden = !seriesNav.hidden;
  seriesToggle.setAttribute('aria-expanded', String(!hidden));
}, { 'aria-expanded': 'true', 'data-action': 'series' });

const priorButton = button(t('compare.prior'), t('compare.prior.long'), () => void openPrior(),
  { 'data-action': 'compare', disabled: true, className: 'essential' });

const links = { scroll: true, window: true, zoom: true };
function linkBox(key: keyof typeof links, labelKey: string) {
  const box = el('input', { type: 'checkbox', checked: true, 'data-link': key });
  box.addEventListener('change', () => setLink(key, box.checked));
  return el('label', { className: 'link' }, box, t(labelKey));
}
const offsetNote = el('span', { className: 'offset-note', hidden: true });
const compareGroupEl = compare
  ? el('div', { className: 'group compare', role: 'group', 'aria-label': t('compare.prior') },
    linkBox('scroll', 'compare.linkScroll'), linkBox('window', 'compare.linkWindow'),
    linkBox('zoom', 'compare.linkZoom'),
    el('a', { className: 'button essential', href: `/view/${studyUid}`,
      title: t('compare.close.long'),
      'aria-label': `${t('compare.close')}: ${t('compare.close.long')}` }, t('compare.close')))
  : group('compare.prior', priorButton);

const fullscreenButton = button(t('view.fullscreen'), t('view.fullscreen.long'), () => {
  if (document.fullscreenElement) void document.exitFullscreen();
  else void document.documentElement.requestFullscreen?.();
}, { 'data-action': 'fullscreen', hidden: !document.fullscreenEnabled });
document.addEventListener('fullscreenchange', () => {
  fullscreenButton.textContent = document.fullscreenElement
    ? t('view.exitFullscreen') : t('view.fullscreen');
});

/** On a phone the bar shows the essentials; "More" unfolds the other controls in place. */
const moreButton = button(t('toolbar.more'), t('toolbar.more.long'), () => {
  const open = header.classList.toggle('more-open');
  moreButton.setAttribute('aria-expanded', String(open));
}, { 'aria-expanded': 'false', 'data-action': 'more', className: 'more essential' });

const title = el('h1', { className: 'title' }, t('app.loading'));
const header = el('header', { className: 'bar', role: 'toolbar', 'aria-label': t('toolbar.label') },
  el('a', { className: 'button back essential', href: '/', title: t('app.back'),
    'aria-label': t('app.back') }, '‹'),
  title, moreButton, el('span', { className: 'bar-break', 'aria-hidden': 'true' }),
  seriesToggle, toolGroupEl, presetGroupEl, viewGroupEl, compareGroupEl, fullscreenButton);
const panesEl = el('div', { className: 'panes' });
const app = el('div', { className: `app ${compare ? 'compare' : 'single'}` },
  header, el('main', { className: 'body' }, seriesNav, panesEl), status);

// --- Cornerstone ---------------------------------------------------------------------------

let engine: RenderingEngine;
const panes: Pane[] = [];
let active: Pane;
let driver: Pane;
let offset = 0;            // z(right) − z(left) at the same anatomy, mm
let syncing = false;
const seriesOf: Record<SideName, SeriesInfo[]> = { left: [], right: [] };
const infoOf: Partial<Record<SideName, StudyInfo>> = {};
const TOOL_GROUP = 'cloudfilm';
let primaryTool: string = defaultTool();
let bootPlaceholder: string | null = null;

async function initCornerstone(): Promise<void> {
  csInit();
  loaderInit({ maxWebWorkers: Math.min(4, Math.max(1, (navigator.hardwareConcurrency || 2) - 1)) });
  registerFrameLoader();
  toolsInit();
  for (const tool of [WindowLevelTool, PanTool, ZoomTool, LengthTool, StackScrollTool]) addTool(tool);
  engine = new RenderingEngine('cloudfilm-engine');
}

function toolGroup() {
  return ToolGroupManager.getToolGroup(TOOL_GROUP)!;
}

function setupTools(): void {
  const tg = ToolGroupManager.createToolGroup(TOOL_GROUP)!;
  tg.addTool(WindowLevelTool.toolName);
  tg.addTool(PanTool.toolName);
  tg.addTool(ZoomTool.toolName, { pinchToZoom: true, pan: true });
  tg.addTool(LengthTool.toolName);
  tg.addTool(StackScrollTool.toolName, { debounceIfNotLoaded: false });
  for (const pane of panes) tg.addViewport(pane.side, engine.id);
  setPrimaryTool(defaultTool());
  phone.addEventListener('change', (e) => {
    const before = e.matches ? WindowLevelTool.toolName : StackScrollTool.toolName;
    if (primaryTool === before) setPrimaryTool(defaultTool());
  });
}

/** What one finger (or the left button) does until the reader picks a tool. */
function defaultTool(): string {
  return phone.matches ? StackScrollTool.toolName : WindowLevelTool.toolName;
}

/** A tool button is a mode: tapped again, it hands the drag back to the default tool. */
function toggleTool(name: string): void {
  const next = name === primaryTool && name !== defaultTool() ? defaultTool() : name;
  setPrimaryTool(next);
  const key = [...TOOLS, ['nodule', NODULE_TOOL] as const].find(([, tool]) => tool === next)?.[0];
  if (key) say(t('status.dragMode', { tool: t(`tools.${key}`) }));
}

/** ``?tool=`` names a drag tool, or the nodule tool once the server lets this login measure. */
async function openWantedTool(): Promise<void> {
  const found = TOOLS.find(([key]) => key === wantedTool);
  if (found) setPrimaryTool(found[1]);
  const mayMeasure = await noduleTool.offerIfAllowed(studyUid);
  if (mayMeasure && wantedTool === 'nodule') setPrimaryTool(NODULE_TOOL);
}

/** The left button and one finger do the chosen tool; the rest stay where users expect. */
function setPrimaryTool(name: string): void {
  primaryTool = name;
  const tg = toolGroup();
  for (const [, tool] of TOOLS) tg.setToolPassive(tool, { removeAllBindings: true });
  tg.setToolActive(StackScrollTool.toolName,
    { bindings: [{ mouseButton: MouseBindings.Wheel }, { numTouchPoints: 3 }] });
  tg.setToolActive(ZoomTool.toolName, {
    bindings: [{ mouseButton: MouseBindings.Secondary }, { numTouchPoints: 2 },
      { mouseButton: MouseBindings.Wheel, modifierKey: KeyboardBindings.Ctrl }],
  });
  tg.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
  if (name !== NODULE_TOOL) {
    tg.setToolActive(name, { bindings: [{ mouseButton: MouseBindings.Primary }, { numTouchPoints: 1 }] });
  }
  for (const pane of panes) pane.root.classList.toggle('measuring-nodules', name === NODULE_TOOL);
  for (const [tool, b] of toolButtons) b.setAttribute('aria-pressed', String(tool === name));
}

// --- actions on the active pane ------------------------------------------------------------

function render(pane: Pane): void {
  if (pane.shown) pane.viewport.render();
}

function voiFor(name: PresetName, pane: Pane): Types.VOIRange | null {
  const preset = name === 'study' ? pane.stack?.voi : PRESETS[name];
  if (!preset) return null;
  return csUtils.windowLevel.toLowHighRange(preset.width, preset.center);
}

function applyPreset(name: PresetName): void {
  const targets = compare && links.window ? panes : [active];
  for (const pane of targets) {
    const range = voiFor(name, pane);
    if (!range || !pane.shown) continue;
    withSync(() => pane.viewport.setProperties({ voiRange: range }));
    render(pane);
    pane.refresh();
  }
  say(t('status.presetApplied', { preset: t(`presets.${name}`) }));
}

function rotate(): void {
  const vp = active.viewport;
  const rotation = ((vp.getViewPresentation().rotation ?? 0) + 90) % 360;
  vp.setViewPresentation({ rotation });
  render(active);
}

function flip(direction: 'h' | 'v'): void {
  const vp = active.viewport;
  const camera = vp.getCamera();
  if (direction === 'h') vp.setCamera({ flipHorizontal: !camera.flipHorizontal });
  else vp.setCamera({ flipVertical: !camera.flipVertical });
  render(active);
}

function invert(): void {
  const vp = active.viewport;
  vp.setProperties({ invert: !vp.getProperties().invert });
  render(active);
}

function reset(): void {
  const vp = active.viewport;
  vp.resetProperties();
  vp.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
  vp.resetCamera();
  render(active);
  active.refresh();
}

function clearMeasurements(): void {
  annotation.state.removeAllAnnotations();
  noduleTool.close();
  for (const pane of panes) render(pane);
}

// --- measure nodule (issue 6) ----------------------------------------------------------------

const noduleTool = new NoduleTool(toolButtons.get(NODULE_TOOL)!, say,
  () => primaryTool === NODULE_TOOL, (pane, index) => {
    driver = pane;
    return pane.setIndex(index);
  });

// --- comparison: position-linked scrolling, linked window and zoom --------------------------

function other(pane: Pane): Pane | undefined {
  return panes.find((p) => p !== pane);
}

function withSync(fn: () => void): void {
  const was = syncing;
  syncing = true;
  try {
    fn();
  } finally {
    syncing = was;
  }
}

function parallel(a: Stack, b: Stack): boolean {
  const d = a.normal[0] * b.normal[0] + a.normal[1] * b.normal[1] + a.normal[2] * b.normal[2];
  return Math.abs(d) > 0.9;
}

function span(zs: number[]): [number, number] {
  const finite = zs.filter(Number.isFinite);
  return [Math.min(...finite), Math.max(...finite)];
}

/**
 * Positions are comparable within one frame of reference, and in practice on one scanner
 * (ranges that overlap); otherwise two scans of the same region are aligned at their
 * centres until the user re-links scrolling at the slices they match by eye.
 */
function initialOffset(a: Stack, b: Stack): number {
  if (a.frameOfReference && a.frameOfReference === b.frameOfReference) return 0;
  const [aLo, aHi] = span(a.z);
  const [bLo, bHi] = span(b.z);
  const overlap = Math.min(aHi, bHi) - Math.max(aLo, bLo);
  if (overlap >= 0.5 * Math.min(aHi - aLo, bHi - bLo)) return 0;
  return (bLo + bHi) / 2 - (aLo + aHi) / 2;
}

function showOffset(): void {
  offsetNote.hidden = Math.abs(offset) < 0.05;
  offsetNote.textContent = t('compare.offset', { offset: num(offset) });
}

function followScroll(from: Pane, index: number): void {
  const to = other(from);
  if (!compare || !links.scroll || from !== driver || !to?.stack || !from.stack) return;
  if (!parallel(from.stack, to.stack)) return;
  const z = from.z(index) + (from.side === 'left' ? offset : -offset);
  if (!Number.isFinite(z)) return;
  const target = nearestIndex(to.stack.z, z);
  if (target !== to.targetIndex()) void to.setIndex(target);
}

function followWindow(from: Pane): void {
  const to = other(from);
  if (!compare || !links.window || syncing || from !== driver || !to?.shown) return;
  const voiRange = from.voi();
  if (!voiRange) return;
  withSync(() => to.viewport.setProperties({ voiRange: { ...voiRange } }));
  render(to);
  to.refresh();
}

function followZoom(from: Pane): void {
  const to = other(from);
  if (!compare || !links.zoom || syncing || from !== driver || !to?.shown || !from.shown) return;
  withSync(() => {
    to.viewport.setZoom(from.viewport.getZoom());
    to.viewport.setPan(from.viewport.getPan());
  });
  render(to);
  to.refresh();
}

function setLink(key: keyof typeof links, on: boolean): void {
  links[key] = on;
  if (!on || !compare) return;
  const [left, right] = panes;
  if (key === 'scroll' && left.stack && right.stack) {
    // Re-linking keeps the slices shown now together (a manual registration).
    offset = right.z() - left.z();
    showOffset();
  }
  if (key === 'window') followWindow(driver);
  if (key === 'zoom') followZoom(driver);
}

function wire(pane: Pane): void {
  noduleTool.attach(pane);
  pane.onInteract = (p) => {
    driver = p;
    if (active !== p) setActive(p);
  };
  pane.onIndexChange = (p, index) => followScroll(p, index);
  pane.element.addEventListener(Enums.Events.VOI_MODIFIED, () => followWindow(pane));
  pane.element.addEventListener(Enums.Events.CAMERA_MODIFIED, () => followZoom(pane));
}

/** Keep what the reader set (zoom, pan, rotation, flips) relative to the new size. */
function resize(): void {
  withSync(() => {
    const kept = panes.filter((p) => p.shown)
      .map((p) => [p, p.viewport.getViewPresentation()] as const);
    engine.resize(true, false);
    for (const [p, presentation] of kept) {
      p.viewport.setViewPresentation(presentation);
      p.viewport.render();
    }
  });
}

function setActive(pane: Pane): void {
  active = pane;
  for (const p of panes) p.root.classList.toggle('active', p === pane && compare);
  renderSeriesList();
}

// --- series picker ------------------------------------------------------------------------

function renderSeriesList(): void {
  const list = seriesOf[active.side];
  seriesNav.replaceChildren(...list.map((s) => {
    const label = t('series.item', {
      number: s.number, description: s.description || s.modality, count: s.count,
    });
    const b = el('button', {
      type: 'button', className: 'thumb', title: label, 'aria-label': label,
      'aria-pressed': String(active.stack?.series === s.uid), 'data-series': s.uid,
    },
    el('img', { src: s.thumbnail, alt: '', loading: 'lazy', width: 96, height: 96 }),
    el('span', {}, `${s.description || s.modality}`),
    el('span', { className: 'count' }, t('series.images', { count: s.count })));
    b.addEventListener('click', () => void openSeries(active, s.uid));
    return b;
  }));
}

async function openSeries(pane: Pane, series: string, placeholder: string | null = null): Promise<void> {
  const study = pane.side === 'left' ? studyUid : priorUid;
  try {
    await pane.open(study, series, placeholder);
  } catch (error) {
    fail(error);
    return;
  }
  renderSeriesList();
  const partner = other(pane);
  if (compare && partner?.stack && pane.stack) {
    const [left, right] = panes;
    offset = initialOffset(left.stack!, right.stack!);
    showOffset();
    if (links.window) followWindow(partner);
    const lead = partner.shown ? partner : pane;
    driver = lead;
    followScroll(lead, lead.index());
    if (links.zoom) followZoom(lead);
  }
  markReady();
}

// --- prior ---------------------------------------------------------------------------------

let priorFound: string | null | undefined;

async function findPrior(): Promise<string | null> {
  if (priorFound !== undefined) return priorFound;
  const body = await getJSON<{ prior: string | null }>(
    `/api/studies/${studyUid}/prior`, 'application/json');
  priorFound = body.prior;
  return priorFound;
}

async function openPrior(): Promise<void> {
  say(t('compare.searching'));
  const prior = await findPrior().catch(() => null);
  if (prior) location.assign(`/view/${studyUid}/compare/${prior}${location.search}`);
  else say(t('compare.noPrior'));
}

function checkPrior(): void {
  findPrior().then((prior) => {
    priorButton.disabled = !prior;
    if (!prior) {
      priorButton.title = t('compare.noPrior');
      priorButton.setAttribute('aria-label', `${t('compare.prior')}: ${t('compare.noPrior')}`);
    }
  }).catch(() => { priorButton.disabled = true; });
}

// --- start ---------------------------------------------------------------------------------

function fail(error: unknown): void {
  const message = error instanceof HttpError && error.status === 404
    ? t('app.notFound') : t('app.error', { message: String((error as Error)?.message ?? error) });
  say(message, true);
  title.textContent = message;
  app.classList.add('failed');
}

function paneTitle(info: StudyInfo | undefined, key: string): string {
  const date = info?.date ?? '';
  return compare ? `${t(key)} · ${date}` : [date, info?.description].filter(Boolean).join(' · ');
}

function markReady(): void {
  const ready = panes.length > 0 && panes.every((p) => p.shown);
  hook.ready = ready;
  document.body.dataset.ready = String(ready);
}

async function start(): Promise<void> {
  if (!studyUid) {
    fail(new HttpError(404, 'no study in the address'));
    return;
  }
  await initCornerstone();
  const sides: SideName[] = compare ? ['left', 'right'] : ['left'];
  const uids: Record<SideName, string> = { left: studyUid, right: priorUid };
  const fetched = await Promise.all(sides.map((side) =>
    Promise.all([studyInfo(uids[side]), listSeries(uids[side])])));
  sides.forEach((side, i) => {
    [infoOf[side], seriesOf[side]] = fetched[i];
  });
  const info = infoOf.left!;
  title.textContent = [info.patientName, compare
    ? `${info.date} ↔ ${infoOf.right?.date ?? ''}` : info.date, info.description]
    .filter(Boolean).join(' · ');
  for (const side of sides) {
    const pane = new Pane(side, engine, paneTitle(infoOf[side],
      side === 'left' ? 'pane.current' : 'pane.prior'));
    panes.push(pane);
    panesEl.append(pane.root);
  }
  engine.setViewports(panes.map((pane) => ({
    viewportId: pane.side, type: Enums.ViewportType.STACK, element: pane.element,
    defaultOptions: { background: [0, 0, 0] as Types.Point3 },
  })));
  panes.forEach(wire);
  driver = panes[0];
  setActive(panes[0]);
  setupTools();
  new ResizeObserver(() => resize()).observe(panesEl);
  if (compare) header.append(offsetNote);
  else checkPrior();
  void openWantedTool();

  const first = seriesOf.left;
  if (first.length < 2 && !compare && matchMedia('(max-width: 699px)').matches) {
    seriesNav.hidden = true;  // one series on a phone: keep the room for the image
    seriesToggle.setAttribute('aria-expanded', 'false');
  }
  if (!first.length) {
    say(t('app.noImages'));
    title.textContent = t('app.noImages');
    return;
  }
  const leftSeries = first.find((s) => s.uid === wantedSeries) ?? mainSeries(first)!;
  const opening = [openSeries(panes[0], leftSeries.uid, bootPlaceholder)];
  if (compare) {
    const rightSeries = mainSeries(seriesOf.right, leftSeries);
    if (rightSeries) opening.push(openSeries(panes[1], rightSeries.uid));
  }
  await Promise.all(opening);
  markReady();
}

// --- a small hook for tests and for people poking at the console ----------------------------

function pane(side: SideName = 'left'): Pane {
  const found = panes.find((p) => p.side === side);
  if (!found) throw new Error(`no ${side} pane`);
  return found;
}

const hook = {
  ready: false,
  mode: compare ? 'compare' : 'single',
  language,
  presets: PRESETS,
  get viewports() {
    return Object.fromEntries(panes.map((p) => [p.side, p.viewport]));
  },
  get links() {
    return { ...links };
  },
  offset: () => offset,
  activeTool: () => primaryTool,
  study: (side: SideName = 'left') => pane(side).stack?.study ?? null,
  /** SOP Instance UID and frame number of the image on screen. */
  image: (side: SideName = 'left') => {
    const p = pane(side);
    return p.stack ? { sop: p.stack.sops[p.index()], frame: p.stack.frames[p.index()] } : null;
  },
  series: (side: SideName = 'left') => pane(side).stack?.series ?? null,
  currentIndex: (side: SideName = 'left') => pane(side).index(),
  count: (side: SideName = 'left') => pane(side).count(),
  loaded: (side: SideName = 'left') => pane(side).counts().preview,
  /** Slices in memory as a preview at least, and at full quality. */
  counts: (side: SideName = 'left') => pane(side).counts(),
  /** 'preview' or 'full': the quality of the image on screen (null before the first). */
  quality: (side: SideName = 'left') => pane(side).quality(),
  /** Modality values (e.g. HU) of one row of the image on screen. */
  rowValues: (side: SideName, row: number) => {
    const image = pane(side).viewport.getCornerstoneImage();
    const data = image?.voxelManager?.getScalarData() ?? image?.getPixelData();
    return data ? Array.from(data.subarray(row * image.columns, (row + 1) * image.columns)) : null;
  },
  zOf: (side: SideName = 'left') => pane(side).z(),
  thickness: (side: SideName = 'left') => pane(side).stack?.thickness ?? null,
  pixelSpacing: (side: SideName = 'left') => pane(side).stack?.pixelSpacing ?? null,
  indexNearestZ: (side: SideName, z: number) => nearestIndex(pane(side).stack?.z ?? [], z),
  setIndex: (side: SideName, index: number) => {
    const p = pane(side);
    driver = p;
    return p.setIndex(index);
  },
  voi: (side: SideName = 'left') => pane(side).windowLevel(),
  zoom: (side: SideName = 'left') => pane(side).viewport.getZoom(),
  /** Canvas (CSS px, relative to the viewport element) of an image pixel (column, row). */
  imageToCanvas: (side: SideName, column: number, row: number) => {
    const vp = pane(side).viewport;
    const world = csUtils.imageToWorldCoords(vp.getCurrentImageId(), [column, row]);
    return world ? vp.worldToCanvas(world) : null;
  },
  /** The last "Measure nodule" result (the API's JSON), or the reason it failed. */
  nodule: () => noduleTool.result,
  noduleError: () => noduleTool.error,
  noduleOutline: (side: SideName = 'left') =>
    document.querySelectorAll(`.pane[data-side=${side}] .nodule-overlay polygon`).length,
  measurements: () => annotation.state.getAllAnnotations()
    .filter((a) => a.metadata?.toolName === LengthTool.toolName)
    .map((a) => {
      const stats = Object.values(a.data?.cachedStats ?? {})[0] as
        { length?: number; unit?: string } | undefined;
      return { tool: 'Length', length: stats?.length ?? null, unit: stats?.unit ?? null,
        imageId: a.metadata?.referencedImageId ?? null };
    }),
};
(window as unknown as { cloudfilmViewer: typeof hook }).cloudfilmViewer = hook;

// Announce a finished measurement (screen readers and the status line). World
// coordinates are in mm, so the length is the distance between the two handles.
eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, ((e: CustomEvent) => {
  const a = e.detail?.annotation;
  const points = a?.data?.handles?.points as Types.Point3[] | undefined;
  if (a?.metadata?.toolName !== LengthTool.toolName || points?.length !== 2) return;
  const length = Math.hypot(...points[0].map((v, i) => v - points[1][i]));
  say(t('status.measured', { length: num(length) }));
}) as EventListener);

/** Replace the boot screen with the viewer; ``placeholder`` is the preview already shown. */
export function run(placeholder: string | null): void {
  bootPlaceholder = placeholder;
  document.getElementById('app')!.replaceWith(app);
  app.append(noduleTool.panel.root);
  start().catch(fail);
}
