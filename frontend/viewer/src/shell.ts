// The viewer's frame: the toolbar, the series list, the panes' room and the status line.
// No Cornerstone here: the first script builds it at once, the first viewer (quickview.ts)
// answers the controls it can (window mode, scrolling mode, presets, reset), and app.ts
// answers all of them once Cornerstone has loaded. Controls only Cornerstone can do stay
// disabled until then, so nothing moves when it arrives.
import type { StudyInfo } from './dicomweb';
import { t } from './i18n';
import { el } from './paneview';
import type { PresetName } from './windowing';

export type ToolKey = 'windowLevel' | 'pan' | 'zoom' | 'length' | 'scroll' | 'nodule';
export type ViewAction = 'rotate' | 'flip-h' | 'flip-v' | 'invert' | 'reset' | 'clear';
export type LinkKey = 'scroll' | 'window' | 'zoom';

/** What the controls do: the first viewer's answers, then Cornerstone's. */
export interface Actions {
  tool(key: ToolKey): void;
  preset(name: PresetName): void;
  view(action: ViewAction): void;
  prior(): void;
  link(key: LinkKey, on: boolean): void;
}

const NOTHING: Actions = { tool() {}, preset() {}, view() {}, prior() {}, link() {} };
const TOOL_KEYS: ToolKey[] = ['windowLevel', 'pan', 'zoom', 'length', 'scroll', 'nodule'];
/** What the first viewer can do as well; the rest waits for Cornerstone. */
const EARLY = new Set(['windowLevel', 'scroll', 'reset']);

/** A button whose accessible name starts with its visible label (WCAG 2.5.3), then says more. */
export function button(label: string, long: string, onClick: () => void,
                       extra: Record<string, unknown> = {}): HTMLButtonElement {
  const name = long.toLowerCase().startsWith(label.toLowerCase()) ? long : `${label}: ${long}`;
  const b = el('button', { type: 'button', title: long, 'aria-label': name, ...extra }, label);
  b.addEventListener('click', onClick);
  return b;
}

function group(labelKey: string, ...children: HTMLElement[]): HTMLElement {
  return el('div', { className: 'group', role: 'group', 'aria-label': t(labelKey) }, ...children);
}

export class Shell {
  readonly app: HTMLElement;
  readonly header: HTMLElement;
  readonly title: HTMLElement;
  readonly status: HTMLElement;
  readonly seriesNav: HTMLElement;
  readonly seriesToggle: HTMLButtonElement;
  readonly panesEl: HTMLElement;
  readonly priorButton: HTMLButtonElement;
  readonly offsetNote: HTMLElement;
  readonly toolButtons = new Map<ToolKey, HTMLButtonElement>();
  actions: Actions = NOTHING;
  private readonly later: HTMLElement[] = [];  // disabled until Cornerstone answers them
  private sayTimer = 0;

  constructor(readonly compare: boolean, studyUid: string) {
    this.status = el('div', { className: 'status', role: 'status', 'aria-live': 'polite' });
    const tools = group('tools.group', ...TOOL_KEYS.map((key) => {
      const b = this.control(t(`tools.${key}`), t(`tools.${key}.long`), key,
        () => this.actions.tool(key),
        { 'aria-pressed': 'false', 'data-tool': key, hidden: key === 'nodule',
          className: key === 'windowLevel' ? 'essential' : '' });
      this.toolButtons.set(key, b);
      return b;
    }));
    const presets = group('presets.group',
      ...(['lung', 'mediastinum', 'bone', 'study'] as PresetName[]).map((name) =>
        button(t(`presets.${name}`), t(`presets.${name}.long`), () => this.actions.preset(name),
          { 'data-preset': name, className: 'essential' })));
    const view = (key: string, action: ViewAction, essential = false) =>
      this.control(t(`view.${key}`), t(`view.${key}.long`), action,
        () => this.actions.view(action),
        { 'data-action': action, className: essential ? 'essential' : '' });
    const views = group('view.group', view('rotate', 'rotate'), view('flipH', 'flip-h'),
      view('flipV', 'flip-v'), view('invert', 'invert'), view('reset', 'reset', true),
      view('clear', 'clear'));

    this.seriesNav = el('nav', { className: 'series', 'aria-label': t('series.label') });
    this.seriesToggle = button(t('series.toggle'), t('series.toggle.long'), () => {
      const hidden = this.seriesNav.hidden = !this.seriesNav.hidden;
      this.seriesToggle.setAttribute('aria-expanded', String(!hidden));
    }, { 'aria-expanded': 'true', 'data-action': 'series' });
    this.priorButton = button(t('compare.prior'), t('compare.prior.long'), () => this.actions.prior(),
      { 'data-action': 'compare', disabled: true, className: 'essential' });
    this.offsetNote = el('span', { className: 'offset-note', hidden: true });
    const compareGroup = compare ? this.compareGroup(studyUid) : group('compare.prior', this.priorButton);

    const fullscreen = button(t('view.fullscreen'), t('view.fullscreen.long'), () => {
      if (document.fullscreenElement) void document.exitFullscreen();
      else void document.documentElement.requestFullscreen?.();
    }, { 'data-action': 'fullscreen', hidden: !document.fullscreenEnabled });
    document.addEventListener('fullscreenchange', () => {
      fullscreen.textContent = document.fullscreenElement
        ? t('view.exitFullscreen') : t('view.fullscreen');
    });
    /** On a phone the bar shows the essentials; "More" unfolds the other controls in place. */
    const more = button(t('toolbar.more'), t('toolbar.more.long'), () => {
      const open = this.header.classList.toggle('more-open');
      more.setAttribute('aria-expanded', String(open));
    }, { 'aria-expanded': 'false', 'data-action': 'more', className: 'more essential' });

    this.title = el('h1', { className: 'title' }, t('app.loading'));
    this.header = el('header', { className: 'bar', role: 'toolbar', 'aria-label': t('toolbar.label') },
      el('a', { className: 'button back essential', href: '/', title: t('app.back'),
        'aria-label': t('app.back') }, '‹'),
      this.title, more, el('span', { className: 'bar-break', 'aria-hidden': 'true' }),
      this.seriesToggle, tools, presets, views, compareGroup, fullscreen);
    this.panesEl = el('div', { className: 'panes' });
    this.app = el('div', { className: `app ${compare ? 'compare' : 'single'}` },
      this.header, el('main', { className: 'body' }, this.seriesNav, this.panesEl), this.status);
  }

