//! The managed block of a hosts file, as pure text: [`render`] rewrites the lines between
//! `# BEGIN zkdns` and `# END zkdns` (appending the block when there is none) and keeps every
//! other byte; names and addresses that a hosts line cannot carry never reach it.

use std::net::IpAddr;

use thiserror::Error;

/// The line that opens the managed block.
pub const BEGIN: &str = "# BEGIN zkdns";
/// The line that closes it.
pub const END: &str = "# END zkdns";
/// Longest host name a hosts line may carry (a DNS name without its root label).
const MAX_NAME: usize = 253;

/// Why the markers of a file do not delimit one block; nothing is written then.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MarkerError {
    #[error("line {line}: \"# BEGIN zkdns\" has no \"# END zkdns\" after it")]
    Unclosed { line: usize },
    #[error("line {line}: \"# END zkdns\" has no \"# BEGIN zkdns\" before it")]
    Unopened { line: usize },
    #[error("line {line}: a second \"# BEGIN zkdns\" before the block of line {first} ended")]
    Nested { first: usize, line: usize },
    #[error("line {line}: a second zkdns block (the first one begins on line {first})")]
    Second { first: usize, line: usize },
}

/// Checks that `text` has at most one well-formed block, before anything is rendered into it.
pub fn check_markers(text: &[u8]) -> Result<(), MarkerError> {
    find_block(text).map(drop)
}

/// The new text of a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: Vec<u8>,
    /// Lines in the block.
    pub lines: usize,
    /// Names left out because they are not plain host names.
    pub rejected: Vec<String>,
}

/// One line of a text: `start..end` is its content (without `\n` or `\r\n`), `next` where the
/// next line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: usize,
    end: usize,
    next: usize,
}

fn lines(text: &[u8]) -> impl Iterator<Item = Line> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= text.len() {
            return None;
        }
        let next = text[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |i| start + i + 1);
        let mut end = next;
        if end > start && text[end - 1] == b'\n' {
            end -= 1;
        }
        if end > start && text[end - 1] == b'\r' {
            end -= 1;
        }
        let line = Line { start, end, next };
        start = next;
        Some(line)
    })
}

fn is_marker(content: &[u8], marker: &str) -> bool {
    content.trim_ascii() == marker.as_bytes()
}

/// The managed block's BEGIN and END lines, if the file has one; an error if its markers are
/// not exactly one BEGIN followed by one END.
fn find_block(text: &[u8]) -> Result<Option<(Line, Line)>, MarkerError> {
    let mut open: Option<(usize, Line)> = None;
    let mut block: Option<(usize, Line, Line)> = None;
    for (i, line) in lines(text).enumerate() {
        let number = i + 1;
        let content = &text[line.start..line.end];
        if is_marker(content, BEGIN) {
            if let Some((first, _)) = open {
                return Err(MarkerError::Nested {
                    first,
                    line: number,
                });
            }
            if let Some((first, _, _)) = block {
                return Err(MarkerError::Second {
                    first,
                    line: number,
                });
            }
            open = Some((number, line));
        } else if is_marker(content, END) {
            match open.take() {
                Some((first, begin)) => block = Some((first, begin, line)),
                None => return Err(MarkerError::Unopened { line: number }),
            }
        }
    }
    if let Some((line, _)) = open {
        return Err(MarkerError::Unclosed { line });
    }
    Ok(block.map(|(_, begin, end)| (begin, end)))
}

