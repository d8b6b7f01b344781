// Template rendering: one-pass `{{name}}` substitution. Values are inserted verbatim and never re-scanned,
// so a question that itself contains "{{answer}}" cannot inject into the template. A template naming a
// placeholder that is not supplied is a programming error and throws.

/** A prompt template: a stable id (for logs and metrics), its variant and the text with placeholders. */
export interface Template {
  readonly id: string;
  readonly variant: TemplateVariant;
  readonly text: string;
}

/** `full`: wording close to the reference; `short`: compact wording for small character-level models. */
export type TemplateVariant = 'full' | 'short';

const PLACEHOLDER = /\{\{([a-z_]+)\}\}/g;

/** Fills `{{name}}` placeholders from `values` in one pass. */
export function renderTemplate(text: string, values: Readonly<Record<string, string>>): string {
  return text.replace(PLACEHOLDER, (_m, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`template placeholder {{${name}}} has no value`);
    return v;
  });
}

/** The placeholder names a template text uses, in order of first use. */
export function placeholdersOf(text: string): string[] {
  const names: string[] = [];
  for (const m of text.matchAll(PLACEHOLDER)) {
    const name = m[1] as string;
    if (!names.includes(name)) names.push(name);
  }
  return names;
}
