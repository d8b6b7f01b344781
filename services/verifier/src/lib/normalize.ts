// MATH-style answer normalisation: the string rewrite the MATH benchmark's `strip_string` performs, plus the
// small extensions lenient graders add (\text{} unwrapping, unit words, thousands separators, unicode
// minus/π). Pure and linear-time on bounded input (callers cap answers at a few thousand characters).

/** Unit words MATH answers carry after a number ("5 cm", "5\text{ inches}"); stripped when trailing. */
const UNIT_WORDS = [
  'units',
  'unit',
  'square units',
  'sq units',
  'cubic units',
  'cm',
  'mm',
  'km',
  'm',
  'meters',
  'meter',
  'metres',
  'centimeters',
  'kilometers',
  'inches',
  'inch',
  'in',
  'feet',
  'foot',
  'ft',
  'yards',
  'yard',
  'miles',
  'mile',
  'mph',
  'seconds',
  'second',
  'sec',
  's',
  'minutes',
  'minute',
  'min',
  'hours',
  'hour',
  'hrs',
  'days',
  'day',
  'weeks',
  'years',
  'dollars',
  'dollar',
  'cents',
  'cent',
  'degrees',
  'degree',
  'pounds',
  'lbs',
  'kg',
  'grams',
  'g',
  'liters',
  'l',
  'people',
  'students',
  'apples',
];
const UNIT_SET = new Set(UNIT_WORDS);
/** Units that are single letters are only stripped when spelled inside \text{} / \mbox{} (a bare `m` may be a variable). */
const BARE_UNIT_MIN_LEN = 2;

/** Replaces every `\cmd{X}` (one brace level, repeated to a fixed point) by X. */
function unwrapCommand(s: string, cmd: string): string {
  const needle = `\\${cmd}{`;
  for (let guard = 0; guard < 64; guard++) {
    const at = s.indexOf(needle);
    if (at < 0) return s;
    let depth = 0;
    let end = -1;
    for (let i = at + needle.length - 1; i < s.length; i++) {
      const c = s[i];
      if (c === '\\') {
        i++;
        continue;
      }
      if (c === '{') depth++;
      else if (c === '}') {
        depth--;
        if (depth === 0) {
          end = i;
          break;
        }
      }
    }
    if (end < 0) return s;
    s = s.slice(0, at) + s.slice(at + needle.length, end) + s.slice(end + 1);
  }
  return s;
}

/** Splits a trailing run of letters and spaces (a unit phrase candidate) off `s`, by a linear scan. */
function trailingWords(s: string): { head: string; words: string } {
  let i = s.length;
  while (i > 0 && /[a-zA-Z ]/.test(s[i - 1] ?? '')) i--;
  return { head: s.slice(0, i), words: s.slice(i).trim() };
}

/** Drops a trailing `^2` / `^{3}` (square/cubic units). */
function dropUnitPower(s: string): string {
  return s.replace(/\^\{?[23]\}?$/, '');
}

/** `\text{ cm}` / `\mbox{inches}` at the end of an answer: the MATH reference drops it (units). */
function removeTextUnits(s: string): string {
  // MATH's _remove_right_units: "\text{ " splits off units.
  const at = s.indexOf('\\text{ ');
  if (at > 0) s = s.slice(0, at);
  const t = dropUnitPower(s.trimEnd());
  if (!t.endsWith('}')) return s;
  for (const cmd of ['\\text{', '\\mbox{', '\\mathrm{']) {
    const open = t.lastIndexOf(cmd);
    if (open <= 0) continue;
    const inner = t.slice(open + cmd.length, -1);
    if (!/^[a-zA-Z ]+$/.test(inner)) continue;
    if (UNIT_SET.has(inner.trim().toLowerCase()) && t.slice(0, open).trim() !== '') return t.slice(0, open);
  }
  return s;
}

/** A trailing plain unit word after a number ("12 cm", "3 dollars", "5 square units"). */
function removeBareUnits(s: string): string {
  const { head, words } = trailingWords(dropUnitPower(s.trim()));
  const unit = words.toLowerCase();
  const h = head.trim();
  if (unit.length >= BARE_UNIT_MIN_LEN && UNIT_SET.has(unit) && /[0-9}).]$/.test(h) && /[0-9]/.test(h)) {
    return h;
  }
  return s;
}

/** `\sqrt3` → `\sqrt{3}` (MATH's _fix_sqrt). */
function fixSqrt(s: string): string {
  return s.replace(/\\sqrt\s*([0-9a-zA-Z])/g, '\\sqrt{$1}');
}

