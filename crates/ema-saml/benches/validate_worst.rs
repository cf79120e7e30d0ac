//! The validator on the worst input of the accepted size (see `support/worst.rs`): the forged
//! copy an attacker without the IdP's key can send (refused: bad signature), and the same
//! document signed by the IdP (accepted: the body is canonicalized and digested); the same two
//! for the other extreme of the budget, as many small elements as fit. All must finish well
//! under 10 ms. A textbook signed assertion is measured alongside for scale. See
//! docs/benchmarks.md.
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark setup fails loudly")]
#![allow(clippy::panic, reason = "benchmark setup fails loudly")]
#![allow(clippy::indexing_slicing, reason = "benchmark setup fails loudly")]

#[path = "support/worst.rs"]
mod worst;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ema_saml::{AssertionTemplate, SamlAssertionSigner, SamlError};

use worst::{WORST_CLIENT, WORST_IDP, WORST_NOW, WORST_RECIPIENT, WORST_SP, WORST_USER, WorstCase};

fn bench(c: &mut Criterion) {
    let w = WorstCase::new();
    let typical = SamlAssertionSigner::new(WORST_IDP, w.key.clone())
        .sign(
            &AssertionTemplate::new(WORST_USER, WORST_SP, WORST_NOW)
                .with_recipient(WORST_RECIPIENT)
                .with_attribute("groups", ["eng", "ops"]),
        )
        .unwrap();
    assert_eq!(
        w.validator
            .validate(w.forged.as_bytes(), WORST_CLIENT, WORST_NOW)
            .unwrap_err(),
        SamlError::BadSignature
    );
    w.validator
        .validate(w.signed.as_bytes(), WORST_CLIENT, WORST_NOW)
        .unwrap();
    w.validator
        .validate(typical.as_bytes(), WORST_CLIENT, WORST_NOW)
        .unwrap();

    let (many_signed, many_forged) = w.many_elements();
    assert_eq!(
        w.validator
            .validate(many_forged.as_bytes(), WORST_CLIENT, WORST_NOW)
            .unwrap_err(),
        SamlError::BadSignature
    );
    w.validator
        .validate(many_signed.as_bytes(), WORST_CLIENT, WORST_NOW)
        .unwrap();

    let (decl_signed, decl_forged) = w.declaring_elements();
    assert_eq!(
        w.validator
            .validate(decl_forged.as_bytes(), WORST_CLIENT, WORST_NOW)
            .unwrap_err(),
        SamlError::BadSignature
    );
    w.validator
        .validate(decl_signed.as_bytes(), WORST_CLIENT, WORST_NOW)
        .unwrap();

    let mut group = c.benchmark_group("saml_validate");
    group.bench_function("worst_forged_64k", |b| {
        b.iter(|| {
            black_box(
                w.validator
                    .validate(black_box(w.forged.as_bytes()), WORST_CLIENT, WORST_NOW),
            )
        });
    });
    group.bench_function("worst_signed_64k", |b| {
        b.iter(|| {
            black_box(
                w.validator
                    .validate(black_box(w.signed.as_bytes()), WORST_CLIENT, WORST_NOW),
            )
        });
    });
    group.bench_function("many_elements_forged_64k", |b| {
        b.iter(|| {
            black_box(w.validator.validate(
                black_box(many_forged.as_bytes()),
                WORST_CLIENT,
                WORST_NOW,
            ))
        });
    });
    group.bench_function("many_elements_signed_64k", |b| {
        b.iter(|| {
            black_box(w.validator.validate(
                black_box(many_signed.as_bytes()),
                WORST_CLIENT,
                WORST_NOW,
            ))
        });
    });
    group.bench_function("declaring_elements_forged_64k", |b| {
        b.iter(|| {
            black_box(w.validator.validate(
                black_box(decl_forged.as_bytes()),
                WORST_CLIENT,
                WORST_NOW,
            ))
        });
    });
    group.bench_function("declaring_elements_signed_64k", |b| {
        b.iter(|| {
            black_box(w.validator.validate(
                black_box(decl_signed.as_bytes()),
                WORST_CLIENT,
                WORST_NOW,
            ))
        });
    });
    group.bench_function("typical_signed", |b| {
        b.iter(|| {
            black_box(
                w.validator
                    .validate(black_box(typical.as_bytes()), WORST_CLIENT, WORST_NOW),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
