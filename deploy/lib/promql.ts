// PromQL metric references: the metric names a PromQL expression selects, so the dashboards and alert rules
// can be checked against the metric catalog. A small tokenizer, not a full parser: it skips strings, label
// matchers (`{…}`), range/offset durations (`[5m]`), grouping label lists (`by (…)`, `without (…)`,
// `on (…)`, `ignoring (…)`, `group_left (…)`, `group_right (…)`), numbers, keywords, and function names
// (identifiers followed by `(`), aggregation operators. Every identifier left is a metric name.

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'inf',
  'nan',
  // Aggregation operators: followed by `by (…)`/`without (…)` before their parenthesis.
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** Grafana template variables that may appear in expressions, replaced before tokenizing. */
const GRAFANA_VARS = /\$(__rate_interval|__interval|__range|[A-Za-z_][A-Za-z0-9_]*)/g;

/** The distinct metric names referenced by `expr`. Throws on unbalanced brackets or quotes. */
export function metricNamesIn(expr: string): string[] {
  const src = expr.replace(GRAFANA_VARS, (_m, v: string) => (v.startsWith('__') ? '5m' : 'x'));
  const names = new Set<string>();
  let i = 0;
  const n = src.length;
  let skipNextParenGroup = false;
  while (i < n) {
    const c = src[i]!;
    if (c === '"' || c === "'" || c === '`') {
      const end = src.indexOf(c, i + 1);
      if (end < 0) throw new Error(`unterminated string in PromQL: ${expr}`);
      i = end + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      let j = i + 1;
      while (j < n && src[j] !== close) {
        if (src[j] === '"') j = src.indexOf('"', j + 1);
        if (j < 0) throw new Error(`unterminated string in PromQL: ${expr}`);
        j++;
      }
      if (j >= n) throw new Error(`unbalanced "${c}" in PromQL: ${expr}`);
      i = j + 1;
      continue;
    }
    if (c === '(' && skipNextParenGroup) {
      const end = src.indexOf(')', i);
      if (end < 0) throw new Error(`unbalanced "(" in PromQL: ${expr}`);
      i = end + 1;
      skipNextParenGroup = false;
      continue;
    }
    if (/[0-9.]/.test(c)) {
      // Numbers and durations such as 1.5, 1e3, 5m, 1h30m.
      let j = i + 1;
      while (j < n && /[0-9a-zA-Z._]/.test(src[j]!)) j++;
      i = j;
      continue;
    }
    if (/[A-Za-z_:]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_:]/.test(src[j]!)) j++;
      const word = src.slice(i, j);
      let k = j;
      while (k < n && /\s/.test(src[k]!)) k++;
      const lower = word.toLowerCase();
      if (GROUPING.has(lower)) skipNextParenGroup = src[k] === '(';
      else if (KEYWORDS.has(lower)) {
        /* operator keyword */
      } else if (src[k] !== '(') names.add(word);
      i = j;
      continue;
    }
    if (!/\s/.test(c)) skipNextParenGroup = false;
    i++;
  }
  return [...names].sort();
}

/**
 * The vector selectors of `expr` (metric name with its label matchers, without range or offset), in order of
 * appearance and de-duplicated: `rate(a{x="1"}[5m]) / b` → [`a{x="1"}`, `b`]. Grafana variables are left as
 * they are (substitute them first). Each one can be evaluated on its own as an instant query.
 */
export function vectorSelectorsIn(expr: string): string[] {
  const names = new Set(metricNamesIn(expr));
  const out: string[] = [];
  const re =
    /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|([A-Za-z_:][A-Za-z0-9_:]*)(\s*\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})?/g;
  for (const m of expr.matchAll(re)) {
    if (m[1] !== undefined) continue; // a string literal (label value, …)
    const name = m[2]!;
    // A name that is a metric (not a function, keyword or grouping label) and not inside a label matcher.
    if (!names.has(name)) continue;
    const before = expr.slice(0, m.index);
    if (/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*$/.test(before)) continue;
    const sel = `${name}${(m[3] ?? '').trim()}`;
    if (!out.includes(sel)) out.push(sel);
  }
  return out;
}
