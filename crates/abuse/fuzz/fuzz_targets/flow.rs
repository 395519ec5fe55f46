#![no_main]
//! `cargo fuzz run flow`: the NetFlow/IPFIX decoder never panics, whatever the
//! datagrams and in whatever order (templates persist between them).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = abuse::flow::Decoder::new();
    let exporter = "192.0.2.1:2055".parse().unwrap();
    for chunk in data.split(|b| *b == 0xff) {
        let _ = d.decode(exporter, chunk, |_| {});
    }
    let _ = d.decode(exporter, data, |_| {});
});
