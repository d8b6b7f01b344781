//! Batched sampling with a KV cache.
//!
//! Prefill runs every prompt token of every sequence as one packed set of rows (no padding): each row carries its
//! cache slot (the sequence) and position, writes its key/value into the cache, then attends to positions
//! 0..=pos of its slot. Decode then feeds one row per unfinished sequence per step. Logits are computed only for
//! the rows that pick a next token.
//!
//! Token choice per sequence, with that sequence's own PRNG stream (seed, index) so results do not depend on the
//! batch's other members or on thread scheduling: temperature 0 → argmax (lowest id on ties); otherwise
//! softmax(z / temperature), restricted to the smallest set of most likely tokens whose mass reaches top_p,
//! renormalised, sampled by inverse CDF.
//!
//! The reported log-prob of a sampled token is log softmax(z)[token] — the model's own distribution at
//! temperature 1, without top-p — so it is directly comparable with `Model::logprobs` (what GRPO's "old" and
//! reference log-probs mean) whatever temperature the sampler used.
//!
//! A sequence stops after emitting a stop token (included in its tokens), after max_new_tokens, or when it
//! reaches max_position_embeddings (finish = Length).

use super::params::Rng;
use super::Model;
use crate::backend::gemm::{self, sgemm, GemmPath, Mat};
use crate::backend::gemm_avx2::{self, PackedB};
use crate::backend::{gemv, ops};

#[derive(Clone, Debug, PartialEq)]
pub struct SampleRequest {
    pub prompts: Vec<Vec<u32>>,
    pub temperature: f32,
    pub top_p: f32,
    pub max_new_tokens: usize,
    pub stop_tokens: Vec<u32>,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SampleOutput {
    pub tokens: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub finish: Finish,
}

/// Most cached floats per request (2 GiB of f32), bounding memory for any request.
pub const MAX_CACHE_FLOATS: usize = 1 << 29;
/// Fewest sequences per sampling group (one group per thread).
const MIN_GROUP: usize = 8;
/// Largest weights (bytes) for which sampling uses independent groups when the last-level cache's size is
/// unknown (≈ a core's L2 cache).
const GROUPS_MAX_WEIGHT_BYTES: usize = 1 << 20;
/// With a known last-level cache, groups are used while the weights take at most this fraction of it
/// (1/`GROUPS_LLC_SHARE`): every group re-reads them at every step, which costs nothing while they stay cached.
const GROUPS_LLC_SHARE: usize = 2;
/// Sampling groups per thread (dynamic load balance).
const GROUPS_PER_THREAD: usize = 2;
/// Most rows per prefill chunk.
const PREFILL_ROWS: usize = 4096;
/// Largest weights (bytes) that a sampling call copies into the packed layout of the built-in GEMM. Above it
/// (a 0.5 B model is 2 GB) the copy would double the memory of the call; products of more than
/// `gemv::MAX_ROWS` rows then go through the process GEMM path, which packs per call.
const PACK_MAX_BYTES: usize = 256 << 20;
/// Fewest logits (rows × vocabulary) for which the token choice of a step is spread over the threads.
const PAR_CHOOSE_MIN: usize = 1 << 16;

/// Scratch buffers of the inference forward for R rows.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,    // (R, C)
    ln: Vec<f32>,   // (R, C)
    rstd: Vec<f32>, // (R)
    qkv: Vec<f32>,  // (R, W)
    att: Vec<f32>,  // (R, H·D)
    gu: Vec<f32>,   // (R, 2I)
    h: Vec<f32>,    // (R, I)
    xf: Vec<f32>,   // (Ro, C)
    lnf: Vec<f32>,  // (Ro, C)
    rstdf: Vec<f32>,
    logits: Vec<f32>, // (Ro, V)
}

