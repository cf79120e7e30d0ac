//! Property tests: altering any byte of any record, deleting, duplicating or reordering records,
//! or cutting the file anywhere breaks verification at that record, and the report names it.

use ema_audit::{BrokenLink, LinkProblem, Verifier, VerifyError};
use proptest::prelude::*;

use crate::common::{jwks, lines, trail};

fn verify(bytes: &[u8]) -> Result<ema_audit::VerifyReport, VerifyError> {
    Verifier::new(jwks()).verify_bytes(bytes)
}

fn broken(bytes: &[u8]) -> BrokenLink {
    match verify(bytes) {
        Err(VerifyError::Broken(link)) => link,
        other => panic!("expected a broken link, got {other:?}"),
    }
}

/// A closed trail of 1..24 events with a checkpoint every 1..6 events.
fn trails() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (1usize..24, 1u64..6).prop_map(|(events, every)| lines(&trail(events, every)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_untouched_trail_verifies(all in trails()) {
        let report = verify(&all.concat()).unwrap();
        prop_assert!(report.closed);
        prop_assert_eq!(report.records, all.len() as u64);
    }

    #[test]
    fn altering_any_byte_breaks_at_that_record(
        all in trails(),
        line in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let i = line.index(all.len());
        let len = all[i].len() - 1; // not the line feed
        let j = at.index(len);
        prop_assume!(all[i][j] != byte);
        let mut altered = all.clone();
        altered[i][j] = byte;
        let link = broken(&altered.concat());
        let line_no = i as u64 + 1;
        // The altered record itself fails, or the next record's `prev` names it.
        let named = link.line == line_no
            || (link.line == line_no + 1
                && link.problem == LinkProblem::Prev { previous_line: line_no, previous_seq: i as u64 });
        prop_assert!(named, "altered line {} byte {}: {}", line_no, j, link);
    }

    #[test]
    fn deleting_a_record_breaks_at_its_place(all in trails(), line in any::<prop::sample::Index>()) {
        let i = line.index(all.len());
        let mut cut = all.clone();
        cut.remove(i);
        if i + 1 == all.len() {
            // The final checkpoint itself: the trail is no longer closed after the record before.
            match verify(&cut.concat()) {
                Err(VerifyError::NotClosed { last_seq, .. }) => prop_assert_eq!(last_seq, i as u64 - 1),
                other => prop_assert!(false, "{:?}", other),
            }
        } else {
            let link = broken(&cut.concat());
            prop_assert_eq!(link.line, i as u64 + 1);
            prop_assert_eq!(link.problem, LinkProblem::Seq { expected: i as u64, found: i as u64 + 1 });
        }
    }

    #[test]
    fn duplicating_a_record_breaks_at_the_copy(all in trails(), line in any::<prop::sample::Index>()) {
        let i = line.index(all.len());
        let mut dup = all.clone();
        dup.insert(i + 1, all[i].clone());
        let link = broken(&dup.concat());
        prop_assert_eq!(link.line, i as u64 + 2);
        prop_assert_eq!(link.problem, LinkProblem::Seq { expected: i as u64 + 1, found: i as u64 });
    }

    #[test]
    fn reordering_records_breaks_at_the_first_moved(
        all in trails(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let (i, j) = (a.index(all.len()), b.index(all.len()));
        prop_assume!(i != j);
        let (i, j) = (i.min(j), i.max(j));
        let mut moved = all.clone();
        moved.swap(i, j);
        let link = broken(&moved.concat());
        prop_assert_eq!(link.line, i as u64 + 1);
        prop_assert_eq!(link.problem, LinkProblem::Seq { expected: i as u64, found: j as u64 });
    }

    #[test]
    fn cutting_the_file_anywhere_is_detected(all in trails(), at in any::<prop::sample::Index>()) {
        let bytes = all.concat();
        let n = at.index(bytes.len()); // strictly shorter than the trail
        match verify(&bytes[..n]) {
            Err(VerifyError::Empty) => prop_assert_eq!(n, 0),
            Err(VerifyError::NotClosed { .. }) => prop_assert_eq!(bytes[n - 1], b'\n'),
            Err(VerifyError::Broken(link)) => prop_assert_eq!(link.problem, LinkProblem::Incomplete),
            other => prop_assert!(false, "cut at {}: {:?}", n, other),
        }
    }
}

#[test]
fn an_edited_event_is_named_by_the_next_link() {
    let all = lines(&trail(3, 10));
    let mut edited = all.clone();
    let text = String::from_utf8(edited[1].clone()).unwrap();
    edited[1] = text.replacen("user-1", "user-X", 1).into_bytes();
    assert_ne!(edited[1], all[1]);
    let link = broken(&edited.concat());
    assert_eq!(link.line, 3);
    assert_eq!(link.seq, Some(2));
    assert_eq!(
        link.problem,
        LinkProblem::Prev {
            previous_line: 2,
            previous_seq: 1
        }
    );
    assert_eq!(
        link.to_string(),
        "line 3 (seq 2): `prev` is not the hash of line 2 (seq 1): that record was altered, or this link was"
    );
}
