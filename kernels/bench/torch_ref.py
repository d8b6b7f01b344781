#!/usr/bin/env python3
"""PyTorch CPU reference of Spark's native decoder, for the kernels benchmark (kernels/bench/bench.rs).

The same architecture as kernels/src/model (Qwen2 layout: embedding, N x [RMSNorm -> GQA attention with RoPE and
q/k/v bias -> residual -> RMSNorm -> SwiGLU -> residual], final RMSNorm, tied head), the same presets, the same
batch shapes. It measures, in PyTorch's best CPU configuration (the caller sets OMP_WAIT_POLICY=PASSIVE; this
script sets torch.set_num_threads):
  - training tokens/s: forward + cross-entropy + backward + grad-norm clip + AdamW on a (B, T) batch;
  - sampling tokens/s: batch of prompts, KV cache, temperature-1 multinomial sampling with per-token log-probs.
Prints one `RESULT <name> <value>` line per figure. Run with /usr/bin/python3 (Debian python3-torch).
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # hidden, intermediate, layers, heads, kv heads, vocab, max positions (kernels/src/model/config.rs)
    "tiny": (64, 176, 2, 4, 2, 128, 256),
    "small": (256, 768, 4, 4, 2, 128, 512),
    "demo": (128, 384, 4, 4, 2, 128, 512),
    # Qwen2.5-0.5B's config.json (random init): 494,032,768 parameters
    "qwen05b": (896, 4864, 24, 14, 2, 151936, 32768),
}
ROPE_THETA = {"qwen05b": 1e6}


class RMSNorm(nn.Module):
    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c, h, kv):
        super().__init__()
        self.h, self.kv, self.d = h, kv, c // h
        self.q_proj = nn.Linear(c, h * self.d, bias=True)
        self.k_proj = nn.Linear(c, kv * self.d, bias=True)
        self.v_proj = nn.Linear(c, kv * self.d, bias=True)
        self.o_proj = nn.Linear(h * self.d, c, bias=False)

    def forward(self, x, cos, sin, cache=None, pos=0):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            kc, vc = cache
            kc[:, :, pos : pos + t] = k
            vc[:, :, pos : pos + t] = v
            k, v = kc[:, :, : pos + t], vc[:, :, : pos + t]
        rep = self.h // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d))
        if t > 1:
            s = k.shape[2]
            mask = torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
            att = att.masked_fill(~mask, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        self.gate_proj = nn.Linear(c, i, bias=False)
        self.up_proj = nn.Linear(c, i, bias=False)
        self.down_proj = nn.Linear(i, c, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c, i, h, kv):
        super().__init__()
        self.input_layernorm = RMSNorm(c)
        self.self_attn = Attention(c, h, kv)
        self.post_attention_layernorm = RMSNorm(c)
        self.mlp = MLP(c, i)

    def forward(self, x, cos, sin, cache=None, pos=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, pos)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    def __init__(self, preset):
        super().__init__()
        c, i, n, h, kv, v, max_pos = PRESETS[preset]
        self.c, self.h, self.kv, self.d, self.v = c, h, kv, c // h, v
        self.embed_tokens = nn.Embedding(v, c)
        self.layers = nn.ModuleList([Block(c, i, h, kv) for _ in range(n)])
        self.norm = RMSNorm(c)
        inv = ROPE_THETA.get(preset, 10000.0) ** (-torch.arange(0, self.d, 2, dtype=torch.float32) / self.d)
        freqs = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, caches=None, pos=0):
        t = tokens.shape[1]
        cos, sin = self.cos[pos : pos + t], self.sin[pos : pos + t]
        x = self.embed_tokens(tokens)
        for li, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[li], pos)
        return self.norm(x) @ self.embed_tokens.weight.t()  # tied head


def bench_train(preset, batch, seq, steps):
    torch.manual_seed(0)
    model = Model(preset)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    tokens = torch.randint(0, model.v, (batch, seq))

    def step():
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, model.v), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - t0)
    return batch * seq * steps / best


@torch.no_grad()
def bench_sample(preset, batch, prompt_len, new_tokens, model=None, reps=3):
    torch.manual_seed(0)
    model = model or Model(preset)
    prompts = torch.randint(0, model.v, (batch, prompt_len))
    g = torch.Generator().manual_seed(1)

    def run():
        caches = [
            (
                torch.zeros(batch, model.kv, prompt_len + new_tokens, model.d),
                torch.zeros(batch, model.kv, prompt_len + new_tokens, model.d),
            )
            for _ in model.layers
        ]
        logits = model(prompts, caches, 0)[:, -1]
        out, lps = [], []
        pos = prompt_len
        for i in range(new_tokens):
            logp = F.log_softmax(logits, dim=-1)
            nxt = torch.multinomial(logp.exp(), 1, generator=g)
            out.append(nxt)
            lps.append(logp.gather(1, nxt))
            if i + 1 < new_tokens:
                logits = model(nxt, caches, pos)[:, -1]
                pos += 1
        return torch.cat(out, 1), torch.cat(lps, 1)

    run()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return batch * new_tokens / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--no-train", action="store_true", help="sampling figures only")
    ap.add_argument("--sample-batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    # small-batch decode of a large model: one model, several batch sizes (RESULT <preset>.b<B>.sample_tokens_per_s)
    ap.add_argument("--decode-preset", default="")
    ap.add_argument("--decode-batches", default="1,2,8")
    ap.add_argument("--decode-new-tokens", type=int, default=16)
    ap.add_argument("--decode-reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"RESULT torch_version_major {torch.__version__.split('.')[0]}", flush=True)
    if a.decode_preset:
        with torch.no_grad():
            model = Model(a.decode_preset)
        for b in [int(x) for x in a.decode_batches.split(",")]:
            tps = bench_sample(a.decode_preset, b, a.prompt_len, a.decode_new_tokens, model, a.decode_reps)
            print(f"RESULT {a.decode_preset}.b{b}.sample_tokens_per_s {tps:.3f}", flush=True)
        return
    for preset in [p for p in a.presets.split(",") if p]:
        n = sum(p.numel() for p in Model(preset).parameters())
        print(f"RESULT {preset}.params {n}", flush=True)
        if not a.no_train:
            print(f"RESULT {preset}.train_tokens_per_s {bench_train(preset, a.batch, a.seq, a.steps):.3f}", flush=True)
        tps = bench_sample(preset, a.sample_batch, a.prompt_len, a.new_tokens)
        print(f"RESULT {preset}.sample_tokens_per_s {tps:.3f}", flush=True)


if __name__ == "__main__":
    main()
