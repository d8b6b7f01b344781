// Reading the Helm chart without helm (not installable here): values.yaml as data and as commented lines,
// the templates' value references and SPARK_* variables, and the services' real config keys, so the chart
// tests can compare the chart against the code it deploys.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { baseServiceShape, envKeyOf } from '@spark/runtime/config';
import { parse as parseYaml } from 'yaml';

export const repoRoot = join(import.meta.dirname, '..', '..');
export const chartDir = join(repoRoot, 'deploy', 'helm', 'spark');

/** values.yaml keys of the service blocks → directory under services/ (as templates/_helpers.tpl says). */
export const SERVICE_BLOCKS: Record<string, string> = {
  coordinator: 'coordinator',
  rollout: 'rollout',
  verifier: 'verifier',
  rewardSynthesis: 'reward-synthesis',
  learner: 'learner',
};

export function readValues(): Record<string, unknown> {
  return parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) as Record<string, unknown>;
}

export function templateFiles(): { name: string; text: string }[] {
  const dir = join(chartDir, 'templates');
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((name) => /\.(yaml|tpl|txt)$/.test(name))
    .sort()
    .map((name) => ({ name, text: readFileSync(join(dir, name), 'utf8') }));
}

/** Whether `path` (dot-separated) names a key of `obj` (the value may be empty or null). */
export function hasPath(obj: unknown, path: string): boolean {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !(part in cur)) return false;
    cur = (cur as Record<string, unknown>)[part];
  }
  return true;
}

/**
 * Keys of values.yaml that lack a `# --` comment: a key is documented when the comment block right above
 * it starts with `# --`; a documented key covers its whole subtree; an undocumented key is fine only when
 * it is a plain grouping mapping whose children are all documented.
 */
export function undocumentedValues(text: string): string[] {
  const lines = text.split('\n');
  interface Entry {
    indent: number;
    path: string;
    documented: boolean;
    isGroup: boolean;
  }
  const entries: Entry[] = [];
  const stack: { indent: number; key: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const m = /^( *)([A-Za-z0-9_.-]+):(.*)$/.exec(line);
    if (!m) continue;
    const indent = m[1]!.length;
    while (stack.length && stack[stack.length - 1]!.indent >= indent) stack.pop();
    const path = [...stack.map((s) => s.key), m[2]!].join('.');
    stack.push({ indent, key: m[2]! });
    let j = i - 1;
    let firstComment: string | null = null;
    while (j >= 0 && /^\s*#/.test(lines[j]!)) firstComment = lines[j--]!.trim();
    const rest = m[3]!.replace(/#.*$/, '').trim();
    entries.push({
      indent,
      path,
      documented: firstComment?.startsWith('# --') ?? false,
      isGroup: rest === '',
    });
  }
  const missing: string[] = [];
  for (let k = 0; k < entries.length; k++) {
    const e = entries[k]!;
    // Covered by a documented ancestor?
    const covered = entries.some((a) => a.documented && e.path.startsWith(a.path + '.'));
    if (covered || e.documented) continue;
    const next = entries[k + 1];
    const hasChildren = next !== undefined && next.path.startsWith(e.path + '.');
    if (e.isGroup && hasChildren) continue; // a grouping key: its children are checked themselves
    missing.push(e.path);
  }
  return missing;
}

/** `.Values.a.b` references (also `$.Values…`, `$root.Values…`) in a template. */
export function valuesReferences(text: string): string[] {
  return [...text.matchAll(/\.Values\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)/g)].map((m) => m[1]!);
}

/** `$var.a.b` references for a template variable bound to a values block. */
export function variableReferences(text: string, variable: string): string[] {
  const re = new RegExp(`\\$${variable}\\.([A-Za-z0-9_]+(?:\\.[A-Za-z0-9_]+)*)`, 'g');
  return [...text.matchAll(re)].map((m) => m[1]!);
}

/** SPARK_* variable names a text sets. */
export function sparkEnvNames(text: string): string[] {
  return [...new Set([...text.matchAll(/\bSPARK_[A-Z0-9_]+\b/g)].map((m) => m[0]))].sort();
}

/** SPARK_<UPPER_SNAKE> of every base config key (what every service accepts). */
export function baseEnvNames(): Map<string, string> {
  return new Map(Object.keys(baseServiceShape).map((k) => [`SPARK_${envKeyOf(k)}`, k]));
}

/**
 * The config keys a service accepts, found by importing its modules (src/config.ts, src/index.ts,
 * src/service/index.ts) and
 * taking every exported object that extends baseServiceShape (all its keys present). Null when the service
 * exports no such shape.
 */
export async function serviceConfigKeys(dir: string): Promise<Set<string> | null> {
  const base = Object.keys(baseServiceShape);
  const keys = new Set<string>();
  let found = false;
  for (const file of ['config.ts', 'index.ts', 'service/index.ts']) {
    const path = join(repoRoot, 'services', dir, 'src', file);
    if (!existsSync(path)) continue;
    const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
    for (const value of Object.values(mod)) {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) continue;
      const shapeKeys = Object.keys(value);
      if (base.every((k) => shapeKeys.includes(k))) {
        found = true;
        for (const k of shapeKeys) keys.add(k);
      }
    }
  }
  return found ? keys : null;
}

/** The per-service config the chart decides itself (the `spark.serviceDefaults` block of _helpers.tpl). */
export function chartServiceDefaults(): Record<string, string[]> {
  const helpers = readFileSync(join(chartDir, 'templates', '_helpers.tpl'), 'utf8');
  const block = /define "spark\.serviceDefaults" -}}\n([\s\S]*?)\n{{- end }}/.exec(helpers)?.[1];
  if (!block) throw new Error('_helpers.tpl has no spark.serviceDefaults block');
  const out: Record<string, string[]> = {};
  let current: string | null = null;
  for (const line of block.split('\n')) {
    const top = /^(\w+):/.exec(line);
    if (top) out[(current = top[1]!)] = [];
    const key = /^ {2}(\w+):/.exec(line);
    if (key && current) out[current]!.push(key[1]!);
  }
  return out;
}
