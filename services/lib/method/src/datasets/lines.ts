// Bounded streaming line reader for JSONL inputs. Splits a byte (or string) stream on '\n' (a trailing '\r'
// is dropped), decodes each line as UTF-8, and never holds more than `maxLineBytes` of one line: a longer
// line is skipped up to its newline and reported as an oversized line, so a hostile file cannot exhaust
// memory. Line numbers are 1-based.
import { createReadStream } from 'node:fs';

/** One line of input, or the report of a line that was too long to keep. */
export type LineEvent =
  { readonly line: number; readonly text: string } | { readonly line: number; readonly oversized: number };

/** Anything that yields chunks: a Node Readable, a file stream, an array of strings in tests. */
export type ChunkSource = AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>;

const NEWLINE = 0x0a;
const decoder = new TextDecoder('utf-8', { fatal: false });

/** Streams the lines of `source`, bounded to `maxLineBytes` bytes each (default 1 MiB). */
export async function* readLines(source: ChunkSource, maxLineBytes = 1 << 20): AsyncGenerator<LineEvent> {
  let parts: Buffer[] = [];
  let size = 0;
  let oversized = 0; // bytes seen of a line that is being skipped (0 = not skipping)
  let line = 0;

  const finish = (): LineEvent => {
    line++;
    if (oversized > 0) {
      const ev = { line, oversized };
      oversized = 0;
      return ev;
    }
    const buf = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
    parts = [];
    size = 0;
    let text = decoder.decode(buf);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    return { line, text };
  };
  const append = (piece: Buffer): void => {
    if (oversized > 0) {
      oversized += piece.length;
      return;
    }
    if (size + piece.length > maxLineBytes) {
      oversized = size + piece.length;
      parts = [];
      size = 0;
      return;
    }
    if (piece.length > 0) {
      parts.push(piece);
      size += piece.length;
    }
  };

  for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk);
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(NEWLINE, start);
      if (nl < 0) break;
      append(buf.subarray(start, nl));
      yield finish();
      start = nl + 1;
    }
    if (start < buf.length) append(buf.subarray(start));
  }
  if (size > 0 || oversized > 0) yield finish();
}

/** A chunk source over a file (64 KiB reads). */
export function fileChunks(path: string): AsyncIterable<Uint8Array> {
  return createReadStream(path, { highWaterMark: 1 << 16 }) as AsyncIterable<Uint8Array>;
}