fn fit(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

/// Positions per sequence in the KV cache: the longest prompt plus max_new_tokens (at most maxp), rounded up to
/// a multiple of 8 so that the attention kernel scores whole blocks of 8 positions in place.
fn cache_positions(longest: usize, max_new: usize, maxp: usize) -> usize {
    (longest + max_new).min(maxp).div_ceil(8) * 8
}

/// The KV cache, per layer: keys transposed (slots, KV·D, max_t), values (slots, max_t, KV·D).
struct KvCache {
    k: Vec<f32>,
    v: Vec<f32>,
    slots: usize,
    max_t: usize,
    kvd: usize,
}

impl KvCache {
    fn layer_len(&self) -> usize {
        self.slots * self.max_t * self.kvd
    }
}

impl Model {
    fn check_request(&self, req: &SampleRequest) -> Result<(), String> {
        let maxp = self.cfg.max_position_embeddings;
        if req.prompts.is_empty() {
            return Err("sample: no prompts".into());
        }
        if req.prompts.len() > super::MAX_BATCH {
            return Err(format!(
                "sample: {} prompts exceed the limit {}",
                req.prompts.len(),
                super::MAX_BATCH
            ));
        }
        for (k, p) in req.prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(format!("sample: prompt {k} is empty"));
            }
            if p.len() >= maxp {
                return Err(format!(
                    "sample: prompt {k} has {} tokens; max_position_embeddings is {maxp}",
                    p.len()
                ));
            }
            self.check_tokens(&format!("sample: prompt {k}"), p)?;
        }
        self.check_tokens("sample: stop_tokens", &req.stop_tokens)?;
        if !(req.temperature.is_finite() && req.temperature >= 0.0) {
            return Err(format!(
                "sample: temperature {} must be finite and ≥ 0",
                req.temperature
            ));
        }
        if !(req.top_p.is_finite() && req.top_p > 0.0 && req.top_p <= 1.0) {
            return Err(format!("sample: top_p {} must be in (0, 1]", req.top_p));
        }
        if req.max_new_tokens == 0 || req.max_new_tokens > maxp {
            return Err(format!(
                "sample: max_new_tokens {} must be in 1..={maxp}",
                req.max_new_tokens
            ));
        }
        let longest = req.prompts.iter().map(|p| p.len()).max().unwrap_or(1);
        let max_t = cache_positions(longest, req.max_new_tokens, maxp);
        let kvd = self.cfg.num_key_value_heads * self.cfg.head_dim();
        let floats = req.prompts.len() as u128
            * max_t as u128
            * kvd as u128
            * 2
            * self.cfg.num_hidden_layers as u128;
        if floats > MAX_CACHE_FLOATS as u128 {
            return Err(format!(
                "sample: the KV cache for {} prompts × {max_t} positions ({floats} floats) exceeds the bound {MAX_CACHE_FLOATS}",
                req.prompts.len()
            ));
        }
        Ok(())
    }

    /// Samples continuations of every prompt (see the module comment for the rules).
    ///
    /// Sequences are independent, so with several threads and enough prompts the batch is cut into
    /// contiguous groups (GROUPS_PER_THREAD per thread, claimed dynamically) and each group is decoded start
    /// to finish by one thread (its GEMMs single-threaded): no synchronisation per layer and step, which is
    /// what limits a decode loop whose matrix products are small. Each sequence keeps its own PRNG stream
    /// (its index in the request).
    ///
    /// Groups re-read every weight once per group and step, which is free while the weights stay in the
    /// last-level cache (at most half of it, `groups_fit`); beyond that the whole batch is decoded together
    /// with each product's columns split over the threads, so the weights are streamed once per step — at the
    /// price of a fork-join per product, which on the 2-core development VM cost the second thread's whole gain
    /// (docs/benchmarks.md). `SPARK_SAMPLE_MODE=groups` or `split` forces a mode.
    pub fn sample(&mut self, req: &SampleRequest) -> Result<Vec<SampleOutput>, String> {
        let split = splits_columns(self.params.len());
        self.sample_mode(req, split)
    }

    /// `sample` with the parallel mode chosen by the caller: `split` decodes the whole batch together with
    /// each product's columns split over the threads, otherwise groups of sequences run one per thread
    /// (tests cover both; the kernels benchmark times both).
    pub fn sample_mode(
        &mut self,
        req: &SampleRequest,
        split: bool,
    ) -> Result<Vec<SampleOutput>, String> {
        self.check_request(req)?;
        let threads = crate::backend::threads::num_threads();
        let bsz = req.prompts.len();
        // Decode steps of at most gemv::MAX_ROWS rows read the weights as stored; only a batch larger than that
        // reuses a packed copy, and only when the copy is small.
        let packed = if bsz > gemv::MAX_ROWS && self.params.len() * 4 <= PACK_MAX_BYTES {
            self.pack_weights()
        } else {
            None
        };
        let pk = packed.as_ref();
        if threads <= 1 || bsz < 2 * MIN_GROUP || split {
            return Ok(self.sample_group(req, 0, bsz, pk));
        }
        // GROUPS_PER_THREAD groups per thread, claimed dynamically: on a shared machine a thread that loses its
        // core leaves its remaining groups to the others instead of holding up the whole batch.
        let groups = crate::backend::threads::split_range(
            bsz,
            (threads * GROUPS_PER_THREAD).min(bsz / MIN_GROUP),
            1,
        );
        let this = &*self;
        let parts: Vec<Vec<SampleOutput>> = crate::backend::threads::par_map(groups.len(), |g| {
            let (a, b) = groups[g];
            crate::backend::threads::serial(|| this.sample_group(req, a, b, pk))
        });
        Ok(parts.into_iter().flatten().collect())
    }

    /// Samples prompts b_lo..b_hi of a validated request on the calling thread.
    fn sample_group(
        &self,
        req_all: &SampleRequest,
        b_lo: usize,
        b_hi: usize,
        pk: Option<&Packed>,
    ) -> Vec<SampleOutput> {
        let req = req_all;
        let cfg = &self.cfg;
        let prompts = &req.prompts[b_lo..b_hi];
        let bsz = prompts.len();
        let maxp = cfg.max_position_embeddings;
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(1);
        let max_t = cache_positions(longest, req.max_new_tokens, maxp);
        let kvd = cfg.num_key_value_heads * cfg.head_dim();
        let per_layer = bsz * max_t * kvd; // bounded by check_request
        let mut cache = KvCache {
            k: vec![0.0; per_layer * cfg.num_hidden_layers],
            v: vec![0.0; per_layer * cfg.num_hidden_layers],
            slots: bsz,
            max_t,
            kvd,
        };
        let mut sc = Scratch::default();
        let mut rngs: Vec<Rng> = (0..bsz)
            .map(|b| Rng::new(req.seed, (b_lo + b) as u64))
            .collect();
        let mut outs: Vec<SampleOutput> = (0..bsz)
            .map(|_| SampleOutput {
                tokens: Vec::new(),
                logprobs: Vec::new(),
                finish: Finish::Length,
            })
            .collect();
        let mut done = vec![false; bsz];
        let v = self.cfg.vocab_size;

        // Prefill, in chunks of whole prompts.
        let mut b0 = 0;
        while b0 < bsz {
            let mut b1 = b0;
            let mut rows = 0;
            while b1 < bsz && (b1 == b0 || rows + prompts[b1].len() <= PREFILL_ROWS) {
                rows += prompts[b1].len();
                b1 += 1;
            }
            let mut toks = Vec::with_capacity(rows);
            let mut slot = Vec::with_capacity(rows);
            let mut pos = Vec::with_capacity(rows);
            let mut last = Vec::with_capacity(b1 - b0);
            for (b, p) in prompts.iter().enumerate().take(b1).skip(b0) {
                for (j, &t) in p.iter().enumerate() {
                    toks.push(t);
                    slot.push(b);
                    pos.push(j);
                }
                last.push(toks.len() - 1);
            }
            self.infer(&mut cache, &mut sc, &toks, &slot, &pos, &last, pk);
            let rows: Vec<usize> = (b0..b1).collect();
            for (b, (tok, lp)) in choose_rows(&sc.logits, v, &rows, req, &mut rngs) {
                done[b] = push_token(&mut outs[b], tok, lp, req, prompts[b].len(), maxp);
            }
            b0 = b1;
        }

        // Decode: one row per unfinished sequence per step.
        loop {
            let active: Vec<usize> = (0..bsz).filter(|&b| !done[b]).collect();
            if active.is_empty() {
                break;
            }
            let toks: Vec<u32> = active
                .iter()
                .map(|&b| *outs[b].tokens.last().unwrap_or(&0))
                .collect();
            let pos: Vec<usize> = active
                .iter()
                .map(|&b| prompts[b].len() + outs[b].tokens.len() - 1)
                .collect();
            let last: Vec<usize> = (0..active.len()).collect();
            self.infer(&mut cache, &mut sc, &toks, &active, &pos, &last, pk);
            for (b, (tok, lp)) in choose_rows(&sc.logits, v, &active, req, &mut rngs) {
                done[b] = push_token(&mut outs[b], tok, lp, req, prompts[b].len(), maxp);
            }
        }
        outs
    }

    /// Inference forward of R rows (token, cache slot, position), writing keys/values into the cache; leaves
    /// logits (len(out_rows), V) of the rows listed in `out_rows` in `sc.logits`.
    #[allow(clippy::too_many_arguments)]
    fn infer(
        &self,
        cache: &mut KvCache,
        sc: &mut Scratch,
        toks: &[u32],
        slot: &[usize],
        pos: &[usize],
        out_rows: &[usize],
        pk: Option<&Packed>,
    ) {
        let cfg = &self.cfg;
        let p = &self.params;
        let off = &self.off;
        let r = toks.len();
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (h, kv, d) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim(),
        );
        let (w, hd, kvd) = (cfg.qkv_width(), h * d, kv * d);
        let eps = cfg.rms_norm_eps;
        fit(&mut sc.x, r * c);
        fit(&mut sc.ln, r * c);
        fit(&mut sc.rstd, r);
        fit(&mut sc.qkv, r * w);
        fit(&mut sc.att, r * hd);
        fit(&mut sc.gu, r * 2 * i);
        fit(&mut sc.h, r * i);
        ops::embedding_fwd(toks, &p[off.embed..off.embed + v * c], c, &mut sc.x);
        let ll = cache.layer_len();
        let max_t = cache.max_t;
        for (l, lo) in off.layers.iter().enumerate() {
            ops::rmsnorm_fwd(&sc.x, &p[lo.ln1..lo.ln1 + c], eps, &mut sc.ln, &mut sc.rstd);
            let lp = pk.map(|x| &x.layers[l]);
            matmul(
                &sc.ln,
                &p[lo.wqkv..lo.wqkv + w * c],
                lp.map(|x| &x[0]),
                c,
                w,
                0.0,
                &mut sc.qkv,
            );
            if let Some(bo) = lo.bqkv {
                let bias = &p[bo..bo + w];
                for row in sc.qkv.chunks_exact_mut(w) {
                    for (a, b) in row.iter_mut().zip(bias) {
                        *a += b;
                    }
                }
            }
            ops::rope(
                &mut sc.qkv,
                w,
                h + kv,
                d,
                pos,
                &self.rope_cos,
                &self.rope_sin,
                false,
            );
            let kc = &mut cache.k[l * ll..(l + 1) * ll];
            let vc = &mut cache.v[l * ll..(l + 1) * ll];
            // keys go in transposed, (slot, KV·D, max_t); values row-major, (slot, max_t, KV·D)
            for (row, (&s, &ps)) in slot.iter().zip(pos).enumerate() {
                let krow = &sc.qkv[row * w + hd..row * w + hd + kvd];
                for (e, &x) in krow.iter().enumerate() {
                    kc[(s * kvd + e) * max_t + ps] = x;
                }
                let dst = (s * max_t + ps) * kvd;
                vc[dst..dst + kvd]
                    .copy_from_slice(&sc.qkv[row * w + hd + kvd..row * w + hd + 2 * kvd]);
            }
            ops::attention_cached(&sc.qkv, w, h, kv, d, slot, pos, kc, vc, max_t, &mut sc.att);
            matmul(
                &sc.att,
                &p[lo.wo..lo.wo + c * hd],
                lp.map(|x| &x[1]),
                hd,
                c,
                1.0,
                &mut sc.x,
            );
            ops::rmsnorm_fwd(&sc.x, &p[lo.ln2..lo.ln2 + c], eps, &mut sc.ln, &mut sc.rstd);
            matmul(
                &sc.ln,
                &p[lo.wgu..lo.wgu + 2 * i * c],
                lp.map(|x| &x[2]),
                c,
                2 * i,
                0.0,
                &mut sc.gu,
            );
            ops::swiglu_fwd(&sc.gu, &mut sc.h, i);
            matmul(
                &sc.h,
                &p[lo.wdown..lo.wdown + c * i],
                lp.map(|x| &x[3]),
                i,
                c,
                1.0,
                &mut sc.x,
            );
        }
        let ro = out_rows.len();
        fit(&mut sc.xf, ro * c);
        fit(&mut sc.lnf, ro * c);
        fit(&mut sc.rstdf, ro);
        fit(&mut sc.logits, ro * v);
        for (k, &row) in out_rows.iter().enumerate() {
            sc.xf[k * c..(k + 1) * c].copy_from_slice(&sc.x[row * c..(row + 1) * c]);
        }
        ops::rmsnorm_fwd(
            &sc.xf,
            &p[off.norm..off.norm + c],
            eps,
            &mut sc.lnf,
            &mut sc.rstdf,
        );
        matmul(
            &sc.lnf,
            &p[off.head..off.head + v * c],
            pk.map(|x| &x.head),
            c,
            v,
            0.0,
            &mut sc.logits,
        );
    }

    /// Packs every weight matrix once for the built-in kernel (None when it cannot run or the scalar path is
    /// forced): decode steps multiply few rows by every weight, so packing them at each call would cost as
    /// much as the product itself.
    fn pack_weights(&self) -> Option<Packed> {
        if !gemm_avx2::available() || gemm::path() == GemmPath::Scalar {
            return None;
        }
        let cfg = &self.cfg;
        let p = &self.params;
        let (c, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (w, hd) = (cfg.qkv_width(), cfg.num_attention_heads * cfg.head_dim());
        let pb =
            |off: usize, n: usize, k: usize| PackedB::new(Mat::t(&p[off..off + n * k], k), k, n);
        let layers = self
            .off
            .layers
            .iter()
            .map(|lo| {
                [
                    pb(lo.wqkv, w, c),
                    pb(lo.wo, c, hd),
                    pb(lo.wgu, 2 * i, c),
                    pb(lo.wdown, c, i),
                ]
            })
            .collect();
        Some(Packed {
            layers,
            head: pb(self.off.head, v, c),
        })
    }
}

