// Round trips of the typed Model API through the real addon (tiny preset): forward ↔ logprobs ↔ sample
// consistency, SFT and GRPO training, the data-parallel gradient path, frozen reference copies, several models
// at once, work off the JS thread, and every bad input / closed handle / panic reported as a named JS error.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  DEFAULT_ADAMW,
  FrozenModelError,
  InvalidInputError,
  loadNative,
  Model,
  ModelBusyError,
  ModelClosedError,
  NativePanicError,
  KernelError,
  liveModels,
  presetConfig,
  toKernelError,
  type GrpoSequence,
  type ScoredSequence,
} from './index.js';

process.env.SPARK_KERNELS_QUIET_PANICS = '1';

const u32 = (xs: number[]): Uint32Array => Uint32Array.from(xs);

/** A fixed batch of short sequences over the 128-token vocabulary. */
function batch(n: number, len: number, promptLen: number, salt = 0): ScoredSequence[] {
  return Array.from({ length: n }, (_, i) => ({
    tokens: u32(Array.from({ length: len }, (_, t) => (7 * i + 13 * t + salt) % 128)),
    promptLen,
  }));
}

function logSoftmaxAt(logits: Float32Array, row: number, vocab: number, token: number): number {
  const base = row * vocab;
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[base + v] as number);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp((logits[base + v] as number) - max);
  return (logits[base + token] as number) - max - Math.log(sum);
}

