#![no_main]
//! `cargo fuzz run dns`: the DNS answer decoder never panics.
use abuse::dns::{decode_answer, QType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = abuse::dns::message_id(data).unwrap_or(0);
    let _ = decode_answer(data, id, QType::A);
    let _ = decode_answer(data, id, QType::Txt);
});
