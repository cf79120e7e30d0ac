//! The README's demo command runs green: every scripted step (allowed and denied) behaves as
//! expected. The demo binds loopback ports chosen by the OS.

#[test]
fn demo_script_passes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("the demo binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("All steps behaved as expected."));
    for expected in [
        "400 invalid_grant",
        "400 access_denied",
        "401 invalid_token",
        "stepping up to tasks.write",
        "list_notes -> error -32042 (URL elicitation)",
        "refreshes at the provider: 0 -> 1",
        "\"outcome\":\"revoked\"",
        "token revoked",
        // RV-3: the IdP's SET reached the AS, no manual revoke at the AS.
        "\"outcome\":\"delivered\"",
        "SET was accepted (202)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in:\n{stdout}"
        );
    }
}
