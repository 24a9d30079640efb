// Starting the first viewer (quickview.ts), loaded by main.ts as its own small chunk right
// after the first script. On a slow link every byte ahead of another delays it, so the
// order is: the study's series and the server-rendered preview (main.ts), then the series'
// metadata with the HTJ2K codec (77 KB, needed only to decode), then the slice in the
// middle. It resolves with a viewer the reader can already scroll and window, or null where
// Cornerstone should start afresh (nothing it can draw, a failure, nothing drawn in time).
import type { SeriesInfo, StudyInfo } from './dicomweb';
import { loadStack, mainSeries } from './dicomweb';
import type { PaneView } from './paneview';
import { drawable, loadCodec } from './pixels';
import { QuickView } from './quickview';
import type { Shell } from './shell';

const QUICK_WAIT_MS = 15000;  // a first viewer that has drawn nothing by then gives way

export interface QuickStart {
  shell: Shell;
  left: PaneView;
  studyUid: string;
  study: Promise<[StudyInfo, SeriesInfo[]]>;
  query: URLSearchParams;
}

export async function startQuick({ shell, left, studyUid, study, query }: QuickStart):
    Promise<QuickView | null> {
  const [, series] = await study;
  const wanted = series.find((s) => s.uid === query.get('series')) ?? mainSeries(series);
  if (!wanted) return null;
  const loading = loadStack(studyUid, wanted.uid);
  loadCodec().catch(() => undefined);  // on its way while the metadata is
  const stack = await loading;
  if (!drawable(stack.first)) return null;
  const quick = new QuickView(left, stack, shell, query.get('tool'));
  (window as unknown as { cloudfilmQuick: typeof quick.hook }).cloudfilmQuick = quick.hook;
  const drawn = quick.start();
  const late = new Promise<'late'>((resolve) => setTimeout(() => resolve('late'), QUICK_WAIT_MS));
  try {
    if (await Promise.race([drawn.then(() => 'drawn' as const), late]) === 'late') {
      quick.abandon();
      return null;
    }
  } catch (error) {
    console.warn('the first viewer cannot show this series; Cornerstone will', error);
    quick.abandon();
    return null;
  }
  return quick;
}
