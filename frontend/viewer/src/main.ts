// The viewer's first, small script: it shows the study's preview at once (one small JPEG
// from the server) and only then loads Cornerstone (about 1.2 MB gzipped), so a patient on
// a slow phone link sees their image long before the full-quality viewer is ready.
import './style.css';
import { language, t } from './i18n';

document.documentElement.lang = language;
document.title = `${t('app.title')} · cloudfilm`;

const route = location.pathname.match(/^\/view\/([0-9.]{1,64})(?:\/compare\/[0-9.]{1,64})?\/?$/);
const boot = document.getElementById('app')!;
boot.textContent = '';
boot.setAttribute('aria-busy', 'true');
const message = document.createElement('p');
message.className = 'boot-message';
message.setAttribute('role', 'status');
message.textContent = t('app.loading');
boot.append(message);

let placeholder: string | null = null;
if (route) {
  placeholder = `/dicomweb/studies/${route[1]}/thumbnail?viewport=256,256`;
  const img = document.createElement('img');
  img.className = 'boot-preview';
  img.alt = t('pane.preview');
  img.decoding = 'async';
  img.addEventListener('load', () => performance.mark('cf-preview-left'));
  img.addEventListener('error', () => img.remove());
  img.src = placeholder;
  boot.prepend(img);
}

import('./app').then(({ run }) => run(placeholder)).catch((error) => {
  message.textContent = t('app.error', { message: String(error?.message ?? error) });
  boot.removeAttribute('aria-busy');
});
