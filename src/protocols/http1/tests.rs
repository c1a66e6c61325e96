//! Table tests and a property fuzzer of the request reader: every accepted
//! case gives the same requests and bodies whether its bytes arrive whole,
//! byte by byte or in random pieces; every refused case gives its status
//! and nothing of the bad message or of what follows it. The corpus is the
//! tables here plus the files in `tests/corpus/http1/` (`ok-*.http`,
//! `NNN-*.http` for a refusal with status NNN).

use bytes::BytesMut;

use super::reader::{Event, Reader};
use super::{Limits, Rejection};

/// What the reader made of some bytes: one line per request (its head,
/// then its body once complete), and how it ended.
type Transcript = (String, Result<(), Rejection>);

/// Feeds `input` to a reader in pieces of the sizes `sizes` gives.
fn feed(input: &[u8], mut sizes: impl FnMut(usize) -> usize) -> Transcript {
    let mut reader = Reader::new(Limits::default(), 1 << 20);
    let mut buf = BytesMut::new();
    let mut text = String::new();
    let mut rest = input;
    loop {
        loop {
            match reader.next(&mut buf) {
                Ok(None) => break,
                Ok(Some(Event::Head(h))) => text.push_str(&format!(
                    "{} {} {:?} {} {:?} keep={} | ",
                    h.method,
                    h.uri,
                    h.version,
                    h.headers.len(),
                    h.framing,
                    h.keep_alive
                )),
                Ok(Some(Event::Data(d))) => text.push_str(&String::from_utf8_lossy(&d)),
                Ok(Some(Event::End)) => text.push_str(" <end>\n"),
                Err(e) => return (text, Err(e)),
            }
        }
        if rest.is_empty() {
            return (text, Ok(()));
        }
        let n = sizes(rest.len()).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

fn run(input: &[u8]) -> Transcript {
    feed(input, |n| n)
}

fn run_bytewise(input: &[u8]) -> Transcript {
    feed(input, |_| 1)
}

fn status(t: &Transcript) -> Result<(), u16> {
    t.1.map_err(|e| e.status)
}

const OK: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a?b=c HTTP/1.0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n5;a=b;c=\"d\\\"e\"\r\nhello\r\n0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"GET http://x/y HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
];

#[test]
fn valid_requests_give_one_request_each_however_they_arrive() {
    for case in OK.iter().copied().chain(
        corpus()
            .iter()
            .filter(|c| c.0.is_none())
            .map(|c| c.1.as_slice()),
    ) {
        let shown = String::from_utf8_lossy(case);
        let whole = run(case);
        assert_eq!(whole.1, Ok(()), "{shown}");
        assert_eq!(whole.0.matches("<end>").count(), 1, "{shown}: {}", whole.0);
        assert_eq!(run_bytewise(case), whole, "{shown}");
    }
}

#[test]
fn what_is_normalised() {
    let (text, _) = run(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n");
    assert!(
        text.starts_with("GET / HTTP/1.1 1 None keep=true"),
        "{text}"
    );
    let (text, _) = run(b"GET / HTTP/1.0\r\nExpect: foo\r\n\r\n");
    assert!(
        text.starts_with("GET / HTTP/1.0 0 None keep=false"),
        "{text}"
    );
    let (text, _) = run(b"\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(
        text.starts_with("GET / HTTP/1.0 1 None keep=true"),
        "{text}"
    );
    let trailers = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nContent-Length: 9\r\nX-T: 1\r\n\r\n";
    let (text, result) = run(trailers);
    assert_eq!(result, Ok(()));
    assert!(text.ends_with("Chunked keep=true | a <end>\n"), "{text}");
}

const BAD: &[(u16, &[u8])] = &[
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
    (501, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    (400, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    (400, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    (400, b"G(ET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    (400, b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),
    (400, b"GET /\r\nHost: x\r\n\r\n"),
    (400, b"GET / HTTP/1.10\r\nHost: x\r\n\r\n"),
    (400, b"GET / http/1.1\r\nHost: x\r\n\r\n"),
    (505, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
    (505, b"GET / HTTP/3.0\r\nHost: x\r\n\r\n"),
    (400, b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n"),
    (400, b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
    (400, b"GET  HTTP/1.1\r\nHost: x\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost: x\r\n: y\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost: x\r\na(b: y\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: y\r\n z\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\n\r\n"),
    (400, b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"),
    (400, b"GET / HTTP/1.1\nHost: x\n\n"),
    (417, b"GET / HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n"),
];

#[test]
fn bad_requests_are_refused_and_nothing_after_them_is_read() {
    let first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
    let cases = BAD.iter().map(|(s, c)| (*s, c.to_vec()));
    let files = corpus().into_iter().filter_map(|(s, c)| s.map(|s| (s, c)));
    for (expected, case) in cases.chain(files) {
        let mut input = first.to_vec();
        input.extend_from_slice(&case);
        input.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        let shown = String::from_utf8_lossy(&case);
        for transcript in [run(&input), run_bytewise(&input)] {
            assert_eq!(status(&transcript), Err(expected), "{shown}");
            assert!(transcript.0.starts_with("GET /first "), "{shown}");
            assert!(!transcript.0.contains("smuggled"), "{shown}");
            assert_eq!(transcript.0.matches("<end>").count(), 1, "{shown}");
        }
    }
}

#[test]
fn limits_give_414_and_431() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&run(long.as_bytes())), Err(414));
    let fields = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(100)
    );
    assert_eq!(status(&run(fields.as_bytes())), Err(431));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert_eq!(status(&run(big.as_bytes())), Err(431));
    let endless = vec![b'a'; 20_000];
    assert_eq!(status(&run_bytewise(&endless)), Err(414));
}

#[test]
fn pipelined_bodies_keep_framing() {
    let input = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let whole = run(input);
    assert_eq!(whole.1, Ok(()));
    assert!(
        whole.0.contains("Length(3) keep=true | abc <end>\nGET /b "),
        "{}",
        whole.0
    );
    assert_eq!(run_bytewise(input), whole);
}

/// The corpus files: (`Some(status)` for a refusal, the bytes).
fn corpus() -> Vec<(Option<u16>, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/http1");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let status = name.split('-').next().and_then(|s| s.parse().ok());
            (status, std::fs::read(&path).unwrap_or_default())
        })
        .collect()
}

/// xorshift64*: a tiny deterministic generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\r\n :;,\"\\\t\x00\x7f0aFzZ-/*";

/// Mutates a corpus entry: flips, inserts and deletes bytes.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        let byte = if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len())]
        } else {
            rng.next() as u8
        };
        match rng.below(3) {
            0 if at < data.len() => data[at] = byte,
            1 => data.insert(at, byte),
            _ if at < data.len() => {
                data.remove(at);
            }
            _ => data.push(byte),
        }
    }
    data
}

/// Property fuzzing over the corpus: no input panics, and how the bytes
/// are split never changes the verdict nor the requests read. Bounded: a
/// fixed number of cases, about a second.
#[test]
fn fuzz_split_invariance_and_no_panics() {
    let mut seeds: Vec<Vec<u8>> = OK
        .iter()
        .map(|c| c.to_vec())
        .chain(BAD.iter().map(|(_, c)| c.to_vec()))
        .collect();
    seeds.extend(corpus().into_iter().map(|(_, c)| c));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..100_000 {
        let seed = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed);
        let whole = run(&input);
        let mut pieces = Rng(rng.next());
        let split = feed(&input, |n| 1 + pieces.below(n.min(64)));
        assert_eq!(
            status(&whole),
            status(&split),
            "verdict differs for {:?}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(
            whole.0,
            split.0,
            "requests differ for {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}
