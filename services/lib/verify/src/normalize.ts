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
  'hour',
  'week',
  'year',
  'months',
  'month',
  'square',
  'cubic',
  'sq',
  'per',
];
/** Words that only make a unit phrase with another unit word ("square feet", "miles per hour"). */
const UNIT_MODIFIERS = new Set(['square', 'cubic', 'sq', 'per']);
/** Longest unit phrase stripped, in words. */
const MAX_UNIT_WORDS = 4;
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
  // Only a trailing `\text{ …}` (optionally squared): `1 \text{ and } 2` is a list, not "1" and a unit.
  const at = s.indexOf('\\text{ ');
  if (at > 0) {
    const close = s.indexOf('}', at);
    if (close > 0 && /^(\^\{?[23]\}?)?\s*$/.test(s.slice(close + 1))) s = s.slice(0, at);
  }
  const t = dropUnitPower(s.trimEnd());
  if (!t.endsWith('}')) return s;
  for (const cmd of ['\\text{', '\\textnormal{', '\\mbox{', '\\mathrm{']) {
    const open = t.lastIndexOf(cmd);
    if (open <= 0) continue;
    const inner = t.slice(open + cmd.length, -1);
    if (!/^[a-zA-Z ]+$/.test(inner)) continue;
    if (isUnitPhrase(inner) && t.slice(0, open).trim() !== '') return t.slice(0, open);
  }
  return s;
}

/** One to four unit words ("cm", "square feet", "miles per hour"); a modifier alone is not a unit. */
function isUnitPhrase(phrase: string): boolean {
  const unit = phrase.trim().toLowerCase();
  if (UNIT_SET.has(unit) && !UNIT_MODIFIERS.has(unit)) return true;
  const words = unit.split(/\s+/);
  return (
    words.length >= 2 &&
    words.length <= MAX_UNIT_WORDS &&
    words.every((w) => UNIT_SET.has(w)) &&
    words.some((w) => !UNIT_MODIFIERS.has(w))
  );
}

/** A trailing plain unit word after a number ("12 cm", "3 dollars", "5 square units"). */
function removeBareUnits(s: string): string {
  const { head, words } = trailingWords(dropUnitPower(s.trim()));
  const unit = words.toLowerCase();
  const h = head.trim();
  if (unit.length >= BARE_UNIT_MIN_LEN && isUnitPhrase(unit) && /[0-9}).]$/.test(h) && /[0-9]/.test(h)) {
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

/**
 * `1,234,567` → `1234567` when the commas are exactly thousands separators. Applied before spaces are
 * removed: `32, 349` is a list of two numbers, not 32349.
 */
export function stripThousands(s: string): string {
  return /^-?\d{1,3}(,\d{3})+(\.\d+)?$/.test(s) ? s.replace(/,/g, '') : s;
}

/** Relation notations, rewritten to one spelling each (`\geq`, `>=`, `\geqslant` → `\ge`). */
function fixRelations(s: string): string {
  return s
    .replace(/\\(?:geqslant|geq|ge)(?![a-zA-Z])|>=|\u2265/g, '\\ge ')
    .replace(/\\(?:leqslant|leq|le)(?![a-zA-Z])|<=|\u2264/g, '\\le ')
    .replace(/\\(?:neq|ne)(?![a-zA-Z])|!=|\u2260/g, '\\ne ')
    .replace(/\\gt(?![a-zA-Z])/g, '>')
    .replace(/\\lt(?![a-zA-Z])/g, '<');
}

/** Whether `s` has a comma outside (), [], {} (a list, where `=` rules apply per element). */
function hasTopLevelComma(s: string): boolean {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      const n = s[i];
      if (n === '{') depth++;
      else if (n === '}') depth--;
    } else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) return true;
  }
  return false;
}

/**
 * A label-like left side: a variable (`x`, `x_1`, `\theta`), a function value (`f(x)`), or a tuple of
 * variables (`(p,q)`). `x = 5` and `(p,q)=(3,2)` state the answer on the right; `7 = 11a+c` does not.
 */
export function isLabelSide(lhs: string): boolean {
  const t = lhs.replace(/\s+/g, '');
  const name = String.raw`(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_(?:[a-zA-Z0-9]|\{[a-zA-Z0-9]{1,3}\}))?'?`;
  return (
    new RegExp(`^${name}$`).test(t) ||
    new RegExp(`^${name}\\(${name}(?:,${name}){0,3}\\)$`).test(t) ||
    new RegExp(`^[(\\[]${name}(?:,${name}){1,7}[)\\]]$`).test(t)
  );
}

/** A plain number (the computed result at the end of `2+3=5`). */
function isPlainNumber(s: string): boolean {
  return (
    /^-?\d+(?:\.\d+)?$/.test(s.replace(/\s+/g, '')) || /^-?\\frac\{\d+\}\{\d+\}$/.test(s.replace(/\s+/g, ''))
  );
}

/** Splits at `=` and `\approx` outside (), [], {} (`\sum_{k=1}` holds no equation). */
function splitRelationChain(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let last = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (depth === 0 && c === '=') {
      parts.push(s.slice(last, i));
      last = i + 1;
    } else if (depth === 0 && s.startsWith('\\approx', i) && !/[a-zA-Z]/.test(s[i + 7] ?? '')) {
      parts.push(s.slice(last, i));
      last = i + 7;
    }
  }
  parts.push(s.slice(last));
  return parts;
}