/// Whether `Model::sample` decodes a model of `num_params` parameters with column-split products (true) or in
/// groups of sequences (false) on this machine: `SPARK_SAMPLE_MODE` when set, else the cache rule. The mode
/// changes a run's numbers (docs/kernels.md "Reproducibility"), so runs record it.
pub fn splits_columns(num_params: usize) -> bool {
    match std::env::var("SPARK_SAMPLE_MODE").as_deref() {
        Ok("split") => true,
        Ok("groups") => false,
        _ => !groups_fit(num_params.saturating_mul(4), llc_bytes()),
    }
}

/// Whether sampling groups suit weights of `weight_bytes` on a CPU whose last-level cache holds `llc` bytes
/// (None: unknown, then the weights must fit a core's L2 as assumed before the cache size was read).
fn groups_fit(weight_bytes: usize, llc: Option<usize>) -> bool {
    match llc {
        Some(c) => weight_bytes.saturating_mul(GROUPS_LLC_SHARE) <= c,
        None => weight_bytes <= GROUPS_MAX_WEIGHT_BYTES,
    }
}

/// The size of CPU 0's largest data cache (Linux sysfs `cache/index*/size` of the highest level), read once.
fn llc_bytes() -> Option<usize> {
    use std::sync::OnceLock;
    static LLC: OnceLock<Option<usize>> = OnceLock::new();
    *LLC.get_or_init(|| {
        let mut best: Option<(u32, usize)> = None;
        for i in 0..16 {
            let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
            let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
            let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
            else {
                continue;
            };
            if kind.trim() == "Instruction" {
                continue;
            }
            if let (Ok(l), Some(b)) = (level.trim().parse::<u32>(), parse_cache_size(&size)) {
                if best.is_none_or(|(bl, _)| l > bl) {
                    best = Some((l, b));
                }
            }
        }
        best.map(|(_, b)| b)
    })
}

