//! Data parallelism on the flat buffers: the gradient all-reduce, the ZeRO-1 optimizer step, and moving the
//! sharded optimizer state (for checkpoints and for restoring onto another number of ranks).
//!
//! ZeRO-1 layout: rank r of W owns parameters `shard_ranges(n, W)[r]` (contiguous, balanced; tensor
//! boundaries ignored). It keeps the AdamW moments of that slice only (`TrainState::shard`). A sharded step:
//! reduce-scatter the gradients (rank r receives the summed gradient of its slice), all-reduce the squared
//! norms of the slices into the global norm, AdamW on the slice with the global clip factor, all-gather the
//! updated slices. The step is all-or-nothing on each rank: the update is computed into copies (4·n/W
//! floats), gathered into the gradient buffer (dead after the reduce-scatter), and only then swapped in; if a
//! collective fails the parameters, the moments and the step count are unchanged (the gradients are not).
use super::{adamw_step, check_adamw, clip_scale, AdamWParams, Model, TrainState};
use crate::backend::ops;
use crate::collective::{shard_ranges, Collective};
use crate::error::{Error, ErrorCode, Result};
use std::ops::Range;

pub(super) fn sharded_message(shard: &Range<usize>) -> String {
    format!(
        "the optimizer state is sharded (this rank holds the moments of parameters {}..{}): gather it \
         (gatherOptimizerState) or use the sharded step",
        shard.start, shard.end
    )
}

/// A sharded optimizer state's slice of this rank: where it starts, the moments, the step count.
pub struct OptimizerShard {
    pub offset: usize,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u64,
}

impl Model {
    fn dp_trainable(&self) -> Result<()> {
        self.check_trainable()
            .map_err(|m| Error::new(ErrorCode::Frozen, m))
    }

    fn dp_state(&mut self) -> Result<&mut TrainState> {
        self.dp_trainable()?;
        self.train_state().map_err(Error::model)
    }

    /// Sums the gradient buffer across the group, in place.
    pub fn allreduce_grads(&mut self, c: &mut Collective) -> Result<()> {
        let t = self.dp_state()?;
        c.allreduce_f32(&mut t.grads)
    }

    /// One ZeRO-1 AdamW step over the group (see the module docs); returns the global gradient norm before
    /// clipping. Equal to `allreduce_grads` + `clip_and_step` up to the summation order of the gradients.
    /// Afterwards the gradient buffer is zero.
    pub fn sharded_step(&mut self, c: &mut Collective, opt: &AdamWParams) -> Result<f32> {
        self.dp_trainable()?;
        check_adamw(opt).map_err(Error::invalid)?;
        let n = self.params.len();
        let mine = shard_ranges(n, c.size())[c.rank()].clone();
        let len = mine.len();
        let t = self.train.get_or_insert_with(|| TrainState {
            grads: vec![0.0; n],
            adam_m: vec![0.0; len],
            adam_v: vec![0.0; len],
            step: 0,
            shard: mine.clone(),
        });
        if t.shard == (0..n) && mine != (0..n) {
            // A full state (fresh, or restored from a checkpoint): keep this rank's slice.
            t.adam_m = t.adam_m[mine.clone()].to_vec();
            t.adam_v = t.adam_v[mine.clone()].to_vec();
            t.shard = mine.clone();
        }
        if t.shard != mine {
            return Err(Error::invalid(format!(
                "the optimizer state covers parameters {}..{}, but rank {} of {} owns {}..{}: restore the full \
                 state (setOptimizerState / loadOptimizer) or this rank's shard first",
                t.shard.start,
                t.shard.end,
                c.rank(),
                c.size(),
                mine.start,
                mine.end
            )));
        }
        // Summed gradient of this rank's slice → the front of the gradient buffer.
        let got = c.reduce_scatter_f32(&mut t.grads)?;
        debug_assert_eq!(got, len);
        let g: Vec<f32> = t.grads[..len].to_vec();
        let mut sq = [ops::sum_squares(&g)];
        c.allreduce_f64(&mut sq)?;
        let norm = sq[0].sqrt() as f32;
        if !norm.is_finite() {
            return Err(Error::invalid(format!(
                "gradient norm is not finite ({norm}); step skipped"
            )));
        }
        let st = adamw_step(opt, t.step + 1, clip_scale(opt, norm));
        let mut p_new = self.params[mine.clone()].to_vec();
        let (mut m_new, mut v_new) = (t.adam_m.clone(), t.adam_v.clone());
        for p in &self.table {
            let a = p.offset.max(mine.start);
            let b = (p.offset + p.len).min(mine.end);
            if a >= b {
                continue;
            }
            let r = (a - mine.start)..(b - mine.start);
            let wd = if p.shape.len() >= 2 {
                opt.weight_decay
            } else {
                0.0
            };
            ops::adamw(
                &mut p_new[r.clone()],
                &g[r.clone()],
                &mut m_new[r.clone()],
                &mut v_new[r],
                st,
                wd,
            );
        }
        // Every rank's updated slice, into the (dead) gradient buffer; swapped in only on success.
        c.allgather_f32(&p_new, &mut t.grads)?;
        std::mem::swap(&mut self.params, &mut t.grads);
        t.grads.iter_mut().for_each(|x| *x = 0.0);
        t.adam_m = m_new;
        t.adam_v = v_new;
        t.step += 1;
        Ok(norm)
    }

