// Reading multipart/related responses (RFC 2387) as they arrive: DICOMweb frames and
// series pixel data (PS3.18 §8.6.1.3), one part at a time, so a slow link shows each
// slice the moment its bytes are in rather than when the whole series is.

export interface Part {
  contentType: string;
  location: string | null;  // Content-Location: the frame's URL (series pixel data)
  body: Uint8Array;         // its own buffer (safe to hand to a worker)
}

const CRLF = new Uint8Array([13, 10]);
const HEAD_END = new Uint8Array([13, 10, 13, 10]);

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** Where ``pattern`` starts in ``data`` (the first byte is found natively, then compared). */
function indexOf(data: Uint8Array, pattern: Uint8Array, from = 0): number {
  const last = data.length - pattern.length;
  for (let i = data.indexOf(pattern[0], Math.max(0, from)); i >= 0 && i <= last;
    i = data.indexOf(pattern[0], i + 1)) {
    let j = 1;
    while (j < pattern.length && data[i + j] === pattern[j]) j++;
    if (j === pattern.length) return i;
  }
  return -1;
}

export function boundaryOf(contentType: string): string {
  const found = contentType.match(/boundary="?([^";,\s]+)"?/i);
  if (!found) throw new Error(`not a multipart response: ${contentType}`);
  return found[1];
}

/** The transfer-syntax parameter of a part's Content-Type ('' if it has none). */
export function transferSyntaxOf(contentType: string): string {
  return contentType.match(/transfer-syntax="?([0-9.]+|\*)"?/i)?.[1] ?? '';
}

/** Feed it chunks; it returns each part as soon as the delimiter after it has arrived. */
export class MultipartReader {
  private buffer = new Uint8Array(0);
  private readonly delimiter: Uint8Array;  // CRLF "--" boundary: ends a part's body
  private inPart = false;                  // past the part's delimiter line
  private searchFrom = 0;

  constructor(boundary: string) {
    this.delimiter = ascii(`\r\n--${boundary}`);
  }

  push(chunk: Uint8Array): Part[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    this.buffer = joined;
    const parts: Part[] = [];
    for (;;) {
      if (!this.inPart) {
        // The first delimiter has no leading CRLF; later ones had theirs consumed below.
        const at = indexOf(this.buffer, this.delimiter.subarray(2));
        const lineEnd = at < 0 ? -1 : indexOf(this.buffer, CRLF, at);
        if (lineEnd < 0) return parts;
        this.buffer = this.buffer.subarray(lineEnd + 2);
        this.inPart = true;
        this.searchFrom = 0;
      }
      const headEnd = indexOf(this.buffer, HEAD_END);
      if (headEnd < 0) return parts;
      const end = indexOf(this.buffer, this.delimiter, Math.max(headEnd + 4, this.searchFrom));
      if (end < 0) {
        this.searchFrom = Math.max(headEnd + 4, this.buffer.length - this.delimiter.length);
        return parts;
      }
      parts.push(this.part(headEnd, end));
      this.buffer = this.buffer.subarray(end + 2);  // keep "--boundary…" for the next turn
      this.inPart = false;
    }
  }

  private part(headEnd: number, end: number): Part {
    const headers = new Map<string, string>();
    const head = String.fromCharCode(...this.buffer.subarray(0, headEnd));
    for (const line of head.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    return {
      contentType: headers.get('content-type') ?? 'application/octet-stream',
      location: headers.get('content-location') ?? null,
      body: this.buffer.slice(headEnd + 4, end),
    };
  }
}

/**
 * GET a multipart/related resource and call ``onPart`` for each part as it arrives.
 * Rejects with the server's reason on an error status.
 */
export async function readParts(url: string, accept: string, signal: AbortSignal,
                                onPart: (part: Part) => void): Promise<void> {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: accept }, signal });
  if (!response.ok || !response.body) {
    let reason = `${response.status} ${response.statusText}`;
    try {
      reason = (await response.json()).error ?? reason;
    } catch { /* not JSON */ }
    throw new Error(`${url}: ${reason}`);
  }
  const reader = new MultipartReader(boundaryOf(response.headers.get('content-type') ?? ''));
  const stream = response.body.getReader();
  for (;;) {
    const { done, value } = await stream.read();
    if (done) return;
    for (const part of reader.push(value)) onPart(part);
  }
}
