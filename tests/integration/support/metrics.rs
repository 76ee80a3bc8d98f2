//! Reading a running stub's Prometheus text at `/metrics` (`--metrics 127.0.0.1:0`): the
//! address it logged, one scrape as `series → value`, and the totals the tests count with
//! (queries received, queries forwarded).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::zkdns::Zkdns;

const METRICS_LINE: &str = "serving metrics and health on http://";

/// The `--metrics` address the stub logged.
pub fn metrics_address(stub: &Zkdns) -> SocketAddr {
    assert!(
        stub.wait_log(METRICS_LINE, Duration::from_secs(20)),
        "no metrics line:\n{}",
        stub.logs()
    );
    let logs = stub.logs();
    let rest = logs.split(METRICS_LINE).nth(1).unwrap();
    rest.split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the metrics address in {rest:?}"))
}

/// One scrape of `/metrics`: every sample as `name{labels}` → value.
pub fn scrape_metrics(addr: SocketAddr) -> BTreeMap<String, f64> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the HTTP response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of the family `name` (all its labels).
pub fn family_total(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(name))
        .map(|(_, v)| v)
        .sum()
}

/// What the stub has counted so far: queries received (every type, UDP and TCP) and
/// queries sent to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryCounts {
    pub received: u64,
    pub forwarded: u64,
}

impl QueryCounts {
    pub fn read(metrics: SocketAddr) -> QueryCounts {
        let samples = scrape_metrics(metrics);
        QueryCounts {
            received: family_total(&samples, "zkdns_queries_total") as u64,
            forwarded: family_total(&samples, "zkdns_forwarded_queries_total") as u64,
        }
    }

    /// What was counted between `before` and `self`.
    pub fn since(self, before: QueryCounts) -> QueryCounts {
        QueryCounts {
            received: self.received - before.received,
            forwarded: self.forwarded - before.forwarded,
        }
    }
}
