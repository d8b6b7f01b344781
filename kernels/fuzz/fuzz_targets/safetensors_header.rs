//! A safetensors header from arbitrary bytes: the first 8 bytes give the data length the header must cover,
//! the rest is the header JSON. It is refused with an error, or accepted with its tensors packed end to end
//! over exactly that length; it never panics, overflows or allocates without bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spark_kernels::safetensors::parse_header;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len, json) = data.split_at(8);
    // data lengths up to 1 TiB: larger ones only test the same refusal
    let data_len = u64::from_le_bytes(len.try_into().unwrap()) % (1 << 40);
    if let Ok(h) = parse_header(json, 8, data_len) {
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
        assert_eq!(cursor, data_len, "the tensors cover the data");
    }
});
