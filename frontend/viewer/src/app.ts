// cloudfilm's patient/clinic viewer: /view/{study} and /view/{study}/compare/{prior}.
// Cornerstone3D stack viewports over the archive's own DICOMweb, with window presets,
// measurements, touch gestures, progressive loading and a position-linked comparison.
// Loaded by main.ts once the study's preview (and, for a single study, the first viewer,
// quickview.ts) is on screen; it takes over the frame main.ts built (shell.ts).
import {
  Enums, RenderingEngine, eventTarget, init as csInit, utilities as csUtils, type Types,
} from '@cornerstonejs/core';
import {
  Enums as ToolEnums, LengthTool, PanTool, StackScrollTool, ToolGroupManager, WindowLevelTool,
  ZoomTool, addTool, annotation, init as toolsInit,
} from '@cornerstonejs/tools';
import { init as loaderInit } from '@cornerstonejs/dicom-image-loader';
import {
  HttpError, getJSON, mainSeries, nearestIndex, type SeriesInfo, type Stack, type StudyInfo,
  listSeries, studyInfo,
} from './dicomweb';
import { registerFrameLoader } from './frames';
import { language, num, t } from './i18n';
import { AiCandidates } from './candidates';
import { NoduleTool, isClinician } from './nodules';
import { Pane, el, type SideName } from './pane';
import type { PaneView } from './paneview';
import type { QuickView } from './quickview';
import type { Actions, LinkKey, Shell, ToolKey, ViewAction } from './shell';
import { PRESETS, toRange, type PresetName } from './windowing';

const { MouseBindings, KeyboardBindings } = ToolEnums;

/** What main.ts hands over: the frame it built, what it fetched, the first viewer. */
export interface Boot {
  shell: Shell;
  left: PaneView;
  placeholder: string | null;
  study: Promise<[StudyInfo, SeriesInfo[]]> | null;
  quick: QuickView | null;
}

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

export { PRESETS };

// --- the shell -----------------------------------------------------------------------------

let shell: Shell;
let boot: Boot;

function say(message: string, stay = false): void {
  shell.say(message, stay);
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
const TOOL_OF: Record<ToolKey, string> = {
  ...Object.fromEntries(TOOLS) as Record<Exclude<ToolKey, 'nodule'>, string>,
  nodule: NODULE_TOOL,
};

function keyOf(tool: string): ToolKey | null {
  return (Object.entries(TOOL_OF) as [ToolKey, string][]).find(([, name]) => name === tool)?.[0]
    ?? null;
}

const links = { scroll: true, window: true, zoom: true };

/** What the toolbar does once Cornerstone has taken over. */
const actions: Actions = {
  tool: (key: ToolKey) => toggleTool(TOOL_OF[key]),
  preset: (name: PresetName) => applyPreset(name),
  view: (action: ViewAction) => ({
    rotate, 'flip-h': () => flip('h'), 'flip-v': () => flip('v'), invert, reset,
    clear: clearMeasurements,
  })[action](),
  prior: () => void openPrior(),
  link: (key: LinkKey, on: boolean) => setLink(key, on),
};

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
  // The mode the reader chose in the first viewer carries over.
  const chosen = shell.pressedTool();
  setPrimaryTool(chosen ? TOOL_OF[chosen] : defaultTool());
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
  const key = keyOf(next);
  if (key) say(t('status.dragMode', { tool: t(`tools.${key}`) }));
}

/** ``?tool=`` names a drag tool, or the nodule tool once the server lets this login measure. */
async function openWantedTool(): Promise<void> {
  const found = TOOLS.find(([key]) => key === wantedTool);
  if (found) setPrimaryTool(found[1]);
  const mayMeasure = await noduleTool.offerIfAllowed(studyUid);
  if (mayMeasure && wantedTool === 'nodule') setPrimaryTool(NODULE_TOOL);
  await candidates.offer(await isClinician(), mayMeasure);
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
  shell.pressTool(keyOf(name));
}

// --- actions on the active pane ------------------------------------------------------------

function render(pane: Pane): void {
  if (pane.shown) pane.viewport.render();
}