    /// Makes the optimizer state whole on every rank: all-gathers the moments of every slice (a rank whose
    /// state is already whole contributes its own slice of it). Afterwards `optimizer_state` / `save_optimizer`
    /// work, and the next sharded step keeps only this rank's slice again. The ranks must agree on the step
    /// count.
    pub fn gather_optimizer_state(&mut self, c: &mut Collective) -> Result<()> {
        let n = self.params.len();
        let mine = shard_ranges(n, c.size())[c.rank()].clone();
        let t = self.dp_state()?;
        let (m, v) = if t.shard == mine {
            (t.adam_m.clone(), t.adam_v.clone())
        } else if t.shard == (0..n) {
            (
                t.adam_m[mine.clone()].to_vec(),
                t.adam_v[mine.clone()].to_vec(),
            )
        } else {
            return Err(Error::invalid(format!(
                "the optimizer state covers parameters {}..{}, not rank {}'s slice {}..{} of a group of {}",
                t.shard.start,
                t.shard.end,
                c.rank(),
                mine.start,
                mine.end,
                c.size()
            )));
        };
        let mut steps = [t.step as f64, (t.step as f64) * (t.step as f64)];
        c.allreduce_f64(&mut steps)?;
        let w = c.size() as f64;
        if steps[0] != w * t.step as f64 || steps[1] != w * (t.step as f64) * (t.step as f64) {
            return Err(Error::invalid(format!(
                "the ranks disagree on the optimizer step (this rank: {})",
                t.step
            )));
        }
        let mut full_m = vec![0.0; n];
        let mut full_v = vec![0.0; n];
        c.allgather_f32(&m, &mut full_m)?;
        c.allgather_f32(&v, &mut full_v)?;
        t.adam_m = full_m;
        t.adam_v = full_v;
        t.shard = 0..n;
        Ok(())
    }

    /// This rank's slice of the optimizer state (the whole state when it is not sharded).
    pub fn optimizer_shard(&mut self) -> Result<OptimizerShard> {
        let t = self.dp_state()?;
        Ok(OptimizerShard {
            offset: t.shard.start,
            m: t.adam_m.clone(),
            v: t.adam_v.clone(),
            step: t.step,
        })
    }

    /// Replaces the optimizer state by a slice starting at `offset` (moments of parameters offset..offset+len).
    pub fn set_optimizer_shard(&mut self, s: OptimizerShard) -> Result<()> {
        self.dp_trainable()?;
        let n = self.params.len();
        if s.m.len() != s.v.len() || s.offset.checked_add(s.m.len()).is_none_or(|e| e > n) {
            return Err(Error::invalid(format!(
                "optimizer shard: offset {} with {} / {} moments does not fit {n} parameters",
                s.offset,
                s.m.len(),
                s.v.len()
            )));
        }
        for (what, xs) in [("m", &s.m), ("v", &s.v)] {
            if let Some(i) = super::first_non_finite(xs) {
                return Err(Error::invalid(format!(
                    "optimizer shard {what}[{i}] is not finite"
                )));
            }
        }
        if let Some(i) = s.v.iter().position(|&x| x < 0.0) {
            return Err(Error::invalid(format!(
                "optimizer shard v[{i}] is negative"
            )));
        }
        let t = self.train_state().map_err(Error::model)?;
        t.shard = s.offset..s.offset + s.m.len();
        t.adam_m = s.m;
        t.adam_v = s.v;
        t.step = s.step;
        Ok(())
    }
}
