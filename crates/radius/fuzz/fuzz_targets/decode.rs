//! `cargo fuzz run decode`: every codec entry point on arbitrary bytes; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = radius::Packet::decode(data) {
        let _ = p.encode();
        let _ = p.encode_request(b"secret");
        let _ = p.encode_response(b"secret", &[0; 16]);
    }
    let _ = radius::verify_request(data, b"secret");
    let _ = radius::verify_response(data, b"secret", &[0; 16]);
    let _ = radius::unhide_password(data, b"secret", &[0; 16]);
});