/// Whether `name` can go on a hosts line as is: dot-separated labels of letters, digits,
/// `-` and `_`, no empty label, no label starting or ending with `-`. Nothing else (no
/// whitespace, no `#`, no control character) can then reach the file.
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Rewrites the managed block of `existing` to hold one `IP<TAB>name` line per address of
/// `entries`, sorted by name then address. Every byte outside the block stays as it was; a
/// file without a block gets one appended. The block's lines end like the file's (`\r\n` when
/// the file uses it). Names that are not plain host names are left out and listed.
pub fn render(existing: &[u8], entries: &[(String, Vec<IpAddr>)]) -> Result<Rendered, MarkerError> {
    let block = find_block(existing)?;
    let eol: &[u8] = match block {
        Some((begin, _)) => &existing[begin.end..begin.next],
        None => lines(existing)
            .next()
            .map(|l| &existing[l.end..l.next])
            .filter(|t| !t.is_empty() && *t != b"\r")
            .unwrap_or(b"\n"),
    };
    let mut pairs: Vec<(&str, IpAddr)> = Vec::new();
    let mut rejected = Vec::new();
    for (name, addrs) in entries {
        if is_host_name(name) {
            pairs.extend(addrs.iter().map(|a| (name.as_str(), *a)));
        } else {
            rejected.push(name.clone());
        }
    }
    pairs.sort();
    pairs.dedup();

    let mut body = Vec::with_capacity(pairs.len() * 32 + 32);
    body.extend_from_slice(BEGIN.as_bytes());
    body.extend_from_slice(eol);
    for (name, addr) in &pairs {
        body.extend_from_slice(addr.to_string().as_bytes());
        body.push(b'\t');
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(eol);
    }
    body.extend_from_slice(END.as_bytes());

    let mut text = Vec::with_capacity(existing.len() + body.len() + 2);
    match block {
        Some((begin, end)) => {
            text.extend_from_slice(&existing[..begin.start]);
            text.extend_from_slice(&body);
            text.extend_from_slice(&existing[end.end..]);
        }
        None => {
            text.extend_from_slice(existing);
            if !existing.is_empty() && !existing.ends_with(b"\n") {
                text.extend_from_slice(eol);
            }
            text.extend_from_slice(&body);
            text.extend_from_slice(eol);
        }
    }
    Ok(Rendered {
        text,
        lines: pairs.len(),
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entries(list: &[(&str, &[&str])]) -> Vec<(String, Vec<IpAddr>)> {
        list.iter()
            .map(|(n, a)| (n.to_string(), a.iter().map(|s| ip(s)).collect()))
            .collect()
    }

    fn text(r: Result<Rendered, MarkerError>) -> String {
        String::from_utf8(r.unwrap().text).unwrap()
    }

    #[test]
    fn appends_a_block_to_a_file_without_one() {
        let e = entries(&[
            ("web.c.test", &["10.0.0.6", "10.0.0.5"]),
            ("api.c.test", &["fd00::1"]),
        ]);
        assert_eq!(
            text(render(b"127.0.0.1\tlocalhost\n", &e)),
            "127.0.0.1\tlocalhost\n# BEGIN zkdns\nfd00::1\tapi.c.test\n10.0.0.5\tweb.c.test\n\
             10.0.0.6\tweb.c.test\n# END zkdns\n"
        );
        // no newline at the end: one is added before the block, the user's line is untouched
        assert_eq!(
            text(render(b"127.0.0.1 localhost", &[])),
            "127.0.0.1 localhost\n# BEGIN zkdns\n# END zkdns\n"
        );
        assert_eq!(text(render(b"", &[])), "# BEGIN zkdns\n# END zkdns\n");
    }

    #[test]
    fn replaces_only_the_block() {
        let before = "a\n# BEGIN zkdns\n1.1.1.1\told\n# END zkdns\nb\n";
        let e = entries(&[("new.t", &["10.0.0.1"])]);
        assert_eq!(
            text(render(before.as_bytes(), &e)),
            "a\n# BEGIN zkdns\n10.0.0.1\tnew.t\n# END zkdns\nb\n"
        );
        // the END line's lack of a newline is outside the block and kept
        let before = "a\n  # BEGIN zkdns \n# END zkdns";
        assert_eq!(
            text(render(before.as_bytes(), &e)),
            "a\n# BEGIN zkdns\n10.0.0.1\tnew.t\n# END zkdns"
        );
    }

    #[test]
    fn crlf_files_keep_crlf() {
        let before = "127.0.0.1 localhost\r\n# BEGIN zkdns\r\n# END zkdns\r\nx\r\n";
        let e = entries(&[("w.t", &["10.0.0.1"])]);
        assert_eq!(
            text(render(before.as_bytes(), &e)),
            "127.0.0.1 localhost\r\n# BEGIN zkdns\r\n10.0.0.1\tw.t\r\n# END zkdns\r\nx\r\n"
        );
        assert_eq!(
            text(render(b"127.0.0.1 localhost\r\n", &e)),
            "127.0.0.1 localhost\r\n# BEGIN zkdns\r\n10.0.0.1\tw.t\r\n# END zkdns\r\n"
        );
    }

    #[test]
    fn malformed_markers_are_refused() {
        let cases: &[(&str, MarkerError)] = &[
            ("a\n# BEGIN zkdns\nb\n", MarkerError::Unclosed { line: 2 }),
            ("# END zkdns\n", MarkerError::Unopened { line: 1 }),
            (
                "# BEGIN zkdns\n# BEGIN zkdns\n# END zkdns\n",
                MarkerError::Nested { first: 1, line: 2 },
            ),
            (
                "# BEGIN zkdns\n# END zkdns\n# BEGIN zkdns\n# END zkdns\n",
                MarkerError::Second { first: 1, line: 3 },
            ),
            (
                "# BEGIN zkdns\n# END zkdns\n# END zkdns\n",
                MarkerError::Unopened { line: 3 },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                render(input.as_bytes(), &[]).unwrap_err(),
                *want,
                "{input:?}"
            );
        }
        // a marker inside other text is just text
        assert!(render(b"# BEGIN zkdns please\n", &[]).is_ok());
    }

    #[test]
    fn crafted_names_never_reach_the_file() {
        let e = entries(&[
            ("evil\n10.6.6.6 bank.example", &["10.0.0.1"]),
            ("# END zkdns", &["10.0.0.2"]),
            ("a b", &["10.0.0.3"]),
            ("tab\tname", &["10.0.0.4"]),
            ("-bad.t", &["10.0.0.5"]),
            ("a..b", &["10.0.0.6"]),
            ("ok_1.srv-x.t", &["10.0.0.7"]),
        ]);
        let r = render(b"", &e).unwrap();
        assert_eq!(
            String::from_utf8(r.text).unwrap(),
            "# BEGIN zkdns\n10.0.0.7\tok_1.srv-x.t\n# END zkdns\n"
        );
        assert_eq!(r.rejected.len(), 6);
        assert!(!is_host_name(&"a".repeat(64)));
        assert!(!is_host_name(&format!("{}.t", "a.".repeat(130))));
    }

    /// Lines of user text: anything but the markers, including `\r`, tabs, non-UTF-8 bytes.
    fn user_text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b"\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"127.0.0.1 localhost".to_vec()),
                Just(b"# BEGIN zkdn".to_vec()),
                Just(b"# comment".to_vec()),
                Just(b"\t \xff\x00".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
        .prop_filter("no markers", |t| find_block(t) == Ok(None))
    }

    fn any_entries() -> impl Strategy<Value = Vec<(String, Vec<IpAddr>)>> {
        proptest::collection::vec(
            (
                "[a-z0-9_ \\-\\.\n#]{1,12}",
                proptest::collection::vec(any::<IpAddr>(), 0..3),
            ),
            0..6,
        )
    }

    proptest! {
        /// Bytes before and after the block are kept exactly; the result renders to itself.
        #[test]
        fn outside_bytes_kept_and_idempotent(
            pre in user_text(),
            post in user_text(),
            old in any_entries(),
            new in any_entries(),
        ) {
            // a file with a block (made by a first render) between `pre` and `post`
            let mut prefix = pre.clone();
            if !prefix.is_empty() && !prefix.ends_with(b"\n") {
                prefix.push(b'\n');
            }
            let block = render(b"", &old).unwrap().text;
            let block = &block[..block.len() - 1]; // without its newline
            // the END line ends where `post` begins: with a line break, or at the end
            let mut post = post;
            if !post.is_empty() && !post.starts_with(b"\n") && !post.starts_with(b"\r\n") {
                post.insert(0, b'\n');
            }
            let file = [prefix.as_slice(), block, post.as_slice()].concat();
            let once = render(&file, &new).unwrap();
            prop_assert!(once.text.starts_with(&prefix));
            prop_assert!(once.text.ends_with(&post));
            let twice = render(&once.text, &new).unwrap();
            prop_assert_eq!(&twice.text, &once.text);
            // every line in the block is `IP<TAB>valid name`
            let rendered = String::from_utf8_lossy(&once.text[prefix.len()..once.text.len() - post.len()]).into_owned();
            for line in rendered.lines().filter(|l| !l.starts_with('#')) {
                let (addr, name) = line.split_once('\t').unwrap();
                prop_assert!(addr.parse::<IpAddr>().is_ok(), "{:?}", line);
                prop_assert!(is_host_name(name), "{:?}", line);
            }

            // without a block: the file is kept as its prefix, and the second render agrees
            let appended = render(&pre, &new).unwrap();
            prop_assert!(appended.text.starts_with(&pre));
            prop_assert_eq!(render(&appended.text, &new).unwrap().text, appended.text.clone());
        }
    }
}
