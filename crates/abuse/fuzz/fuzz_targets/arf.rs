#![no_main]
//! `cargo fuzz run arf`: the complaint parser never panics.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pools = policy::Pools::new(
        vec!["100.64.0.0/10".parse().unwrap()],
        vec!["198.51.100.0/24".parse().unwrap()],
    )
    .unwrap();
    let _ = abuse::arf::parse(data, &pools);
    let _ = abuse::arf::split_mbox(data);
});