/// A sysfs cache size ("48K", "2048K", "491520K", "32M") in bytes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1usize << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mul)
}

/// Pre-packed weights of one sampling call: per layer [qkv, o, gate|up, down], and the head.
struct Packed {
    layers: Vec<[PackedB; 4]>,
    head: PackedB,
}

/// out (R, n) = x (R, k) · Wᵀ (+ beta·out), W (n, k): few rows (≤ gemv::MAX_ROWS) stream W as stored
/// (`gemv::skinny`); more go through the pre-packed copy when there is one (columns split over the threads),
/// else the process GEMM path.
fn matmul(
    x: &[f32],
    w: &[f32],
    packed: Option<&PackedB>,
    k: usize,
    n: usize,
    beta: f32,
    out: &mut [f32],
) {
    let rows = out.len() / n;
    if rows <= gemv::MAX_ROWS {
        return gemv::skinny(rows, n, k, x, w, beta, out);
    }
    let threads = crate::backend::threads::num_threads();
    match packed {
        // Several threads on one batch: split the columns (each thread streams only its share of the weights)
        // into private buffers, then merge.
        Some(pb) if threads > 1 && n >= 2 * gemm_avx2::PANEL * threads => {
            let ranges = crate::backend::threads::split_range(n, threads, gemm_avx2::PANEL);
            let parts = crate::backend::threads::par_map(ranges.len(), |t| {
                let (j0, j1) = ranges[t];
                let mut tmp = vec![0.0f32; rows * (j1 - j0)];
                let done = pb.mul(Mat::n(x, k), rows, 1.0, j0..j1, 0.0, &mut tmp, j1 - j0);
                debug_assert!(
                    done,
                    "packed weights exist only when the built-in kernel can run"
                );
                tmp
            });
            gemm::merge_cols(&ranges, &parts, beta, out, n, rows);
        }
        Some(pb) => {
            let done = pb.mul(Mat::n(x, k), rows, 1.0, 0..n, beta, out, n);
            debug_assert!(
                done,
                "packed weights exist only when the built-in kernel can run"
            );
        }
        None => sgemm(false, true, rows, n, k, 1.0, x, k, w, k, beta, out, n),
    }
}

