// Live progress of a job for `spark watch`, `spark submit --watch` and `spark demo`: turns JobEvents into
// lines a person reads — on a TTY one redrawn progress-bar line (step k/N, phase, key rewards and
// accuracies) plus permanent lines for state changes, evaluations and checkpoints; otherwise plain lines,
// one per event. Which figures are "key" is chosen by name (reward*, *acc*), bounded in count.
import {
  JobEventType,
  jobEventTypeToJSON,
  jobStateToJSON,
  phaseToJSON,
  type JobEvent,
} from '@spark/protocol';

/** The short lower-case name of a proto enum value name ("PHASE_POLICY" → "policy"). */
function short(name: string, prefix: string): string {
  return name.startsWith(prefix) ? name.slice(prefix.length).toLowerCase() : name.toLowerCase();
}

export function phaseName(event: JobEvent): string {
  return short(phaseToJSON(event.phase), 'PHASE_');
}

export function stateName(event: JobEvent): string {
  return short(jobStateToJSON(event.state), 'JOB_STATE_');
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** The figures worth a glance: rewards and accuracies first (at most `max`), by name. */
export function keyFigures(metrics: Readonly<Record<string, number>>, max = 6): [string, number][] {
  const entries = Object.entries(metrics).filter(([, v]) => typeof v === 'number');
  const score = (k: string) => (/reward/i.test(k) ? 0 : /acc/i.test(k) ? 1 : /loss|kl/i.test(k) ? 2 : 3);
  return entries
    .filter(([k]) => score(k) < 3)
    .sort(([a], [b]) => score(a) - score(b) || a.localeCompare(b))
    .slice(0, max);
}

function figures(metrics: Readonly<Record<string, number>>, max = 6): string {
  return keyFigures(metrics, max)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join('  ');
}

/** One plain line for an event (no colours, no carriage returns). */
export function formatEvent(event: JobEvent): string {
  const type = short(jobEventTypeToJSON(event.type), 'JOB_EVENT_TYPE_');
  const at = `step ${event.step}`;
  switch (event.type) {
    case JobEventType.JOB_EVENT_TYPE_STATE:
      return `[${event.jobId}] ${stateName(event)}${event.message && event.message !== stateName(event) ? `: ${event.message}` : ''}`;
    case JobEventType.JOB_EVENT_TYPE_PHASE: {
      const secs = event.metrics.seconds ?? event.metrics.phase_seconds;
      return `[${event.jobId}] ${at} ${phaseName(event)}: ${figures(event.metrics) || '(no figures)'}${secs !== undefined ? `  (${fmt(secs)} s)` : ''}`;
    }
    case JobEventType.JOB_EVENT_TYPE_EVAL: {
      // the headline accuracies; the dotted judge diagnostics (`pointwise_accuracy.no_first`, …) are in results
      const headline = Object.fromEntries(Object.entries(event.metrics).filter(([k]) => !k.includes('.')));
      return `[${event.jobId}] eval at ${at}: ${figures(headline, 10) || '(no figures)'}`;
    }
    case JobEventType.JOB_EVENT_TYPE_CHECKPOINT:
      return `[${event.jobId}] checkpoint at ${at}: ${event.message}`;
    default:
      return `[${event.jobId}] ${type} ${at}${event.message ? `: ${event.message}` : ''}`;
  }
}

/** A text progress bar of `width` cells for done/total. */
export function progressBar(done: number, total: number, width = 24): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${Math.round(frac * 100)
    .toString()
    .padStart(3)}%`;
}

/** Writes progress to a stream: a redrawn bar line on a TTY, plain lines otherwise. */
export class ProgressPrinter {
  private barShown = false;
  private lastPhaseFigures = '';

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    /** Total RL steps, when known (0 = unknown: no bar). */
    private readonly totalSteps: number,
  ) {}

  private get tty(): boolean {
    return Boolean(this.out.isTTY);
  }

  private clearBar(): void {
    if (this.barShown) this.out.write('\r\x1b[2K');
    this.barShown = false;
  }

  /** Prints a free line (keeps the bar below it on a TTY). */
  line(text: string): void {
    this.clearBar();
    this.out.write(`${text}\n`);
  }

  event(event: JobEvent): void {
    if (!this.tty || event.type !== JobEventType.JOB_EVENT_TYPE_PHASE) {
      this.line(formatEvent(event));
      return;
    }
    // TTY phase event: redraw the bar line in place.
    this.lastPhaseFigures = figures(event.metrics, 4);
    const bar = this.totalSteps > 0 ? `${progressBar(event.step, this.totalSteps)} ` : '';
    const total = this.totalSteps > 0 ? `/${this.totalSteps}` : '';
    let text = `${bar}step ${event.step}${total} ${phaseName(event)}  ${this.lastPhaseFigures}`;
    const cols = this.out.columns ?? 120;
    if (text.length > cols - 1) text = text.slice(0, Math.max(10, cols - 1));
    this.clearBar();
    this.out.write(text);
    this.barShown = true;
  }

  done(): void {
    this.clearBar();
  }
}
