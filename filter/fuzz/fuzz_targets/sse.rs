//! An upstream's SSE stream, cut into chunks at arbitrary points, through
//! the relay that rewrites it on its way to the client.
//!
//! Input: a count of cuts, that many cut lengths, then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_filter::relay::{SseEvents, SseRelay, Verdict};
use mcp_filter::sse;
use mcp_filter_fuzz::Fields;

fuzz_target!(|data: &[u8]| {
    let mut input = Fields::new(data);
    let cuts: Vec<usize> = (0..input.byte() % 16).map(|_| usize::from(input.byte())).collect();
    let stream = input.rest();
    let chunks = chunks(stream, &cuts);

    // Passing everything unjudged, the relay must give back the stream as it came.
    let mut plain = SseEvents::default();
    assert_eq!(feed(&chunks, |c, end| plain.feed(c, end, |_| Verdict::Keep)), stream);

    // However the stream is cut, the client gets the same bytes.
    let mut whole = SseRelay::new("srv");
    let mut cut = SseRelay::new("srv");
    assert_eq!(feed(&chunks, |c, end| cut.feed(c, end)), whole.feed(stream, true), "{chunks:?}");
    // And the metrics read the same answer from it.
    assert_eq!(cut.error_code(), whole.error_code(), "{chunks:?}");

    let mut judging = SseEvents::judging_all();
    let mut n = 0u32;
    let _ = feed(&chunks, |c, end| {
        judging.feed(c, end, |_| {
            n += 1;
            match n % 3 {
                0 => Verdict::Keep,
                1 => Verdict::Drop,
                _ => Verdict::Replace("{\"a\":\n1}".into()),
            }
        })
    });

    // The reader of the filter's own callouts, whole and as a stream.
    let _ = sse::events(&String::from_utf8_lossy(stream));
    let mut buf = Vec::new();
    for c in &chunks {
        buf.extend_from_slice(c);
        let _ = sse::take_events(&mut buf);
    }
});

fn chunks<'a>(mut stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for &len in cuts {
        let (c, rest) = stream.split_at(len.min(stream.len()));
        out.push(c);
        stream = rest;
    }
    out.push(stream);
    out
}

/// Feeds every chunk, the last one as the end, and joins what came out.
fn feed(chunks: &[&[u8]], mut f: impl FnMut(&[u8], bool) -> Vec<u8>) -> Vec<u8> {
    let last = chunks.len() - 1;
    chunks.iter().enumerate().flat_map(|(i, c)| f(c, i == last)).collect()
}