/// Picks the next token of every listed sequence: row k of `logits` (rows of `v`) belongs to sequence
/// `seqs[k]`, drawn with that sequence's PRNG. Returns (sequence, (token, log-prob)) in order. Rows are spread
/// over the threads when there are many logits; each row uses only its own PRNG, so the result is the same.
fn choose_rows(
    logits: &[f32],
    v: usize,
    seqs: &[usize],
    req: &SampleRequest,
    rngs: &mut [Rng],
) -> Vec<(usize, (u32, f32))> {
    let threads = crate::backend::threads::num_threads();
    if threads <= 1 || seqs.len() < 2 || seqs.len() * v < PAR_CHOOSE_MIN {
        return seqs
            .iter()
            .enumerate()
            .map(|(k, &b)| {
                (
                    b,
                    choose(
                        &logits[k * v..(k + 1) * v],
                        req.temperature,
                        req.top_p,
                        &mut rngs[b],
                    ),
                )
            })
            .collect();
    }
    let picked = crate::backend::threads::par_map(seqs.len(), |k| {
        let mut rng = rngs[seqs[k]].clone();
        let r = choose(
            &logits[k * v..(k + 1) * v],
            req.temperature,
            req.top_p,
            &mut rng,
        );
        (r, rng)
    });
    picked
        .into_iter()
        .zip(seqs)
        .map(|((r, rng), &b)| {
            rngs[b] = rng;
            (b, r)
        })
        .collect()
}

