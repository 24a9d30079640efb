// The viewer's strings: English and Simplified Chinese, chosen by ?lang=, the cf_lang
// cookie (shared with the portal pages) or the browser's languages, in that order.
import en from './i18n/en.json';
import zhHans from './i18n/zh-Hans.json';

type Catalogue = Record<string, string>;

export const CATALOGUES: Record<string, Catalogue> = { en, 'zh-Hans': zhHans };

/** Map any language tag to one we have ("zh", "zh-CN", "zh-Hant-TW" → zh-Hans). */
export function supported(tag: string | null | undefined): string | null {
  if (!tag) return null;
  const lower = tag.trim().toLowerCase();
  if (lower.startsWith('zh')) return 'zh-Hans';
  if (lower.startsWith('en')) return 'en';
  return null;
}

function cookie(name: string): string | null {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return decodeURIComponent(rest.join('='));
  }
  return null;
}

export function chooseLanguage(): string {
  const fromQuery = supported(new URLSearchParams(location.search).get('lang'));
  if (fromQuery) return fromQuery;
  const fromCookie = supported(cookie('cf_lang'));
  if (fromCookie) return fromCookie;
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language]) {
    const found = supported(tag);
    if (found) return found;
  }
  return 'en';
}

export const language = chooseLanguage();
const strings: Catalogue = CATALOGUES[language] ?? en;

/** The string for key with {name} placeholders filled (falls back to English, then the key). */
export function t(key: string, values: Record<string, string | number> = {}): string {
  const template = strings[key] ?? (en as Catalogue)[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name: string) =>
    name in values ? String(values[name]) : `{${name}}`);
}

/** Numbers as the reader expects them (a real minus sign, the locale's decimal mark). */
export function num(value: number, digits = 1): string {
  return new Intl.NumberFormat(language, {
    minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: false,
  }).format(value).replace('-', '−');
}
