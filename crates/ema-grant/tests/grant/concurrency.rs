//! SEC-1 / AS-7 under contention: ten threads released together by one barrier redeem the same
//! ID-JAG against one shared grant; exactly one gets a token.

use std::sync::{Arc, Barrier};
use std::thread;

use serde_json::json;

use crate::support::*;

const THREADS: usize = 10;
const ROUNDS: usize = 20;

/// Sends one request per thread, all released by a barrier, and returns the replies.
fn race(grant: &Arc<AsGrant>, requests: Vec<http::Request<Vec<u8>>>) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let handles: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let grant = Arc::clone(grant);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let response = pollster::block_on(grant.handle(&request, NOW));
                Reply::check(response)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect()
}

#[test]
fn one_id_jag_redeemed_by_ten_threads_yields_exactly_one_token() {
    let fx = Fx::new();
    let grant = Arc::new(fx.as_grant());
    for round in 0..ROUNDS {
        let jag = fx.jag(json!({}));
        let requests = (0..THREADS).map(|_| Req::bearer(&jag).build()).collect();
        let replies = race(&grant, requests);
        let winners = replies.iter().filter(|r| r.status == 200).count();
        assert_eq!(winners, 1, "round {round}: exactly one token");
        for loser in replies.iter().filter(|r| r.status != 200) {
            assert_eq!(
                (loser.status, loser.error()),
                (400, "invalid_grant"),
                "round {round}"
            );
            assert!(
                loser.description().contains("already used"),
                "{}",
                loser.raw
            );
        }
    }
}

#[test]
fn ten_threads_with_ten_id_jags_all_succeed() {
    // The control: contention on the store does not refuse distinct ID-JAGs.
    let fx = Fx::new();
    let grant = Arc::new(fx.as_grant());
    for _ in 0..5 {
        let requests = (0..THREADS)
            .map(|_| Req::bearer(&fx.jag(json!({}))).build())
            .collect();
        assert!(race(&grant, requests).iter().all(|r| r.status == 200));
    }
}

#[test]
fn replayed_id_jag_with_distinct_client_assertions_and_proofs() {
    // Each thread authenticates with its own client assertion and DPoP proof, so only the
    // ID-JAG's jti is shared: still exactly one token.
    let fx = Fx::new();
    let grant = Arc::new(fx.as_grant());
    for round in 0..ROUNDS / 2 {
        let jag = fx.jag(json!({"client_id": PK_CLIENT}));
        let requests = (0..THREADS)
            .map(|_| {
                Req::bearer(&jag)
                    .client_assertion(&fx.client_assertion(json!({})))
                    .dpop(&fx.dpop_proof(&fx.keys.dpop, TOKEN_ENDPOINT, json!({})))
                    .build()
            })
            .collect();
        let replies = race(&grant, requests);
        assert_eq!(
            replies.iter().filter(|r| r.status == 200).count(),
            1,
            "round {round}"
        );
        assert!(
            replies
                .iter()
                .filter(|r| r.status != 200)
                .all(|r| r.error() == "invalid_grant")
        );
    }
}
