import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { JobEvent, JobEventType, JobState, Phase } from '@spark/protocol';

import { formatEvent, keyFigures, progressBar, ProgressPrinter } from './progress.js';
import {
  accuracyOf,
  computeResults,
  curvePanels,
  formatDiagnosticsTable,
  formatResultsTable,
} from './results.js';
import { escapeXml, niceTicks, renderSvg, scale } from './svg.js';

function ev(
  seq: number,
  type: JobEventType,
  step: number,
  metrics: Record<string, number>,
  extra: Partial<JobEvent> = {},
): JobEvent {
  return JobEvent.fromPartial({
    jobId: 'j1',
    seq,
    type,
    step,
    metrics,
    state: JobState.JOB_STATE_RUNNING,
    ...extra,
  });
}

const EVAL = JobEventType.JOB_EVENT_TYPE_EVAL;
const PHASE = JobEventType.JOB_EVENT_TYPE_PHASE;

describe('SVG writer', () => {
  it('maps data to pixels and picks round ticks', () => {
    assert.equal(scale(5, 0, 10, 100, 200), 150);
    assert.equal(scale(0, 0, 1, 300, 30), 300);
    assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(0, 37, 4), [0, 10, 20, 30]);
    assert.deepEqual(niceTicks(3, 3), [3]);
    assert.deepEqual(niceTicks(NaN, 1), []);
  });

  it('writes one polyline per series with its points in the plot area, escaping names', () => {
    const svg = renderSvg(
      [
        {
          title: 'a <b> & c',
          xLabel: 'step',
          yLabel: 'acc',
          yRange: [0, 1],
          series: [
            {
              name: 'x"y',
              points: [
                [0, 0],
                [5, 0.5],
                [10, 1],
              ],
            },
            {
              name: 'flat',
              points: [
                [0, 0.25],
                [10, NaN],
              ],
            },
          ],
        },
        { title: 'empty', xLabel: 's', yLabel: 'r', series: [] },
      ],
      { width: 800, panelHeight: 300 },
    );
    assert.match(svg, /^<\?xml version="1.0"/);
    assert.match(svg, /<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]* width="800" height="600"/);
    assert.ok(svg.includes('a &lt;b&gt; &amp; c'));
    assert.ok(!svg.includes('a <b>'));
    const lines = [...svg.matchAll(/<polyline data-series="([^"]*)"[^>]* points="([^"]*)"/g)];
    assert.equal(lines.length, 2);
    assert.equal(lines[0]?.[1], 'x&quot;y');
    const pts = (lines[0]?.[2] ?? '').split(' ').map((p) => p.split(',').map(Number));
    assert.equal(pts.length, 3);
    // x: plot area from 56 to 800-170; y: from 300-40 (value 0) up to 30 (value 1).
    assert.deepEqual(pts[0], [56, 260]);
    assert.deepEqual(pts[1], [343, 145]);
    assert.deepEqual(pts[2], [630, 30]);
    assert.equal((lines[1]?.[2] ?? '').split(' ').length, 1, 'the NaN point is dropped');
    assert.match(svg, /no data/);
    assert.equal(svg.match(/<svg/g)?.length, 1);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
  });

  it('keeps only whole-number step ticks when asked', () => {
    const panel = {
      title: 't',
      xLabel: 'step',
      yLabel: 'r',
      series: [
        {
          name: 's',
          points: [
            [0, 0],
            [2, 1],
          ] as [number, number][],
        },
      ],
    };
    const ticks = (svg: string) =>
      [...svg.matchAll(/<text x="[\d.]+" y="\d+" text-anchor="middle" font-size="10">([^<]*)</g)].map(
        (m) => m[1],
      );
    assert.deepEqual(ticks(renderSvg([{ ...panel, integerX: true }])), ['0', '1', '2']);
    assert.deepEqual(ticks(renderSvg([panel])), ['0', '0.5', '1', '1.5', '2']);
  });

  it('escapes every XML special character', () => {
    assert.equal(escapeXml(`<&>"'`), '&lt;&amp;&gt;&quot;&apos;');
  });
});

