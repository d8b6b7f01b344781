//! Hostile input for the parsers of untrusted files (property tests with proptest; stable Rust). Safetensors
//! headers: arbitrary bytes, valid headers with bytes flipped, cut or spliced, and whole files with a random
//! length prefix; the model config check over arbitrary field values. Each input is either accepted with
//! every invariant holding or refused with an error; nothing panics, overflows or allocates without bound.
//! The same parsers are also fuzzed coverage-guided (libFuzzer, nightly): `kernels/fuzz`, `npm run fuzz`.
use proptest::prelude::*;

use crate::model::config::MAX_PARAMS;
use crate::model::ModelConfig;
use crate::safetensors::{parse_header, SafetensorsFile};

/// A valid header JSON for tensors of the given shapes (F32, packed in order), and its data length.
fn valid_header(shapes: &[Vec<usize>], meta: &[(String, String)]) -> (String, u64) {
    let mut entries = Vec::new();
    if !meta.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = meta
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        entries.push(format!("\"__metadata__\":{}", serde_json::Value::Object(m)));
    }
    let mut at = 0u64;
    for (i, s) in shapes.iter().enumerate() {
        let n: u64 = s.iter().map(|&d| d as u64).product::<u64>() * 4;
        entries.push(format!(
            "\"t{i}\":{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{at},{}]}}",
            serde_json::to_string(s).unwrap(),
            at + n
        ));
        at += n;
    }
    (format!("{{{}}}", entries.join(",")), at)
}

/// What an accepted header must satisfy: tensors packed end to end over the whole buffer, sizes matching.
fn check_accepted(h: &crate::safetensors::Header, data_len: u64) {
    let mut cursor = 0;
    for t in &h.tensors {
        assert_eq!(
            t.begin, cursor,
            "tensor {:?} starts where the previous ends",
            t.name
        );
        assert!(t.end >= t.begin && t.end <= data_len);
        assert!(!t.name.is_empty());
        cursor = t.end;
    }
    assert_eq!(cursor, data_len);
}

fn shapes() -> impl Strategy<Value = Vec<Vec<usize>>> {
    prop::collection::vec(prop::collection::vec(0usize..6, 0..4), 0..5)
}

fn meta() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-z]{1,6}", ".{0,12}"), 0..3)
}

/// A byte edit: flip a bit, cut the rest, insert bytes, or overwrite with an ASCII character JSON cares about.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Put(usize, u8),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(a, b)| Edit::Flip(a, b)),
        any::<usize>().prop_map(Edit::Cut),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (
            any::<usize>(),
            prop::sample::select(b"{}[]\",:-0123456789eE.\\ ".to_vec())
        )
            .prop_map(|(a, b)| Edit::Put(a, b)),
    ];
    prop::collection::vec(edit, 1..4)
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = b.len();
        match e {
            Edit::Flip(a, bit) if n > 0 => b[a % n] ^= 1 << bit,
            Edit::Cut(a) => b.truncate(a % (n + 1)),
            Edit::Insert(a, bytes) => {
                let at = a % (n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Edit::Put(a, c) if n > 0 => b[a % n] = *c,
            _ => {}
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn header_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512), len in any::<u64>()) {
        if let Ok(h) = parse_header(&bytes, 8, len) { check_accepted(&h, len); }
    }

    #[test]
    fn valid_headers_parse_and_mutants_are_checked(shapes in shapes(), meta in meta(), edits in edits(), slack in 0u64..3) {
        let (json, len) = valid_header(&shapes, &meta);
        let h = parse_header(json.as_bytes(), 8, len).expect("a valid header parses");
        check_accepted(&h, len);
        prop_assert_eq!(h.tensors.len(), shapes.len());
        // a wrong buffer length is refused
        if slack > 0 { prop_assert!(parse_header(json.as_bytes(), 8, len + slack).is_err()); }
        let mutant = apply(json.into_bytes(), &edits);
        if let Ok(h) = parse_header(&mutant, 8, len) { check_accepted(&h, len); }
    }

    #[test]
    fn hostile_numbers_in_headers_are_refused(dim in any::<u64>(), begin in any::<u64>(), end in any::<u64>(), rank in 0usize..20) {
        let shape = vec![dim; rank];
        let json = format!(
            "{{\"t\":{{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[{begin},{end}]}}}}",
            serde_json::to_string(&shape).unwrap()
        );
        if let Ok(h) = parse_header(json.as_bytes(), 8, 1 << 20) { check_accepted(&h, 1 << 20); }
    }

    #[test]
    fn files_with_hostile_length_prefixes_are_refused_or_valid(shapes in shapes(), edits in edits(), prefix in prop::option::of(any::<u64>())) {
        let (json, len) = valid_header(&shapes, &[]);
        let mutant = apply(json.into_bytes(), &edits);
        let mut file = prefix.unwrap_or(mutant.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(&mutant);
        file.extend(std::iter::repeat_n(0u8, len as usize));
        let path = std::env::temp_dir().join(format!("spark-hostile-{}-{}.safetensors", std::process::id(), rand_suffix()));
        std::fs::write(&path, &file).unwrap();
        let opened = SafetensorsFile::open(&path);
        std::fs::remove_file(&path).ok();
        if let Ok(f) = opened { check_accepted(&f.header, f.header.data_len); }
    }

    #[test]
    fn model_config_check_never_panics(
        dims in prop::array::uniform7(prop_oneof![0usize..300, any::<usize>(), Just(usize::MAX)]),
        eps in any::<f32>(), theta in any::<f32>(), tie in any::<bool>(), bias in any::<bool>(),
    ) {
        let c = ModelConfig {
            hidden_size: dims[0],
            intermediate_size: dims[1],
            num_hidden_layers: dims[2] % 512,
            num_attention_heads: dims[3],
            num_key_value_heads: dims[4],
            vocab_size: dims[5],
            max_position_embeddings: dims[6],
            rms_norm_eps: eps,
            rope_theta: theta,
            tie_word_embeddings: tie,
            attention_bias: bias,
        };
        if c.validate().is_ok() {
            prop_assert!(c.num_params() <= MAX_PARAMS);
            prop_assert!(c.head_dim() % 2 == 0 && c.qkv_width() > 0);
        }
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
