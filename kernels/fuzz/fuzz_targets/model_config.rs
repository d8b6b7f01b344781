//! The model config check over arbitrary field values (a config.json's numbers, as the binding passes them):
//! `validate` refuses what the model cannot be built from, and for what it accepts the parameter count is
//! within the bound and every derived size computes without overflow.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spark_kernels::model::config::MAX_PARAMS;
use spark_kernels::model::ModelConfig;

fuzz_target!(|data: &[u8]| {
    if data.len() < 40 {
        return;
    }
    let word = |i: usize| u32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap());
    let cfg = ModelConfig {
        hidden_size: word(0) as usize,
        intermediate_size: word(1) as usize,
        num_hidden_layers: word(2) as usize,
        num_attention_heads: word(3) as usize,
        num_key_value_heads: word(4) as usize,
        vocab_size: word(5) as usize,
        rms_norm_eps: f32::from_bits(word(6)),
        rope_theta: f32::from_bits(word(7)),
        tie_word_embeddings: word(8) & 1 == 1,
        max_position_embeddings: word(9) as usize,
        attention_bias: word(8) & 2 == 2,
    };
    if cfg.validate().is_ok() {
        assert!(cfg.num_params() <= MAX_PARAMS);
        let _ = (cfg.head_dim(), cfg.qkv_width());
    }
});