/// Appends a token; returns whether the sequence is finished.
fn push_token(
    o: &mut SampleOutput,
    tok: u32,
    lp: f32,
    req: &SampleRequest,
    prompt_len: usize,
    maxp: usize,
) -> bool {
    o.tokens.push(tok);
    o.logprobs.push(lp);
    if req.stop_tokens.contains(&tok) {
        o.finish = Finish::Stop;
        return true;
    }
    o.finish = Finish::Length;
    o.tokens.len() >= req.max_new_tokens || prompt_len + o.tokens.len() >= maxp
}

thread_local! {
    /// `choose`'s probabilities (one vocabulary of f64), reused across calls.
    static PROBS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Picks the next token from logits z; returns it with log softmax(z)[token] (temperature-1 log-prob).
pub fn choose(z: &[f32], temperature: f32, top_p: f32, rng: &mut Rng) -> (u32, f32) {
    let lse = ops::logsumexp(z);
    let tok = if temperature == 0.0 || z.iter().any(|x| !x.is_finite()) {
        let mut best = 0usize;
        for (j, &x) in z.iter().enumerate() {
            if x > z[best] {
                best = j;
            }
        }
        best
    } else {
        let mx = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let inv_t = 1.0 / temperature as f64;
        PROBS.with(|cell| {
            let mut probs = cell.borrow_mut();
            probs.clear();
            probs.extend(z.iter().map(|&x| ((x - mx) as f64 * inv_t).exp()));
            let sum: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= sum);
            if top_p >= 1.0 {
                // every token, in id order
                let mass: f64 = probs.iter().sum();
                let u = rng.uniform() * mass;
                let mut acc = 0.0;
                for (j, &p) in probs.iter().enumerate() {
                    acc += p;
                    if u < acc {
                        return j;
                    }
                }
                return z.len() - 1;
            }
            let mut idx: Vec<usize> = (0..z.len()).collect();
            idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let mut cum = 0.0;
            let mut keep = 0;
            for &j in &idx {
                cum += probs[j];
                keep += 1;
                if cum >= top_p as f64 {
                    break;
                }
            }
            idx.truncate(keep.max(1));
            let mass: f64 = idx.iter().map(|&j| probs[j]).sum();
            let u = rng.uniform() * mass;
            let mut acc = 0.0;
            let mut pick = *idx.last().unwrap_or(&0);
            for &j in &idx {
                acc += probs[j];
                if u < acc {
                    pick = j;
                    break;
                }
            }
            pick
        })
    };
    (tok as u32, z[tok] - lse)
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("48K\n"), Some(48 << 10));
        assert_eq!(parse_cache_size("491520K"), Some(480 << 20));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("1G"), Some(1 << 30));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size("x2K"), None);
    }

    #[test]
    fn groups_are_used_while_the_weights_take_at_most_half_of_the_last_level_cache() {
        // the `small` preset (12.7 MB) on a 480 MB L3, a 32 MB one, an 8 MB one, and with no cache information
        assert!(groups_fit(12_731_392, Some(480 << 20)));
        assert!(groups_fit(12_731_392, Some(32 << 20)));
        assert!(!groups_fit(12_731_392, Some(8 << 20)));
        assert!(!groups_fit(12_731_392, None));
        assert!(groups_fit(4 << 20, Some(8 << 20)));
        assert!(!groups_fit((4 << 20) + 1, Some(8 << 20)));
        // the old rule without cache information: a core's L2
        assert!(groups_fit(1 << 20, None));
        // a 0.5 B model (2 GB) never
        assert!(!groups_fit(1_976_131_072, Some(480 << 20)));
        assert!(!groups_fit(usize::MAX, Some(1 << 40)));
    }
}
