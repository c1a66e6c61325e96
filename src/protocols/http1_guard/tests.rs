//! Table tests of the guard: every accepted case passes unchanged (or
//! normalised), every refused case gives its status and lets nothing of the
//! bad message through.

use super::*;

fn run(input: &[u8]) -> (Vec<u8>, Result<(), Rejection>) {
    let mut guard = Guard::new(Limits::default());
    let mut out = Vec::new();
    let result = guard.feed(input, &mut out);
    (out, result)
}

/// Feeding byte by byte must give the same answer as feeding at once.
fn run_bytewise(input: &[u8]) -> (Vec<u8>, Result<(), Rejection>) {
    let mut guard = Guard::new(Limits::default());
    let mut out = Vec::new();
    for b in input {
        if let Err(e) = guard.feed(std::slice::from_ref(b), &mut out) {
            return (out, Err(e));
        }
    }
    (out, Ok(()))
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
fn valid_requests_pass_unchanged() {
    for case in OK {
        let (out, result) = run(case);
        assert_eq!(result, Ok(()), "{}", String::from_utf8_lossy(case));
        assert_eq!(out, *case, "{}", String::from_utf8_lossy(case));
        assert_eq!(run_bytewise(case), (case.to_vec(), Ok(())));
    }
}

#[test]
fn normalises_what_it_must() {
    let (out, _) = run(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n");
    assert_eq!(out, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (out, _) = run(b"GET / HTTP/1.0\r\nExpect: foo\r\n\r\n");
    assert_eq!(out, b"GET / HTTP/1.0\r\n\r\n");
    let (out, _) = run(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n");
    assert_eq!(out, b"GET / HTTP/1.0\r\n\r\n");
    let trailers = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 9\r\nX-T: 1\r\n\r\n";
    let (out, result) = run(trailers);
    assert_eq!(result, Ok(()));
    assert!(
        out.ends_with(b"0\r\nX-T: 1\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
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
fn bad_requests_are_refused_and_nothing_of_them_passes() {
    let first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
    for (status, case) in BAD {
        let mut input = first.to_vec();
        input.extend_from_slice(case);
        input.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        for (out, result) in [run(&input), run_bytewise(&input)] {
            let shown = String::from_utf8_lossy(case);
            assert_eq!(result.map_err(|r| r.status), Err(*status), "{shown}");
            assert!(out.starts_with(first), "{shown}");
            // A bad head never reaches hyper at all; a bad chunked body only
            // up to the offending bytes.
            if !shown.contains("Transfer-Encoding: chunked\r\n\r\n") {
                assert_eq!(out, first, "{shown}");
            }
            assert!(find(&out, b"smuggled").is_none(), "{shown}");
        }
    }
}

#[test]
fn limits_give_414_and_431() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    assert_eq!(run(long.as_bytes()).1.map_err(|r| r.status), Err(414));
    let fields = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(100)
    );
    assert_eq!(run(fields.as_bytes()).1.map_err(|r| r.status), Err(431));
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert_eq!(run(big.as_bytes()).1.map_err(|r| r.status), Err(431));
    let endless = vec![b'a'; 20_000];
    assert_eq!(run_bytewise(&endless).1.map_err(|r| r.status), Err(414));
}

#[test]
fn pipelined_bodies_keep_framing() {
    let input = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(run(input), (input.to_vec(), Ok(())));
    assert_eq!(run_bytewise(input), (input.to_vec(), Ok(())));
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

/// Feeds `input` in random pieces.
fn run_split(rng: &mut Rng, input: &[u8]) -> (Vec<u8>, Result<(), Rejection>) {
    let mut guard = Guard::new(Limits::default());
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(64));
        if let Err(e) = guard.feed(&rest[..n], &mut out) {
            return (out, Err(e));
        }
        rest = &rest[n..];
    }
    (out, Ok(()))
}

/// Property fuzzing over the corpus above (the tables are the corpus): no
/// input panics, and how the bytes are split never changes the verdict or
/// what passes. Bounded: a fixed number of cases, well under a second.
#[test]
fn fuzz_split_invariance_and_no_panics() {
    let corpus: Vec<&[u8]> = OK
        .iter()
        .copied()
        .chain(BAD.iter().map(|(_, c)| *c))
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..200_000 {
        let seed = corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed);
        let whole = run(&input);
        let split = run_split(&mut rng, &input);
        let status = |r: &Result<(), Rejection>| r.map_err(|e| e.status);
        assert_eq!(
            status(&whole.1),
            status(&split.1),
            "verdict differs for {:?}",
            String::from_utf8_lossy(&input)
        );
        if whole.1.is_ok() {
            assert_eq!(
                whole.0,
                split.0,
                "output differs for {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