  /** A control that the first viewer cannot answer is disabled until Cornerstone can. */
  private control(label: string, long: string, key: string, onClick: () => void,
                  extra: Record<string, unknown>): HTMLButtonElement {
    const early = EARLY.has(key);
    const b = button(label, long, onClick, early ? extra : { ...extra, disabled: true });
    if (!early) this.later.push(b);
    return b;
  }

  private compareGroup(studyUid: string): HTMLElement {
    const linkBox = (key: LinkKey, labelKey: string) => {
      const box = el('input', { type: 'checkbox', checked: true, 'data-link': key });
      box.addEventListener('change', () => this.actions.link(key, box.checked));
      return el('label', { className: 'link' }, box, t(labelKey));
    };
    return el('div', { className: 'group compare', role: 'group', 'aria-label': t('compare.prior') },
      linkBox('scroll', 'compare.linkScroll'), linkBox('window', 'compare.linkWindow'),
      linkBox('zoom', 'compare.linkZoom'),
      el('a', { className: 'button essential', href: `/view/${studyUid}`,
        title: t('compare.close.long'),
        'aria-label': `${t('compare.close')}: ${t('compare.close.long')}` }, t('compare.close')));
  }

  /** The patient, date(s) and description in the bar. */
  showStudy(info: StudyInfo, prior?: StudyInfo): void {
    this.title.textContent = [info.patientName, this.compare
      ? `${info.date} ↔ ${prior?.date ?? ''}` : info.date, info.description]
      .filter(Boolean).join(' · ');
  }

  /** What a pane says it shows: "Current · date" beside a prior, else date and description. */
  paneTitle(info: StudyInfo | undefined, key: string): string {
    const date = info?.date ?? '';
    return this.compare ? `${t(key)} · ${date}`
      : [date, info?.description].filter(Boolean).join(' · ');
  }

  /** One series on a phone: its list stays folded, to keep the room for the image (decided
   * before the first image is drawn, so the image does not move when Cornerstone comes). */
  fitSeries(count: number): void {
    if (count < 2 && !this.compare && matchMedia('(max-width: 699px)').matches) {
      this.seriesNav.hidden = true;
      this.seriesToggle.setAttribute('aria-expanded', 'false');
    }
  }

  /** Cornerstone answers every control from now on. */
  enableAll(actions: Actions): void {
    this.actions = actions;
    for (const control of this.later) control.removeAttribute('disabled');
  }

  /** Show which tool one finger or the left button drives. */
  pressTool(key: ToolKey | null): void {
    for (const [tool, b] of this.toolButtons) b.setAttribute('aria-pressed', String(tool === key));
  }

  pressedTool(): ToolKey | null {
    for (const [tool, b] of this.toolButtons) {
      if (b.getAttribute('aria-pressed') === 'true') return tool;
    }
    return null;
  }

  /** Take down the "Loading the study…" message that main.ts put up (not an error). */
  loaded(): void {
    if (this.status.textContent === t('app.loading')) this.say('');
  }

  /** A short message in the live region; it fades after a few seconds unless it must stay. */
  say(message: string, stay = false): void {
    this.status.textContent = message;
    clearTimeout(this.sayTimer);
    if (!stay) this.sayTimer = window.setTimeout(() => { this.status.textContent = ''; }, 4000);
  }
}
