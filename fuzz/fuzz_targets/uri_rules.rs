#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ema_fuzz::uri_rules(data));
