// The viewer's first script, kept small. It builds the viewer's frame at once (shell.ts,
// paneview.ts), shows the study's server-rendered preview (one small JPEG) and asks for
// the study's series. For a single study it then starts the first viewer (quickstart.ts,
// its own chunk, which fetches the HTJ2K codec): the series' small previews drawn
// on a canvas the reader can scroll and window. Only then does it load Cornerstone
// (app.ts, ~0.9 MB compressed), which takes over at the same slice and window. Nothing
// before app.ts imports Cornerstone: a patient on a slow phone link has a usable viewer
// long before it has arrived.
import './style.css';
import type { QuickView } from './quickview';
import { listSeries, studyInfo, type SeriesInfo, type StudyInfo } from './dicomweb';
import { language, t } from './i18n';
import { PaneView } from './paneview';
import { Shell } from './shell';

document.documentElement.lang = language;
document.title = `${t('app.title')} · cloudfilm`;

const route = location.pathname.match(/^\/view\/([0-9.]{1,64})(?:\/compare\/([0-9.]{1,64}))?\/?$/);
const studyUid = route?.[1] ?? '';
const compare = Boolean(route?.[2]);
const query = new URLSearchParams(location.search);
const shell = new Shell(compare, studyUid);
const left = new PaneView('left', '');
document.getElementById('app')!.replaceWith(shell.app);
shell.panesEl.append(left.root);
shell.say(t('app.loading'), true);

let placeholder: string | null = null;
if (route) {
  placeholder = `/dicomweb/studies/${studyUid}/thumbnail?viewport=256,256`;
  left.onPreviewShown = () => {
    if (!performance.getEntriesByName('cf-preview-left').length) performance.mark('cf-preview-left');
  };
  left.showPreview(placeholder);
}

/** The study's description and series, fetched once for both viewers. */
const study: Promise<[StudyInfo, SeriesInfo[]]> | null = route
  ? Promise.all([studyInfo(studyUid), listSeries(studyUid)]) : null;
study?.then(([info, series]) => {
  if (compare) return;  // app.ts titles both studies
  shell.fitSeries(series.length);
  shell.showStudy(info);
  left.setTitle(shell.paneTitle(info, 'pane.current'));
}).catch(() => undefined);  // app.ts reports the failure

async function firstViewer(): Promise<QuickView | null> {
  if (!study || compare) return null;
  const { startQuick } = await import('./quickstart');
  const quick = await startQuick({ shell, left, studyUid, study, query });
  if (quick) shell.loaded();
  return quick;
}

firstViewer()
  .catch((error) => {
    console.warn('the first viewer did not start', error);
    return null;
  })
  .then((quick) => import('./app').then(({ run }) => run({ shell, left, placeholder, study, quick })))
  .catch((error) => shell.say(t('app.error', { message: String(error?.message ?? error) }), true));
