//! The packet path: any bytes, as a UDP and as a TCP query, with the map fresh, stale and too
//! old, answered from the fixed test snapshot by the code the listeners run
//! (`Handler::answer_now`). Every outcome must pass `check_reply` (no panic, a reply hickory
//! decodes with the query's ID, question and OPT echoed, the RCODE RFC 8906 asks for, within
//! the transport's size), and a valid query must still be answered correctly afterwards.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zkdns::testkit::{self, CLIENT, MapState};

fuzz_target!(|packet: &[u8]| {
    let snap = testkit::test_snapshot();
    let mut out = Vec::new();
    for state in [MapState::Fresh, MapState::Stale, MapState::TooOld] {
        for tcp in [false, true] {
            let verdict =
                testkit::answer_packet_in(state, snap, packet, CLIENT, tcp, &mut out);
            if let Err(e) = testkit::check_reply(state, snap, packet, tcp, verdict, &out) {
                panic!("{state:?} tcp={tcp}: {e}\n  reply {out:02x?}");
            }
        }
    }
    if let Err(e) = testkit::check_still_answers(snap) {
        panic!("a valid query after this one: {e}");
    }
});