describe('results table', () => {
  const events = [
    ev(
      1,
      EVAL,
      0,
      { answer_accuracy: 0.05, pointwise_accuracy: 0.5 },
      { message: 'baseline before warm-up' },
    ),
    ev(
      2,
      EVAL,
      0,
      {
        answer_accuracy: 0.2,
        pointwise_accuracy: 0.5,
        pairwise_accuracy: 0.45,
        reflection_accuracy: 0.1,
      },
      { message: 'before RL' },
    ),
    ev(3, PHASE, 1, { 'reward_mean.problem': 0.3 }, { phase: Phase.PHASE_POLICY }),
    ev(
      4,
      PHASE,
      1,
      { 'reward_mean.pointwise': 0.6, 'reward_mean.pairwise': 0.4 },
      { phase: Phase.PHASE_REWARD },
    ),
    ev(5, PHASE, 2, { 'reward_mean.problem': 0.4 }, { phase: Phase.PHASE_POLICY }),
    ev(6, EVAL, 2, {
      answer_accuracy: 0.35,
      pointwise_accuracy: 0.7,
      pairwise_accuracy: 0.65,
      reflection_accuracy: 0.3,
      'pointwise_accuracy.no_first': 0.55,
      'pointwise_yes_share.no_first': 0.25,
    }),
  ];

  it('takes before-RL from the last step-0 eval, the baseline from the labelled one, after-RL from the last', () => {
    const r = computeResults(events);
    assert.deepEqual(r.columns, { baseline: 1, before: 2, after: 6 });
    const answer = r.rows.find((x) => x.key === 'answer');
    assert.equal(answer?.baseline, 0.05);
    assert.equal(answer?.before, 0.2);
    assert.equal(answer?.after, 0.35);
    assert.ok(Math.abs((answer?.change ?? 0) - 0.15) < 1e-12);
    assert.equal(r.rows.find((x) => x.key === 'pairwise')?.baseline, null);
    const table = formatResultsTable(r);
    assert.match(table, /held-out answer accuracy\s+5\.0\s+20\.0\s+35\.0\s+\+15\.0/);
    assert.match(table, /pairwise judge accuracy\s+—\s+45\.0\s+65\.0\s+\+20\.0/);
    // judge diagnostics: only the metrics an eval reported, before/after like the headline
    assert.deepEqual(
      r.judgeDiagnostics.map((d) => [d.key, d.before, d.after]),
      [
        ['pointwise_accuracy.no_first', null, 0.55],
        ['pointwise_yes_share.no_first', null, 0.25],
      ],
    );
    assert.match(formatDiagnosticsTable(r), /pointwise, options No\/B first\s+—\s+55\.0\s+—/);
    assert.equal(formatDiagnosticsTable({ judgeDiagnostics: [] }), '');
  });

  it('shows dashes, not numbers, when RL never evaluated', () => {
    const r = computeResults([events[1] as JobEvent]);
    assert.equal(r.rows[0]?.after, null);
    assert.match(formatResultsTable(r), /held-out answer accuracy\s+20\.0\s+—\s+—/);
  });

  it('finds accuracies under several naming styles', () => {
    assert.equal(accuracyOf({ problem_accuracy: 0.4 }, 'problem'), 0.4);
    assert.equal(accuracyOf({ 'eval/pairwise/accuracy': 0.7 }, 'pairwise'), 0.7);
    assert.equal(accuracyOf({ pointwise_acc_mean: 0.6, pointwise_count: 12 }, 'pointwise'), 0.6);
    assert.equal(accuracyOf({ 'reward_mean.problem': 1 }, 'problem'), undefined);
  });

  it('builds reward and eval curves vs step', () => {
    const [rewards, evals] = curvePanels(events);
    const problem = rewards?.series.find((s) => s.name === 'problem reward');
    assert.deepEqual(problem?.points, [
      [1, 0.3],
      [2, 0.4],
    ]);
    assert.deepEqual(rewards?.series.find((s) => s.name === 'pairwise reward')?.points, [[1, 0.4]]);
    assert.deepEqual(evals?.series.find((s) => s.name === 'held-out answer')?.points, [
      [0, 0.05],
      [0, 0.2],
      [2, 0.35],
    ]);
  });
});

describe('progress output', () => {
  it('formats events as plain lines with the key figures', () => {
    const line = formatEvent(
      ev(
        3,
        PHASE,
        4,
        { 'reward_mean.problem': 0.25, seconds: 3.5, tokens: 1200 },
        { phase: Phase.PHASE_POLICY },
      ),
    );
    assert.equal(line, '[j1] step 4 policy: reward_mean.problem 0.250  (3.50 s)');
    assert.match(
      formatEvent(
        ev(
          9,
          JobEventType.JOB_EVENT_TYPE_STATE,
          5,
          {},
          { state: JobState.JOB_STATE_FAILED, message: 'boom' },
        ),
      ),
      /\[j1\] failed: boom/,
    );
    // an eval line shows the headline accuracies, not the dotted judge diagnostics
    assert.equal(
      formatEvent(
        ev(6, EVAL, 2, {
          answer_accuracy: 0.5,
          'judge_accuracy.family.add': 1,
          'pointwise_accuracy.no_first': 0.25,
          pointwise_accuracy: 0.75,
        }),
      ),
      '[j1] eval at step 2: answer_accuracy 0.500  pointwise_accuracy 0.750',
    );
    assert.deepEqual(
      keyFigures({ z: 1, loss: 2, 'acc/x': 0.5, reward: 0.1 }).map(([k]) => k),
      ['reward', 'acc/x', 'loss'],
    );
  });

  it('draws a bounded bar and redraws in place on a TTY only', () => {
    assert.equal(progressBar(5, 10, 10), '[#####.....]  50%');
    assert.equal(progressBar(20, 10, 4), '[####] 100%');
    let tty = '';
    const ttyOut = Object.assign(
      new (class {
        write(s: string) {
          tty += s;
          return true;
        }
      })(),
      { isTTY: true, columns: 80 },
    );
    const p = new ProgressPrinter(ttyOut as unknown as NodeJS.WritableStream & { isTTY: boolean }, 10);
    p.event(ev(1, PHASE, 1, { 'reward_mean.problem': 0.5 }, { phase: Phase.PHASE_POLICY }));
    p.event(ev(2, PHASE, 2, { 'reward_mean.problem': 0.6 }, { phase: Phase.PHASE_POLICY }));
    p.done();
    assert.ok(tty.includes('\r\x1b[2K'));
    assert.ok(tty.includes('[#####...................]'));
    let plain = '';
    const plainOut = {
      write(s: string) {
        plain += s;
        return true;
      },
    };
    const q = new ProgressPrinter(plainOut as unknown as NodeJS.WritableStream, 10);
    q.event(ev(1, PHASE, 1, { 'reward_mean.problem': 0.5 }, { phase: Phase.PHASE_POLICY }));
    assert.equal(plain, '[j1] step 1 policy: reward_mean.problem 0.500\n');
  });
});