/**
 * The answer stated by an equation or a chain of `=` / `\approx`: the last part when the first part is a
 * label (`x = 5`, `f(x) = 2x+1`, `A = \pi r^2 = 16\pi`) or when the last part is a plain number (the result
 * of a computation, `2 \cdot 3 = 6`). Otherwise (`7 = 11a+c`) the equation is left whole. Null when `s` is
 * not an equation.
 */
export function statedValue(s: string): string | null {
  if (hasTopLevelComma(s)) return null;
  const parts = splitRelationChain(s);
  if (parts.length < 2 || parts.length > 8) return null;
  const first = parts[0] ?? '';
  const last = (parts[parts.length - 1] ?? '').trim();
  if (last === '' || first.trim() === '') return null;
  if (isLabelSide(first) || isPlainNumber(last)) return last;
  return null;
}

const PLAIN_NUMBER = /^-?\d+(?:\.\d+)?$/;
const GROUPED_NUMBER = /^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/;

/**
 * MATH-benchmark normalisation. The steps follow the reference `strip_string` in order, with additions
 * marked (+). The result has no spaces; comparing two results with `===` is the first equivalence rule.
 * `keepSpaces` keeps single spaces (for the symbolic parser, where `\sin x` must not become `\sinx`).
 */
export function normalizeAnswer(
  input: string,
  opts: { keepSpaces?: boolean; keepEquation?: boolean } = {},
): string {
  // Fast path for the commonest answers, plain and thousands-grouped decimals: the result the rule chain
  // below gives them, without running it (rules.test.ts checks the two agree).
  if (PLAIN_NUMBER.test(input)) return input === '0.5' ? '\\frac{1}{2}' : input;
  if (GROUPED_NUMBER.test(input)) return input.replace(/,/g, '');
  let s = fixUnicode(input); // (+)
  s = s.trim();
  // (+) `\( … \)` and `\[ … \]` around the whole answer.
  if ((s.startsWith('\\(') && s.endsWith('\\)')) || (s.startsWith('\\[') && s.endsWith('\\]'))) {
    s = s.slice(2, -2);
  }
  s = s.replace(/(\d),\\!\s*(?=\d)/g, '$1'); // (+) `10,\!000`, `1,\!00,\!000`: explicit digit groups
  s = s.replace(/\n/g, '').replace(/\\!/g, '');
  s = s.replace(/\\\\(?=[a-zA-Z])/g, '\\'); // double-escaped commands; `\\` row breaks stay
  s = s.replace(/\\[dt]frac/g, '\\frac');
  s = s.replace(/\\left\s*/g, '').replace(/\\right\s*/g, '');
  s = s.replace(/\\displaystyle/g, ''); // (+)
  s = s.replace(/\^\s*\{\s*\\circ\s*\}/g, '').replace(/\^\s*\\circ/g, '');
  s = s.replace(/\\\$/g, '').replace(/\$/g, '');
  s = s.trim();
  s = s.replace(/\.$/, '').trim(); // (+) trailing sentence period
  s = s.replace(/\\textnormal\{/g, '\\text{'); // (+)
  // (+) "28 percent", "28 pct", "28\text{ percent}" → "28\%".
  s = s.replace(/(\d)\s*(?:\\(?:text|mbox)\{\s*)?(?:percent|per cent|pct)\.?\s*\}?$/i, '$1\\%');
  s = removeTextUnits(s);
  s = s.replace(/\\%/g, '').replace(/%/g, '');
  s = s.replace(/(?<!\\)\\[,;: ]/g, ' ').replace(/~/g, ' '); // (+) LaTeX spacing commands
  s = unwrapCommand(s, 'text'); // (+)
  s = unwrapCommand(s, 'textbf');
  s = unwrapCommand(s, 'mathrm');
  s = unwrapCommand(s, 'mathbf');
  s = unwrapCommand(s, 'mbox');
  s = removeBareUnits(s).trim(); // (+)
  s = fixRelations(s); // (+)
  // (+) Lists written with words or semicolons: "1 and 2", "x=1 or x=2", "1; 2; 3" → "1, 2, 3".
  s = s.replace(/\s+(?:and|or)\s+/g, ', ').replace(/;/g, ', ');
  // (+) A mixed number written with a space: "7 3/4" (spaces are removed below, which would read 73/4).
  s = s.replace(/^(-?\d+)\s+(\d+)\s*\/\s*(\d+)$/, (m: string, w: string, a: string, b: string) =>
    Number(a) < Number(b) ? `${w}\\frac{${a}}{${b}}` : m,
  );
  if (!/\s/.test(s.replace(/\\[a-zA-Z]+\s/g, ''))) s = stripThousands(s); // (+) before spaces go
  s = s.replace(/ \./g, ' 0.').replace(/\{\./g, '{0.');
  if (s.length === 0) return s;
  if (s.startsWith('.')) s = `0${s}`;
  // "x = 5" → "5" (the reference drops a left side of at most 2 characters). Spark keeps the right side
  // only when the left side is a label or the right side is a plain number, and takes the last part of a
  // chain (`x = 2 \cdot 3 = 6`, `\frac{22}{7} \approx 3.14`): `7 = 11a+c` stays an equation.
  if (!opts.keepEquation) {
    const v = statedValue(s);
    if (v !== null) s = v;
  }
  s = s.replace(/^\s*[a-zA-Z]\s*\\in\s*/, ''); // (+) "x \in [1, 2]" → "[1, 2]"
  s = fixSqrt(s);
  s = opts.keepSpaces ? s.replace(/\s+/g, ' ').trim() : s.replace(/\s+/g, '');
  s = fixFracs(s);
  if (s === '0.5') s = '\\frac{1}{2}';
  s = fixSlash(s);
  s = s.replace(/\.$/, ''); // (+)
  return s;
}
