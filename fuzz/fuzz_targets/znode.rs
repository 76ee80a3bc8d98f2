//! Znode payload decoding, and what it leads to: the input is applied to the test tree the
//! way a watch event is (`Tree::apply`: names and payload validated, members merged, the
//! snapshot entry encoded), then the touched name is queried (`check_znode`). No panic; data
//! that does not decode never reaches an answer; other names keep answering.
//!
//! Input: `/PATH\nPAYLOAD` puts PAYLOAD at `<root>/zones/PATH` (e.g. `/fz.test/web\n{}`);
//! any other input is the payload of a new record set, a new member, the apex and the zone.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zkdns::testkit;

fuzz_target!(|data: &[u8]| {
    let check = |path: &str, payload: &[u8]| {
        if let Err(e) = testkit::check_znode(path, payload) {
            panic!("{path}: {e}");
        }
    };
    if let Some(rest) = data.strip_prefix(b"/") {
        let (path, payload) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        check(&String::from_utf8_lossy(path), payload);
    } else {
        for path in ["fz.test/zz", "fz.test/svc/m9", "fz.test/@", "fz.test"] {
            check(path, data);
        }
    }
});