async function rejectsWith(
  p: Promise<unknown>,
  cls: new (...a: never[]) => Error,
  re: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

void describe('Model (tiny preset, real addon)', () => {
  void it('creates deterministically from a seed and exposes the HF parameter table', async () => {
    const a = await Model.create('tiny', 3);
    const b = await Model.create(presetConfig('tiny'), 3);
    const c = await Model.create('tiny', 4);
    const [pa, pb, pc] = await Promise.all([a.getParams(), b.getParams(), c.getParams()]);
    assert.equal(pa.length, a.numParams);
    assert.deepEqual(pa, pb);
    assert.notDeepEqual(pa, pc);
    assert.equal(a.paramTable[0]?.name, 'model.embed_tokens.weight');
    assert.ok(a.paramTable.some((p) => p.name === 'model.layers.1.self_attn.q_proj.bias'));
    const last = a.paramTable[a.paramTable.length - 1];
    assert.ok(last);
    assert.equal(last.offset + last.length, a.numParams);
    assert.notEqual(a.id, b.id);
    for (const m of [a, b, c]) m.free();
  });

  void it('logprobs equal log-softmax of forward logits; greedy sampling is deterministic and consistent', async () => {
    const m = await Model.create('tiny', 1);
    const cfg = m.config;
    const seq = batch(1, 12, 5)[0] as ScoredSequence;
    const logits = await m.forward(seq.tokens, 1, 12);
    assert.equal(logits.length, 12 * cfg.vocabSize);
    const [lp] = await m.logprobs([seq]);
    assert.ok(lp);
    assert.equal(lp.length, 7);
    for (let r = 0; r < 7; r++) {
      const pos = 5 + r;
      const expect = logSoftmaxAt(logits, pos - 1, cfg.vocabSize, seq.tokens[pos] as number);
      assert.ok(Math.abs((lp[r] as number) - expect) < 1e-4, `token ${r}: ${lp[r]} vs ${expect}`);
    }
    const req = {
      prompts: [u32([1, 2, 3]), u32([9, 8])],
      temperature: 0,
      topP: 1,
      maxNewTokens: 8,
      stopTokens: [] as number[],
      seed: 5,
    };
    const g1 = await m.sample(req);
    const g2 = await m.sample({ ...req, seed: 99 });
    assert.deepEqual(g1, g2, 'greedy does not depend on the seed');
    // the sampled log-probs are the model's own log-probs of those tokens (KV cache vs full forward)
    for (let i = 0; i < 2; i++) {
      const prompt = req.prompts[i] as Uint32Array;
      const out = g1[i];
      assert.ok(out);
      assert.equal(out.finish, 'length');
      assert.equal(out.tokens.length, 8);
      const full = u32([...prompt, ...out.tokens]);
      const [ref] = await m.logprobs([{ tokens: full, promptLen: prompt.length }]);
      assert.ok(ref);
      for (let t = 0; t < 8; t++)
        assert.ok(Math.abs((ref[t] as number) - (out.logprobs[t] as number)) < 1e-4);
    }
    const s1 = await m.sample({ ...req, temperature: 1, seed: 7 });
    const s2 = await m.sample({ ...req, temperature: 1, seed: 7 });
    assert.deepEqual(s1, s2, 'same seed, same samples');
    const stop = await m.sample({ ...req, stopTokens: [g1[0]?.tokens[2] ?? 0] });
    assert.equal(stop[0]?.finish, 'stop');
    assert.ok((stop[0]?.tokens.length ?? 99) <= 3);
    m.free();
  });

  void it('SFT overfits a fixed batch; GRPO with positive advantage raises the rewarded log-prob', async () => {
    const m = await Model.create('tiny', 2);
    const data = batch(4, 16, 4);
    const opt = { ...DEFAULT_ADAMW, lr: 1e-2 };
    const first = await m.trainStep([data.slice(0, 2), data.slice(2)], { kind: 'sft' }, opt);
    assert.equal(first.tokens, 4 * 12);
    let last = first;
    for (let i = 0; i < 40; i++) last = await m.trainStep([data], { kind: 'sft' }, opt);
    assert.ok(last.loss < first.loss * 0.5, `loss ${first.loss} → ${last.loss}`);
    assert.ok(Number.isFinite(last.gradNorm));

    const g = await Model.create('tiny', 3);
    const ref = await g.cloneFrozen();
    const seq = batch(1, 10, 4, 5)[0] as ScoredSequence;
    const [before] = await g.logprobs([seq]);
    assert.ok(before);
    const grpo: GrpoSequence = { ...seq, advantage: 1, oldLogprobs: before, refLogprobs: before };
    const stats = await g.trainStep(
      [[grpo]],
      { kind: 'grpo', clipEps: 0.2, klCoef: 0.01 },
      { ...DEFAULT_ADAMW, lr: 1e-3 },
    );
    assert.equal(stats.tokens, 6);
    assert.ok(stats.clipFraction >= 0 && stats.clipFraction <= 1);
    const [after] = await g.logprobs([seq]);
    const [frozenAfter] = await ref.logprobs([seq]);
    assert.ok(after && frozenAfter);
    const sum = (x: Float32Array): number => x.reduce((a, b) => a + b, 0);
    assert.ok(sum(after) > sum(before), `rewarded log-prob ${sum(before)} → ${sum(after)}`);
    assert.deepEqual(frozenAfter, before, 'the frozen reference did not move');
    await rejectsWith(ref.trainStep([[seq]], { kind: 'sft' }, DEFAULT_ADAMW), FrozenModelError, /frozen/);
    for (const x of [m, g, ref]) x.free();
  });

  void it('zeroGrads + accumulateGrads + setGrads + applyOptimizer reproduces trainStep (data-parallel path)', async () => {
    const a = await Model.create('tiny', 11);
    const b = await Model.create('tiny', 11);
    const data = batch(4, 12, 3, 2);
    const opt = { ...DEFAULT_ADAMW, lr: 5e-3 };
    const tokens = data.reduce((n, s) => n + s.tokens.length - s.promptLen, 0);
    const stats = await a.trainStep([data.slice(0, 2), data.slice(2)], { kind: 'sft' }, opt);
    // "two workers": each accumulates half, the sums are all-reduced in JS and written back
    await b.zeroGrads();
    await b.accumulateGrads(data.slice(0, 2), { kind: 'sft' }, 1 / tokens);
    const g1 = await b.getGrads();
    await b.zeroGrads();
    const sums = await b.accumulateGrads(data.slice(2), { kind: 'sft' }, 1 / tokens);
    const g2 = await b.getGrads();
    assert.equal(sums.tokens, tokens / 2);
    const reduced = g1.map((x, i) => x + (g2[i] as number));
    await b.setGrads(reduced);
    const norm = await b.applyOptimizer(opt);
    assert.ok(Math.abs(norm - stats.gradNorm) <= 1e-4 * stats.gradNorm, `${norm} vs ${stats.gradNorm}`);
    const [pa, pb] = await Promise.all([a.getParams(), b.getParams()]);
    let maxDiff = 0;
    for (let i = 0; i < pa.length; i++)
      maxDiff = Math.max(maxDiff, Math.abs((pa[i] as number) - (pb[i] as number)));
    assert.ok(maxDiff < 1e-6, `max parameter difference ${maxDiff}`);
    // weight transfer: setParams makes a third model identical
    const c = await Model.create('tiny', 99);
    await c.setParams(pa);
    assert.deepEqual(await c.getParams(), pa);
    for (const x of [a, b, c]) x.free();
  });

  void it('rejects bad inputs with InvalidInputError, in the wrapper and in the raw binding', async () => {
    const m = await Model.create('tiny', 1);
    const vocab = m.config.vocabSize;
    await rejectsWith(m.forward(u32([1, vocab]), 1, 2), InvalidInputError, /not a token id/);
    await rejectsWith(
      m.logprobs([{ tokens: u32([1, 2, 300]), promptLen: 1 }]),
      InvalidInputError,
      /vocab size 128/,
    );
    await rejectsWith(m.logprobs([{ tokens: u32([1, 2]), promptLen: 0 }]), InvalidInputError, /promptLen/);
    await rejectsWith(m.logprobs([]), InvalidInputError, /1\.\./);
    const nan: GrpoSequence = {
      tokens: u32([1, 2, 3]),
      promptLen: 1,
      advantage: Number.NaN,
      oldLogprobs: new Float32Array(2),
      refLogprobs: null,
    };
    await rejectsWith(
      m.trainStep([[nan]], { kind: 'grpo', clipEps: 0.2, klCoef: 0 }, DEFAULT_ADAMW),
      InvalidInputError,
      /advantage/,
    );
    const nanOld = { ...nan, advantage: 1, oldLogprobs: Float32Array.from([0, Number.NaN]) };
    await rejectsWith(
      m.trainStep([[nanOld]], { kind: 'grpo', clipEps: 0.2, klCoef: 0 }, DEFAULT_ADAMW),
      InvalidInputError,
      /oldLogprobs\[1\]/,
    );
    await rejectsWith(
      m.trainStep([[nanOld]], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: Number.NaN }),
      InvalidInputError,
      /optimizer\.lr/,
    );
    const bad = new Float32Array(m.numParams);
    bad[17] = Number.POSITIVE_INFINITY;
    await rejectsWith(m.setParams(bad), InvalidInputError, /params\[17\]/);
    await rejectsWith(
      m.sample({ prompts: [u32([1])], temperature: -1, topP: 1, maxNewTokens: 2, stopTokens: [], seed: 0 }),
      InvalidInputError,
      /temperature/,
    );
    await rejectsWith(
      m.sample({ prompts: [u32([1])], temperature: 1, topP: 1, maxNewTokens: 2, stopTokens: [500], seed: 0 }),
      InvalidInputError,
      /stopTokens/,
    );

    // the same mistakes straight into the binding (no TS validation): still clear errors, never a crash
    const native = loadNative();
    const raw = await native.createModel(native.presetConfig('tiny')!, 1);
    const code = async (p: Promise<unknown>): Promise<string> => {
      try {
        await p;
        return 'resolved';
      } catch (e) {
        return toKernelError(e).code + ': ' + (e as Error).message;
      }
    };
    assert.match(
      await code(native.forward(raw, u32([1, 999]), 1, 2)),
      /ERR_SPARK_INVALID_INPUT: .*token id 999/,
    );
    assert.match(
      await code(native.forward(raw, u32([1, 2, 3]), 1, 2)),
      /ERR_SPARK_INVALID_INPUT: .*do not form/,
    );
    const rawSeq = {
      tokens: u32([1, 2, 3]),
      promptLen: 1,
      advantage: Number.NaN,
      oldLogprobs: new Float32Array(2),
      refLogprobs: null,
    };
    assert.match(
      await code(native.trainStep(raw, [[rawSeq]], { kind: 'grpo', clipEps: 0.2, klCoef: 0 }, DEFAULT_ADAMW)),
      /INVALID_INPUT: .*advantage must be finite/,
    );
    const nanSeq = { ...rawSeq, advantage: 1, oldLogprobs: Float32Array.from([Number.NaN, 0]) };
    assert.match(
      await code(native.trainStep(raw, [[nanSeq]], { kind: 'grpo', clipEps: 0.2, klCoef: 0 }, DEFAULT_ADAMW)),
      /INVALID_INPUT: .*not finite/,
    );
    assert.match(
      await code(native.setParams(raw, new Float32Array(3))),
      /INVALID_INPUT: .*params has 3 values/,
    );
    assert.match(
      await code(native.logprobs(raw, [{ ...rawSeq, advantage: null, promptLen: 1.5 }])),
      /INVALID_INPUT: .*sequences\[0\]\.promptLen must be an integer/,
    );
    assert.match(
      await code(
        native.sample(raw, {
          prompts: [u32([1])],
          temperature: 1,
          topP: 1,
          maxNewTokens: 2,
          stopTokens: null as never,
          seed: -1,
        }),
      ),
      /INVALID_INPUT: .*seed must be an integer/,
    );
    // a JS value of the wrong type is refused by napi-rs's argument conversion (thrown synchronously, with
    // the field named); the Model class calls the binding inside its queue, so its users see a rejection
    const typeError = (f: () => unknown, re: RegExp): void =>
      assert.throws(f, (e: unknown) => {
        assert.ok(toKernelError(e) instanceof InvalidInputError, `got ${String(e)}`);
        assert.match((e as Error).message, re);
        return true;
      });
    typeError(() => native.forward({} as never, u32([1]), 1, 1), /NativeModel/);
    typeError(() => native.logprobs(raw, [{ ...rawSeq, tokens: [1, 2] as never }]), /NativeSequence\.tokens/);
    typeError(() => native.logprobs(raw, [{ tokens: u32([1, 2]) } as never]), /promptLen/);
    typeError(() => native.forward(raw, u32([1]), '1' as never, 1), /String into rust type `f64`/);
    native.freeModel(raw);
    m.free();
  });

  void it('a freed model gives ModelClosedError (wrapper and raw), and free is idempotent', async () => {
    const m = await Model.create('tiny', 1);
    m.free();
    m.free();
    assert.equal(m.closed, true);
    await rejectsWith(m.getParams(), ModelClosedError, /freed/);
    await rejectsWith(
      m.trainStep([batch(1, 4, 1)], { kind: 'sft' }, DEFAULT_ADAMW),
      ModelClosedError,
      /freed/,
    );
    const native = loadNative();
    const raw = await native.createModel(native.presetConfig('tiny')!, 1);
    assert.equal(native.freeModel(raw), true);
    assert.equal(native.freeModel(raw), false);
    await assert.rejects(native.getParams(raw), (e: unknown) => toKernelError(e) instanceof ModelClosedError);
    assert.equal(native.modelInfo(raw).closed, true);
  });

  void it('queues calls per model in order; the raw binding rejects overlap with ModelBusyError', async () => {
    const m = await Model.create('tiny', 4);
    const data = batch(8, 32, 4);
    const before = await m.getParams();
    // not awaited in between: the queue must run trainStep before getParams
    const step = m.trainStep([data], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 1e-2 });
    const params = m.getParams();
    await step;
    assert.notDeepEqual(await params, before);

    const native = loadNative();
    const raw = await native.createModel(native.presetConfig('small')!, 1);
    const seqs = batch(8, 64, 4).map((s) => ({
      ...s,
      advantage: null,
      oldLogprobs: null,
      refLogprobs: null,
    }));
    const long = native.trainStep(raw, [seqs], { kind: 'sft' }, DEFAULT_ADAMW);
    await assert.rejects(native.getParams(raw), (e: unknown) => toKernelError(e) instanceof ModelBusyError);
    // freeing while busy: the running step finishes, later calls see the model closed
    assert.equal(native.freeModel(raw), true);
    await long.catch(() => undefined);
    await assert.rejects(native.getParams(raw), (e: unknown) => toKernelError(e) instanceof ModelClosedError);
    m.free();
  });

  void it('a panic inside a model operation is a NativePanicError and poisons only that model', async () => {
    const native = loadNative();
    const a = await native.createModel(native.presetConfig('tiny')!, 1);
    const b = await Model.create('tiny', 1);
    await assert.rejects(native.debugPanicInModel(a), (e: unknown) => {
      const k = toKernelError(e);
      return k instanceof NativePanicError && /deliberate test panic/.test(k.message);
    });
    await assert.rejects(native.getParams(a), (e: unknown) => {
      const k = toKernelError(e);
      return k instanceof KernelError && /unusable: a previous operation panicked/.test(k.message);
    });
    assert.equal((await b.getParams()).length, b.numParams, 'other models are unaffected');
    native.freeModel(a);
    b.free();
  });

  void it('several models train concurrently, off the JS thread, with the same results as one at a time', async () => {
    const data = batch(8, 64, 8);
    const opt = { ...DEFAULT_ADAMW, lr: 3e-3 };
    const solo = await Model.create('small', 21);
    const soloStats = await solo.trainStep([data], { kind: 'sft' }, opt);
    const soloParams = await solo.getParams();
    solo.free();

    const x = await Model.create('small', 21);
    const y = await Model.create('small', 21);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const t0 = performance.now();
    const [sx, sy] = await Promise.all([
      x.trainStep([data], { kind: 'sft' }, opt),
      y.trainStep([data], { kind: 'sft' }, opt),
    ]);
    const ms = performance.now() - t0;
    clearInterval(timer);
    assert.ok(
      ticks >= Math.floor(ms / 5 / 4),
      `timer fired ${ticks} times during ${ms.toFixed(0)} ms of training`,
    );
    assert.equal(sx.loss, soloStats.loss);
    assert.equal(sy.loss, soloStats.loss);
    assert.deepEqual(await x.getParams(), soloParams);
    assert.deepEqual(await y.getParams(), soloParams);
    x.free();
    y.free();
  });

  void it('free() releases native memory at once; a dropped Model is released by garbage collection', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
      }
    };
    await settle();
    const base = liveModels();
    const m = await Model.create('tiny', 1);
    assert.equal(liveModels(), base + 1);
    m.free();
    assert.equal(liveModels(), base);
    await (async () => {
      for (let i = 0; i < 3; i++) {
        const dropped = await Model.create('tiny', i);
        await dropped.getParams();
      }
    })();
    await settle();
    assert.equal(liveModels(), base, 'unreachable models were finalized');
  });
});