/** `\frac12` → `\frac{1}{2}`, `\frac1{2}` → `\frac{1}{2}`, `\frac{1}2` → `\frac{1}{2}` (MATH's _fix_fracs). */
function fixFracs(s: string): string {
  return s
    .replace(/\\frac([0-9a-zA-Z])([0-9a-zA-Z])/g, '\\frac{$1}{$2}')
    .replace(/\\frac([0-9a-zA-Z])\{/g, '\\frac{$1}{')
    .replace(/\\frac(\{[^{}]*\})([0-9a-zA-Z])/g, '\\frac$1{$2}');
}

/** `a/b` with integer a, b as the whole answer → `\frac{a}{b}` (MATH's _fix_a_slash_b). */
function fixSlash(s: string): string {
  const m = /^(-?)(\d+)\/(\d+)$/.exec(s);
  if (m) return `${m[1]}\\frac{${m[2]}}{${m[3]}}`;
  return s;
}

/** Unicode forms models emit for ASCII/LaTeX ones. */
function fixUnicode(s: string): string {
  return s
    .replace(/[\u2212\u2013\u2014]/g, '-')
    .replace(/\u00d7/g, '\\times ')
    .replace(/\u00b7|\u22c5/g, '\\cdot ')
    .replace(/\u03c0/g, '\\pi ')
    .replace(/\u221e/g, '\\infty ')
    .replace(/\u00b0/g, '')
    .replace(/\u221a/g, '\\sqrt')
    .replace(/[\u00a0\u2009\u202f]/g, ' ');
}

/** `1,234,567` → `1234567` when the commas are exactly thousands separators. */
export function stripThousands(s: string): string {
  return /^-?\d{1,3}(,\d{3})+(\.\d+)?$/.test(s) ? s.replace(/,/g, '') : s;
}

/**
 * MATH-benchmark normalisation. The steps follow the reference `strip_string` in order, with additions
 * marked (+). The result has no spaces; comparing two results with `===` is the first equivalence rule.
 * `keepSpaces` keeps single spaces (for the symbolic parser, where `\sin x` must not become `\sinx`).
 */
export function normalizeAnswer(
  input: string,
  opts: { keepSpaces?: boolean; keepEquation?: boolean } = {},
): string {
  let s = fixUnicode(input); // (+)
  s = s.replace(/\n/g, '').replace(/\\!/g, '');
  s = s.replace(/\\\\(?=[a-zA-Z])/g, '\\'); // double-escaped commands; `\\` row breaks stay
  s = s.replace(/\\[dt]frac/g, '\\frac');
  s = s.replace(/\\left\s*/g, '').replace(/\\right\s*/g, '');
  s = s.replace(/\\displaystyle/g, ''); // (+)
  s = s.replace(/\^\s*\{\s*\\circ\s*\}/g, '').replace(/\^\s*\\circ/g, '');
  s = s.replace(/\\\$/g, '').replace(/\$/g, '');
  s = s.trim();
  s = s.replace(/\.$/, '').trim(); // (+) trailing sentence period
  s = removeTextUnits(s);
  s = s.replace(/\\%/g, '').replace(/%/g, '');
  s = s.replace(/(?<!\\)\\[,;: ]/g, ' ').replace(/~/g, ' '); // (+) LaTeX spacing commands
  s = unwrapCommand(s, 'text'); // (+)
  s = unwrapCommand(s, 'textbf');
  s = unwrapCommand(s, 'mathrm');
  s = unwrapCommand(s, 'mathbf');
  s = unwrapCommand(s, 'mbox');
  s = removeBareUnits(s).trim(); // (+)
  s = s.replace(/ \./g, ' 0.').replace(/\{\./g, '{0.');
  if (s.length === 0) return s;
  if (s.startsWith('.')) s = `0${s}`;
  // "x = 5" → "5": only a short left-hand side (a variable name), as in the reference.
  const parts = s.split('=');
  if (
    !opts.keepEquation &&
    parts.length === 2 &&
    parts[0] !== undefined &&
    parts[1] !== undefined &&
    parts[0].trim().length <= 2
  ) {
    s = parts[1];
  }
  s = s.replace(/^\s*[a-zA-Z]\s*\\in\s*/, ''); // (+) "x \in [1, 2]" → "[1, 2]"
  s = fixSqrt(s);
  s = opts.keepSpaces ? s.replace(/\s+/g, ' ').trim() : s.replace(/\s+/g, '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  s = stripThousands(s); // (+)
  s = fixSlash(s);
  s = s.replace(/\.$/, ''); // (+)
  return s;
}
