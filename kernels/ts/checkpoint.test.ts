// Checkpoints through the real addon: save → load is exact (weights, config.json, optimizer state), a BF16
// safetensors file written here loads with bf16 values, sharded checkpoints load through their index, and
// truncated or lying files, wrong shapes and malformed config.json each fail with a named error.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  CheckpointFormatError,
  ConfigError,
  DEFAULT_ADAMW,
  InvalidInputError,
  KernelIoError,
  loadNative,
  Model,
  parseHfConfig,
  toHfConfig,
  toKernelError,
  type ParamInfo,
} from './index.js';

const root = mkdtempSync(join(tmpdir(), 'spark-kernels-ckpt-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const dir = (): string => join(root, `c${n++}`);

/** A safetensors file from raw tensors (dtype F32 or BF16), written byte by byte as the format says. */
function writeSafetensors(
  path: string,
  tensors: { name: string; dtype: 'F32' | 'BF16'; shape: readonly number[]; bytes: Uint8Array }[],
  patchHeader: (h: Record<string, unknown>) => void = () => undefined,
  truncateBy = 0,
): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  patchHeader(header);
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const all = Buffer.concat([len, json, ...tensors.map((t) => Buffer.from(t.bytes))]);
  writeFileSync(path, all.subarray(0, all.length - truncateBy));
}

/** Round-to-nearest-even f32 → bf16 bits. */
function toBf16(x: number): number {
  const f = new Float32Array([x]);
  const bits = new Uint32Array(f.buffer)[0] as number;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function bf16ToF32(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0] as number;
}

function tensorsOf(params: Float32Array, table: readonly ParamInfo[], dtype: 'F32' | 'BF16') {
  return table.map((p) => {
    const slice = params.subarray(p.offset, p.offset + p.length);
    const bytes =
      dtype === 'F32'
        ? new Uint8Array(Float32Array.from(slice).buffer)
        : new Uint8Array(Uint16Array.from(slice, (x) => toBf16(x)).buffer);
    return { name: p.name, dtype, shape: p.shape, bytes };
  });
}

void describe('checkpoints', () => {
  void it('save → load round trip is exact, optimizer state included', async () => {
    const m = await Model.create('tiny', 5);
    const seq = { tokens: Uint32Array.from([1, 5, 9, 13, 17, 21]), promptLen: 2 };
    await m.trainStep([[seq]], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 1e-2 });
    const d = dir();
    await m.save(d, { optimizer: true });
    const cfgJson = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(cfgJson.model_type, 'qwen2');
    assert.deepEqual(cfgJson.architectures, ['Qwen2ForCausalLM']);
    assert.equal(cfgJson.rms_norm_eps, 1e-6);
    const back = await Model.load(d, { optimizer: true });
    assert.deepEqual(back.config, m.config);
    assert.deepEqual(await back.getParams(), await m.getParams());
    const [so, sb] = [await m.getOptimizerState(), await back.getOptimizerState()];
    assert.equal(sb.step, 1);
    assert.deepEqual(sb, so);
    // identical state → identical next step
    const [a, b] = await Promise.all([
      m.trainStep([[seq]], { kind: 'sft' }, DEFAULT_ADAMW),
      back.trainStep([[seq]], { kind: 'sft' }, DEFAULT_ADAMW),
    ]);
    assert.deepEqual(a, b);
    m.free();
    back.free();
  });

  void it('Model.load builds the model from the files alone; the raw loadModel rejects bad arguments', async () => {
    const src = await Model.create('tiny', 12);
    const d = dir();
    await src.save(d);
    const m = await Model.load(d);
    assert.deepEqual(await m.getParams(), await src.getParams());
    // gradient and optimizer buffers appear with the first training call, zeroed
    const g = await m.getGrads();
    assert.equal(g.length, m.numParams);
    assert.ok(g.every((x) => x === 0));
    const native = loadNative();
    const cfg = native.presetConfig('tiny')!;
    const file = join(d, 'model.safetensors');
    await assert.rejects(native.loadModel({ ...cfg, hidden_size: 64.5 }, [file]), (e: unknown) => {
      assert.ok(toKernelError(e) instanceof InvalidInputError, String(e));
      assert.match((e as Error).message, /config\.hidden_size must be an integer/);
      return true;
    });
    await assert.rejects(native.loadModel(cfg, []), /files must list/);
    await assert.rejects(
      native.loadModel(cfg, [join(d, 'nope.safetensors')]),
      (e: unknown) => toKernelError(e) instanceof KernelIoError,
    );
    await assert.rejects(
      native.loadModel({ ...cfg, num_hidden_layers: 3 }, [file]),
      (e: unknown) =>
        toKernelError(e) instanceof CheckpointFormatError && /missing/.test((e as Error).message),
    );
    src.free();
    m.free();
  });

  void it('loads a BF16 safetensors file (and an untied, bias-free Llama config)', async () => {
    const cfg = {
      hiddenSize: 32,
      intermediateSize: 64,
      numHiddenLayers: 1,
      numAttentionHeads: 4,
      numKeyValueHeads: 1,
      vocabSize: 50,
      rmsNormEps: 1e-5,
      ropeTheta: 500000,
      tieWordEmbeddings: false,
      maxPositionEmbeddings: 64,
      attentionBias: false,
    };
    const src = await Model.create(cfg, 8);
    const params = await src.getParams();
    assert.ok(src.paramTable.some((p) => p.name === 'lm_head.weight'));
    assert.ok(!src.paramTable.some((p) => p.name.endsWith('q_proj.bias')));
    const d = dir();
    await src.save(d);
    writeSafetensors(join(d, 'model.safetensors'), tensorsOf(params, src.paramTable, 'BF16'));
    const m = await Model.load(d);
    assert.equal(m.config.attentionBias, false);
    const loaded = await m.getParams();
    for (let i = 0; i < params.length; i++) {
      assert.equal(loaded[i], bf16ToF32(toBf16(params[i] as number)), `param ${i}`);
    }
    src.free();
    m.free();
  });

  void it('loads a sharded checkpoint through model.safetensors.index.json', async () => {
    const src = await Model.create('tiny', 9);
    const params = await src.getParams();
    const d = dir();
    await src.save(d);
    rmSync(join(d, 'model.safetensors'));
    const all = tensorsOf(params, src.paramTable, 'F32');
    const half = Math.floor(all.length / 2);
    const shards = {
      'model-00001-of-00002.safetensors': all.slice(0, half),
      'model-00002-of-00002.safetensors': all.slice(half),
    };
    const weightMap: Record<string, string> = {};
    for (const [file, ts] of Object.entries(shards)) {
      writeSafetensors(join(d, file), ts);
      for (const t of ts) weightMap[t.name] = file;
    }
    writeFileSync(
      join(d, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    const m = await Model.load(d);
    assert.deepEqual(await m.getParams(), params);
    src.free();
    m.free();
  });

  void it('truncated files, lying headers and wrong shapes are CheckpointFormatErrors; the model is unchanged', async () => {
    const m = await Model.create('tiny', 1);
    const params = await m.getParams();
    const good = tensorsOf(params, m.paramTable, 'F32');
    const cases: [string, () => void, RegExp][] = [
      [
        'truncated',
        () => writeSafetensors(join(root, 'x.safetensors'), good, undefined, 100),
        /beyond the data buffer|truncated/,
      ],
      [
        'offsets past the end',
        () =>
          writeSafetensors(join(root, 'x.safetensors'), good, (h) => {
            (h['model.norm.weight'] as { data_offsets: number[] }).data_offsets = [0, 1 << 30];
          }),
        /model\.norm\.weight/,
      ],
      [
        'overlapping tensors',
        () =>
          writeSafetensors(join(root, 'x.safetensors'), good, (h) => {
            const first = h['model.embed_tokens.weight'] as { data_offsets: number[] };
            const norm = h['model.norm.weight'] as { shape: number[]; data_offsets: number[] };
            norm.data_offsets = [first.data_offsets[0] ?? 0, (first.data_offsets[0] ?? 0) + 256];
          }),
        /overlaps|hole|trailing/,
      ],
      [
        'header length larger than the file',
        () => {
          const b = Buffer.alloc(16);
          b.writeBigUInt64LE(1000n);
          writeFileSync(join(root, 'x.safetensors'), b);
        },
        /exceeds the file/,
      ],
      [
        'not JSON',
        () =>
          writeFileSync(
            join(root, 'x.safetensors'),
            Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{{{{')]),
          ),
        /header JSON/,
      ],
      [
        'wrong shape for the config',
        () => {
          const wrong = good.map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [8, 8] } : t));
          writeSafetensors(join(root, 'x.safetensors'), wrong);
        },
        /model\.norm\.weight.*shape \[8, 8\].*needs \[64\]/,
      ],
      ['a missing tensor', () => writeSafetensors(join(root, 'x.safetensors'), good.slice(1)), /missing/],
      [
        'an unexpected tensor',
        () =>
          writeSafetensors(join(root, 'x.safetensors'), [
            ...good,
            { name: 'extra.weight', dtype: 'F32', shape: [1], bytes: new Uint8Array(4) },
          ]),
        /unexpected tensor "extra\.weight"/,
      ],
    ];
    for (const [what, write, re] of cases) {
      write();
      await assert.rejects(m.loadWeights([join(root, 'x.safetensors')]), (e: unknown) => {
        assert.ok(e instanceof CheckpointFormatError, `${what}: got ${String(e)}`);
        assert.match((e as Error).message, re, what);
        return true;
      });
    }
    await assert.rejects(m.loadWeights([join(root, 'missing.safetensors')]), KernelIoError);
    assert.deepEqual(await m.getParams(), params, 'failed loads left the weights untouched');
    m.free();
  });

  void it('config.json problems are ConfigErrors listing the bad fields', async () => {
    const good = toHfConfig((await Model.create('tiny', 1)).config);
    assert.deepEqual(parseHfConfig(JSON.stringify(good)).hiddenSize, 64);
    assert.throws(() => parseHfConfig('{"hidden_size": 64,'), ConfigError);
    assert.throws(() => parseHfConfig('[]'), /must be a JSON object/);
    assert.throws(
      () => parseHfConfig(JSON.stringify({ ...good, hidden_size: -1, vocab_size: 'x' })),
      (e: unknown) =>
        e instanceof ConfigError && /hidden_size/.test(e.message) && /vocab_size/.test(e.message),
    );
    assert.throws(
      () => parseHfConfig(JSON.stringify({ ...good, num_attention_heads: 5 })),
      /not a multiple|multiple/,
    );
    assert.throws(
      () =>
        parseHfConfig(JSON.stringify({ ...good, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] })),
      /unsupported architecture/,
    );
    assert.throws(
      () => parseHfConfig(JSON.stringify({ ...good, rope_scaling: { type: 'yarn' } })),
      /rope_scaling/,
    );
    // a real Qwen2.5-0.5B config.json parses (fields as published)
    const qwen = parseHfConfig(
      JSON.stringify({
        architectures: ['Qwen2ForCausalLM'],
        attention_dropout: 0.0,
        bos_token_id: 151643,
        eos_token_id: 151643,
        hidden_act: 'silu',
        hidden_size: 896,
        initializer_range: 0.02,
        intermediate_size: 4864,
        max_position_embeddings: 32768,
        max_window_layers: 24,
        model_type: 'qwen2',
        num_attention_heads: 14,
        num_hidden_layers: 24,
        num_key_value_heads: 2,
        rms_norm_eps: 1e-6,
        rope_theta: 1000000.0,
        sliding_window: 32768,
        tie_word_embeddings: true,
        torch_dtype: 'bfloat16',
        transformers_version: '4.40.1',
        use_cache: true,
        use_sliding_window: false,
        vocab_size: 151936,
      }),
    );
    assert.equal(qwen.attentionBias, true);
    assert.equal(qwen.numKeyValueHeads, 2);
    // a checkpoint whose weights disagree with its config fails on load with the shapes named
    const src = await Model.create('tiny', 1);
    const d = dir();
    await src.save(d);
    writeFileSync(join(d, 'config.json'), JSON.stringify({ ...good, intermediate_size: 128 }));
    await assert.rejects(
      Model.load(d),
      (e: unknown) =>
        e instanceof CheckpointFormatError && /needs \[128, 64\]|needs \[128,64\]/.test(e.message),
    );
    src.free();
  });
});