function voiFor(name: PresetName, pane: Pane): Types.VOIRange | null {
  const preset = name === 'study' ? pane.stack?.voi : PRESETS[name];
  if (!preset) return null;
  return toRange(preset.width, preset.center);
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

let noduleTool: NoduleTool;

function makeNoduleTool(): NoduleTool {
  return new NoduleTool(shell.toolButtons.get('nodule')!, say,
    () => primaryTool === NODULE_TOOL && candidates.editing === null, (pane, index) => {
      driver = pane;
      return pane.setIndex(index);
    });
}

// --- AI candidates (issue 15) ----------------------------------------------------------------

let candidates: AiCandidates;
let markOpened: () => void = () => {};
/** The first series is on screen (a candidate's slice is shown only after it). */
const firstOpened = new Promise<void>((resolve) => { markOpened = resolve; });

/** The main pane at a candidate's slice (opening its series first if another is shown). */
async function showInstance(series: string, instance: string): Promise<Pane | null> {
  await firstOpened;
  const pane = panes[0];
  if (!pane) return null;
  if (pane.stack?.series !== series && seriesOf.left.some((s) => s.uid === series)) {
    await openSeries(pane, series);
  }
  const index = pane.stack?.series === series ? pane.stack.sops.indexOf(instance) : -1;
  if (index < 0) return null;
  driver = pane;
  await pane.setIndex(index);
  return pane;
}

function makeCandidates(): AiCandidates {
  return new AiCandidates(studyUid, {
    say, goTo: showInstance,
    showMeasurement: (pane, result) => noduleTool.present(pane, result),
  });
}

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
  shell.offsetNote.hidden = Math.abs(offset) < 0.05;
  shell.offsetNote.textContent = t('compare.offset', { offset: num(offset) });
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
  if (pane.side === 'left') candidates.attach(pane);
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
  shell.seriesNav.replaceChildren(...list.map((s) => {
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

async function openSeries(pane: Pane, series: string, placeholder: string | null = null,
                          handover: QuickView | null = null): Promise<void> {
  const study = pane.side === 'left' ? studyUid : priorUid;
  try {
    await pane.open(study, series, placeholder, handover);
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
  const button = shell.priorButton;
  findPrior().then((prior) => {
    button.disabled = !prior;
    if (!prior) {
      button.title = t('compare.noPrior');
      button.setAttribute('aria-label', `${t('compare.prior')}: ${t('compare.noPrior')}`);
    }
  }).catch(() => { button.disabled = true; });
}

// --- start ---------------------------------------------------------------------------------

function fail(error: unknown): void {
  const message = error instanceof HttpError && error.status === 404
    ? t('app.notFound') : t('app.error', { message: String((error as Error)?.message ?? error) });
  say(message, true);
  shell.title.textContent = message;
  shell.app.classList.add('failed');
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
  const fetched = await Promise.all(sides.map((side) => (side === 'left' && boot.study)
    || Promise.all([studyInfo(uids[side]), listSeries(uids[side])])));
  sides.forEach((side, i) => {
    [infoOf[side], seriesOf[side]] = fetched[i];
  });
  shell.showStudy(infoOf.left!, infoOf.right);
  for (const side of sides) {
    const pane = new Pane(side, engine, shell.paneTitle(infoOf[side],
      side === 'left' ? 'pane.current' : 'pane.prior'), side === 'left' ? boot.left : null);
    panes.push(pane);
    if (!pane.root.isConnected) shell.panesEl.append(pane.root);
  }
  engine.setViewports(panes.map((pane) => ({
    viewportId: pane.side, type: Enums.ViewportType.STACK, element: pane.element,
    defaultOptions: { background: [0, 0, 0] as Types.Point3 },
  })));
  panes.forEach(wire);
  driver = panes[0];
  setActive(panes[0]);
  setupTools();
  new ResizeObserver(() => resize()).observe(shell.panesEl);
  if (compare) shell.header.append(shell.offsetNote);
  else checkPrior();
  void openWantedTool();

  const first = seriesOf.left;
  shell.fitSeries(first.length);
  if (!first.length) {
    say(t('app.noImages'));
    shell.title.textContent = t('app.noImages');
    return;
  }
  const quick = boot.quick;
  const leftSeries = first.find((s) => s.uid === (quick?.stack.series ?? wantedSeries))
    ?? mainSeries(first)!;
  const opening = [openSeries(panes[0], leftSeries.uid, boot.placeholder,
    quick?.stack.series === leftSeries.uid ? quick : null)];
  if (compare) {
    const rightSeries = mainSeries(seriesOf.right, leftSeries);
    if (rightSeries) opening.push(openSeries(panes[1], rightSeries.uid));
  }
  await Promise.all(opening);
  markOpened();
  shell.loaded();
  shell.enableAll(actions);
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
  /** The AI candidates as the API listed them (after any decision), and the last error. */
  candidates: () => candidates.candidates,
  candidateError: () => candidates.error,
  finding: () => candidates.finding,
  /** Ids of the candidates circled on the slice on screen. */
  candidateMarkers: (side: SideName = 'left') => Array.from(document.querySelectorAll<SVGElement>(
    `.pane[data-side=${side}] .ai-overlay circle`)).map((c) => Number(c.dataset.candidate)),
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

/** Take over the frame main.ts built (and its first viewer, if it has one). */
export function run(handed: Boot): void {
  boot = handed;
  shell = handed.shell;
  noduleTool = makeNoduleTool();
  candidates = makeCandidates();
  shell.toolButtons.get('nodule')!.parentElement!.after(candidates.toggle);
  shell.app.append(el('div', { className: 'side-panels' }, noduleTool.panel.root, candidates.root));
  start().catch(fail);
}
