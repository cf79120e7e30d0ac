#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ema_fuzz::json_claims(data));
