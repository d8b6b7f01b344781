//! Checkpoint I/O of a model (plain Rust, no Node types): weights as Hugging Face-named safetensors (F32 out;
//! F32, BF16 or F16 in, possibly sharded), AdamW state as `optimizer.safetensors`, and building a model
//! straight from a checkpoint (no random initialisation first).
//!
//! Loads are all-or-nothing: every name, shape and dtype is checked before data is read, data goes to a fresh
//! buffer, and only a complete, finite buffer replaces the model's parameters.
use crate::error::{Error, ErrorCode, Result};
use crate::model::{params, Model, ModelConfig, ParamInfo};
use crate::safetensors::{self as st, TensorData, TensorOut, Wanted};
use std::path::{Path, PathBuf};

/// Names that may appear in a checkpoint without being parameters: a tied model's `lm_head.weight` (some
/// exporters write the tied matrix twice) and rotary caches some older exporters saved.
fn ignorable(cfg: &ModelConfig) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| {
        (cfg.tie_word_embeddings && name == "lm_head.weight")
            || name.ends_with(".rotary_emb.inv_freq")
    }
}

/// Reads the parameters of `cfg`'s layout from `files` into a new flat buffer (layout: `model::params`); every
/// value is checked finite as it is converted.
fn read_params(
    cfg: &ModelConfig,
    table: &[ParamInfo],
    total: usize,
    files: &[PathBuf],
) -> Result<Vec<f32>> {
    let wanted: Vec<Wanted<'_>> = table
        .iter()
        .map(|p| Wanted {
            name: &p.name,
            shape: &p.shape,
            offset: p.offset,
            len: p.len,
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    // Zeroed by the allocator (untouched pages cost nothing); every element is then written exactly once,
    // because the table covers 0..total and every entry must be found.
    let mut out = vec![0.0f32; total];
    st::load_named(&paths, &wanted, &mut out, &ignorable(cfg))?;
    Ok(out)
}

/// A new trainable model with the weights of `files` (no random initialisation; gradient and AdamW buffers
/// are allocated on the first training call).
pub fn load_model(cfg: ModelConfig, files: &[PathBuf]) -> Result<Model> {
    cfg.validate().map_err(Error::invalid)?;
    let (table, off) = params::layout(&cfg);
    let p = read_params(&cfg, &table, off.total, files)?;
    Model::from_finite_params(cfg, p).map_err(Error::model)
}

/// Replaces `model`'s weights with those of `files`; on any error the model is unchanged.
pub fn load_weights(model: &mut Model, files: &[PathBuf]) -> Result<()> {
    let p = read_params(
        model.config(),
        model.param_table(),
        model.num_params(),
        files,
    )?;
    model.replace_finite_params(p).map_err(Error::model)
}

/// Writes the weights as one F32 safetensors file with Hugging Face names (atomically).
pub fn save_weights(model: &Model, path: &Path) -> Result<()> {
    let p = model.params();
    let tensors: Vec<TensorOut<'_>> = model
        .param_table()
        .iter()
        .map(|t| TensorOut {
            name: &t.name,
            shape: t.shape.clone(),
            data: TensorData::F32(&p[t.offset..t.offset + t.len]),
        })
        .collect();
    st::write(
        path,
        &tensors,
        &[("format", "pt"), ("producer", "spark-kernels")],
    )
}

const OPT_M: &str = "optimizer.adamw.m";
const OPT_V: &str = "optimizer.adamw.v";

fn frozen_error() -> Error {
    Error::new(
        ErrorCode::Frozen,
        "a frozen reference model has no optimizer state",
    )
}

/// Writes the AdamW moments (`optimizer.adamw.{m,v}`, F32 `[numParams]`) with metadata `step` and `num_params`.
pub fn save_optimizer(model: &mut Model, path: &Path) -> Result<()> {
    if model.is_frozen() {
        return Err(frozen_error());
    }
    let (m, v, step) = model.optimizer_state().map_err(Error::model)?;
    let n = m.len();
    let (step_s, n_s) = (step.to_string(), n.to_string());
    st::write(
        path,
        &[
            TensorOut {
                name: OPT_M,
                shape: vec![n],
                data: TensorData::F32(m),
            },
            TensorOut {
                name: OPT_V,
                shape: vec![n],
                data: TensorData::F32(v),
            },
        ],
        &[
            ("format", "spark-adamw"),
            ("step", &step_s),
            ("num_params", &n_s),
        ],
    )
}

/// Reads an optimizer file written by `save_optimizer` into `model` (all-or-nothing).
pub fn load_optimizer(model: &mut Model, path: &Path) -> Result<()> {
    if model.is_frozen() {
        return Err(frozen_error());
    }
    let f = st::SafetensorsFile::open(path)?;
    let step: u64 = f
        .header
        .meta("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            Error::format(format!(
                "{}: optimizer file lacks a numeric __metadata__.step",
                f.path
            ))
        })?;
    let n = model.num_params();
    let read = |name: &str| -> Result<Vec<f32>> {
        let t = f
            .header
            .get(name)
            .ok_or_else(|| Error::format(format!("{}: missing tensor {name}", f.path)))?;
        if t.shape != [n] {
            return Err(Error::format(format!(
                "{}: {name} has shape {:?}, the model needs [{n}]",
                f.path, t.shape
            )));
        }
        let mut out = vec![0.0f32; n];
        f.read_f32_into(name, &mut out)?;
        Ok(out)
    };
    let m = read(OPT_M)?;
    let v = read(OPT_V)?;
    model
        .set_optimizer_state(&m, &v, step)
        .map_err(Error::model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AdamWParams, LossSpec, Sequence};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spark-ckpt-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn tiny() -> ModelConfig {
        ModelConfig::preset("tiny").unwrap()
    }

    fn step(m: &mut Model) {
        let seq = Sequence {
            tokens: vec![1, 5, 9, 13, 17, 21],
            prompt_len: 2,
            ..Default::default()
        };
        m.train_step(
            &[vec![seq]],
            &LossSpec::Sft,
            &AdamWParams {
                lr: 1e-2,
                ..Default::default()
            },
        )
        .unwrap();
    }

    #[test]
    fn weights_and_optimizer_round_trip_exactly() {
        let d = dir("rt");
        let mut a = Model::new(tiny(), 5).unwrap();
        step(&mut a);
        save_weights(&a, &d.join("model.safetensors")).unwrap();
        save_optimizer(&mut a, &d.join("optimizer.safetensors")).unwrap();

        let mut b = load_model(tiny(), &[d.join("model.safetensors")]).unwrap();
        assert_eq!(b.params(), a.params());
        assert!(
            !b.has_train_buffers(),
            "a loaded model allocates gradients only when it trains"
        );
        load_optimizer(&mut b, &d.join("optimizer.safetensors")).unwrap();
        let (am, av, astep) = a
            .optimizer_state()
            .map(|(m, v, s)| (m.to_vec(), v.to_vec(), s))
            .unwrap();
        let (bm, bv, bstep) = b
            .optimizer_state()
            .map(|(m, v, s)| (m.to_vec(), v.to_vec(), s))
            .unwrap();
        assert_eq!((bm, bv, bstep), (am, av, astep));
        // identical state → identical next step
        step(&mut a);
        step(&mut b);
        assert_eq!(a.params(), b.params());

        // into an existing model of another seed
        let mut c = Model::new(tiny(), 6).unwrap();
        load_weights(&mut c, &[d.join("model.safetensors")]).unwrap();
        let e = load_model(
            ModelConfig {
                intermediate_size: 128,
                ..tiny()
            },
            &[d.join("model.safetensors")],
        )
        .err()
        .unwrap();
        assert_eq!(e.code, ErrorCode::Format);
        assert!(e.message.contains("needs [128, 64]"), "{e}");
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn failed_loads_leave_the_model_unchanged() {
        let d = dir("bad");
        let mut m = Model::new(tiny(), 1).unwrap();
        let before = m.params().to_vec();
        // a non-finite value, named by tensor
        let norm = m
            .param_table()
            .iter()
            .find(|t| t.name == "model.norm.weight")
            .unwrap()
            .clone();
        let mut other = Model::new(tiny(), 2).unwrap();
        other.set_params(&before).unwrap();
        other.params_mut()[norm.offset + 3] = f32::NAN;
        save_weights(&other, &d.join("nan.safetensors")).unwrap();
        let e = load_weights(&mut m, &[d.join("nan.safetensors")]).unwrap_err();
        assert!(
            e.message
                .contains("tensor \"model.norm.weight\" value at index 3 is not finite"),
            "{e}"
        );
        assert_eq!(e.code, ErrorCode::Format);
        let e = load_model(tiny(), &[d.join("nan.safetensors")])
            .err()
            .unwrap();
        assert!(e.message.contains("not finite"), "{e}");
        // missing files are I/O errors
        let e = load_weights(&mut m, &[d.join("missing.safetensors")]).unwrap_err();
        assert_eq!(e.code, ErrorCode::Io);
        assert_eq!(m.params(), &before[..]);
        // a frozen copy has no optimizer state
        let mut f = m.clone_frozen();
        assert_eq!(
            save_optimizer(&mut f, &d.join("o.safetensors"))
                .unwrap_err()
                .code,
            ErrorCode::Frozen
        );
        // an optimizer file for another size
        let mut small = Model::new(ModelConfig::preset("small").unwrap(), 1).unwrap();
        save_optimizer(&mut small, &d.join("o.safetensors")).unwrap();
        let e = load_optimizer(&mut m, &d.join("o.safetensors")).unwrap_err();
        assert!(e.message.contains("the model needs"), "{e}");
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn bf16_checkpoints_load_rounded() {
        let d = dir("bf16");
        let m = Model::new(tiny(), 3).unwrap();
        let p = m.params();
        let bf: Vec<u16> = p.iter().map(|&x| st::f32_to_bf16(x)).collect();
        let tensors: Vec<TensorOut<'_>> = m
            .param_table()
            .iter()
            .map(|t| TensorOut {
                name: &t.name,
                shape: t.shape.clone(),
                data: TensorData::BF16(&bf[t.offset..t.offset + t.len]),
            })
            .collect();
        // split over two shards
        let (a, b) = tensors.split_at(tensors.len() / 2);
        st::write(&d.join("s1.safetensors"), a, &[]).unwrap();
        st::write(&d.join("s2.safetensors"), b, &[]).unwrap();
        let l = load_model(
            tiny(),
            &[d.join("s1.safetensors"), d.join("s2.safetensors")],
        )
        .unwrap();
        for (x, y) in p.iter().zip(l.params()) {
            assert_eq!(*y, half::bf16::from_f32(*x).to_f32());
        }
        std::fs::remove_dir_all(d).ok();
    }
}
