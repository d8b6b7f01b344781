// A minimal `\boxed{…}` / `\fbox{…}` extractor with brace matching, used by the loaders to read MATH-style
// gold answers (the full verifier, with its equivalence rules, lives in the verifier package). Linear in
// the input, never throws: an unterminated box is ignored.

const OPENERS = ['\\boxed{', '\\fbox{'] as const;

/** The contents of every complete `\boxed{…}` / `\fbox{…}` in `text`, in order of their start. */
export function allBoxed(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  // next known position of each opener (-1: none left); re-searched only when passed, so the scan is linear
  const next = OPENERS.map((o) => text.indexOf(o));
  while (i < text.length) {
    let at = -1;
    let opener = '';
    OPENERS.forEach((o, n) => {
      let k = next[n] as number;
      if (k >= 0 && k < i) k = next[n] = text.indexOf(o, i);
      if (k >= 0 && (at < 0 || k < at)) {
        at = k;
        opener = o;
      }
    });
    if (at < 0) break;
    const start = at + opener.length;
    let depth = 1;
    let j = start;
    for (; j < text.length && depth > 0; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x5c /* \ */)
        j++; // skip an escaped character such as \{ or \}
      else if (c === 0x7b /* { */) depth++;
      else if (c === 0x7d /* } */) depth--;
    }
    if (depth !== 0) break; // unterminated: nothing further can close either
    out.push(text.slice(start, j - 1));
    i = j;
  }
  return out;
}

/** The contents of the last complete box, or null. */
export function lastBoxed(text: string): string | null {
  const all = allBoxed(text);
  return all.length ? (all[all.length - 1] as string) : null;
}

/** The contents of the first complete box, or null. */
export function firstBoxed(text: string): string | null {
  return allBoxed(text)[0] ?? null;
}
