//! Large objects by slices, streaming fills (issue 12): a slow viewer of a large sliced object
//! gets it whole; a small range far into an object costs only the slices it covers and nothing
//! the second time; a cold large object's first byte reaches the viewer long before the origin
//! sent it all; a crowd of cold viewers makes one origin fetch per slice.
//!
//! CI sizes keep the suite lean (one upload per test, cache keys varied by query string so the
//! same object is cold again). `KUBEFRONT_LARGE_FULL=1` runs the full sizes: a 1 GiB
//! object read at 4 MB/s (about 4.5 minutes), a range at 700 MiB, 100 viewers of 256 MiB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubefront_edge::config::{ByteSize, Dur, QueryMode, QueryStrings};
use kubefront_tests::{pseudo_random_bytes, sha256_hex, ObjectMeta, Scenario};

const MIB: usize = 1024 * 1024;
const SLICE: usize = 8 * MIB;

fn full() -> bool {
    std::env::var("KUBEFRONT_LARGE_FULL").is_ok_and(|v| v == "1")
}

/// A scenario caching objects up to `size` in slices of 8 MiB (the default), the query string
/// in the cache key.
async fn sliced_scenario(label: &str, size: usize) -> Option<Scenario> {
    Scenario::start(label, |c| {
        c.cache.max_object_size = ByteSize((size + MIB) as u64);
        c.cache.memory = ByteSize((size + 64 * MIB) as u64);
        c.cache.key.query_strings = QueryStrings::Mode(QueryMode::All);
        c.cache.default_ttl = Dur::secs(3600);
        // Far shorter than the slow transfer below: only per-chunk idle timeouts let it end.
        c.origin.timeouts.total = Dur::secs(3);
    })
    .await
}

/// Reads a whole response at about `rate` bytes/s; the body's sha256 and length.
async fn read_paced(mut resp: reqwest::Response, rate: f64) -> (String, usize, Duration) {
    let started = Instant::now();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut received = 0usize;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                sha2::Digest::update(&mut hasher, &chunk);
                received += chunk.len();
                let due = Duration::from_secs_f64(received as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            Ok(None) => break,
            Err(e) => panic!(
                "cut off after {received} bytes in {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    (
        hex::encode(sha2::Digest::finalize(hasher)),
        received,
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_cost_their_slices_once_and_a_slow_viewer_gets_a_sliced_object_whole() {
    let (size, offset, rate) = if full() {
        (1024 * MIB, 700 * MIB, 4_000_000.0)
    } else {
        (48 * MIB, 40 * MIB + 12345, 8_000_000.0)
    };
    let Some(s) = sliced_scenario("sliced-ranges", size).await else {
        return;
    };
    let body = pseudo_random_bytes(size, 700);
    let want = sha256_hex(&body);
    s.bucket
        .put("/big.bin", body.clone(), ObjectMeta::default())
        .await
        .unwrap();

    // A 1 KiB range far into a cold object: at most two slices from the origin.
    let range = format!("bytes={offset}-{}", offset + 1023);
    let before = s.relay.bytes_from_origin();
    let r = s
        .get_with("/big.bin?t=range", &[("range", range.as_str())])
        .await;
    let at_answer = s.relay.bytes_from_origin() - before;
    // The slice keeps filling after the viewer got its kilobyte; wait until it is stored
    // (head + slice = 2 entries).
    let deadline = Instant::now() + Duration::from_secs(60);
    while s
        .edge
        .metrics()
        .await
        .unwrap()
        .sum("kubefront_edge_cache_entries", &[])
        < 2.0
    {
        assert!(Instant::now() < deadline, "slice never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cost = s.relay.bytes_from_origin() - before;
    eprintln!(
        "sliced-ranges: cold 1 KiB range at {offset}: answered after {at_answer} origin bytes, \
         {cost} in all"
    );
    assert_eq!(r.status, 206, "{}", r.cache_status());
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {offset}-{}/{size}", offset + 1023).as_str())
    );
    assert_eq!(&r.body[..], &body[offset..offset + 1024]);
    assert!(
        cost <= 2 * SLICE as u64 + 64 * 1024,
        "a 1 KiB range cost {cost} origin bytes"
    );
    let gets = s.origin_gets("/big.bin");
    assert!(gets <= 2, "{gets} origin GETs for one range");
    let etag = r.header("etag").expect("etag").to_string();

    // The same range again, and one with a matching If-Range: from the cache.
    let before = s.relay.bytes_from_origin();
    for extra in [None, Some(etag.as_str())] {
        let mut h = vec![("range", range.as_str())];
        if let Some(e) = extra {
            h.push(("if-range", e));
        }
        let r = s.get_with("/big.bin?t=range", &h).await;
        assert_eq!(r.status, 206, "{}", r.cache_status());
        assert_eq!(&r.body[..], &body[offset..offset + 1024]);
    }
    assert_eq!(
        s.relay.bytes_from_origin(),
        before,
        "cached slices cost nothing"
    );
    assert_eq!(s.origin_gets("/big.bin"), gets);

    // If-Range with a stale ETag: 200 with the whole object, slice after slice.
    let r = s
        .get_with(
            "/big.bin?t=range",
            &[("range", range.as_str()), ("if-range", "\"stale\"")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.cache_status());
    assert_eq!(r.body.len(), size);
    assert_eq!(sha256_hex(&r.body), want);
    let slices = size.div_ceil(SLICE);
    assert_eq!(
        s.origin_gets("/big.bin"),
        slices,
        "each slice fetched exactly once"
    );

    // A slow viewer of a cold copy (another cache key): whole, far past the total timeout.
    // Its own client: the harness client gives up after 120 s, the full size takes ~270 s.
    let patient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap();
    let resp = patient
        .get(s.edge.url("/big.bin?t=slow"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()),
        Some(size.to_string().as_str())
    );
    let (got, received, took) = read_paced(resp, rate).await;
    eprintln!(
        "sliced-ranges: slow viewer got {received} bytes in {took:?} ({:.1} MB/s), edge RSS {} MiB",
        received as f64 / took.as_secs_f64() / 1e6,
        s.edge.rss_bytes() >> 20
    );
    assert_eq!(received, size);
    assert_eq!(got, want);
    assert!(took > Duration::from_secs(4), "really slow: {took:?}");
    assert_eq!(s.origin_gets("/big.bin"), 2 * slices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_large_object_streams_early_and_a_crowd_makes_one_fetch_per_slice() {
    let size = 256 * MIB;
    let (viewers, crowd_len) = if full() { (100, size) } else { (100, 32 * MIB) };
    let Some(s) = sliced_scenario("sliced-crowd", size).await else {
        return;
    };
    let body = Arc::new(pseudo_random_bytes(size, 256));
    s.bucket
        .put("/movie.bin", body.to_vec(), ObjectMeta::default())
        .await
        .unwrap();

    // First byte of a cold object: long before the origin sent 32 MiB.
    let before = s.relay.bytes_from_origin();
    let started = Instant::now();
    let mut resp = s
        .http
        .get(s.edge.url("/movie.bin?t=first"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    let latency = started.elapsed();
    let sent = s.relay.bytes_from_origin() - before;
    eprintln!(
        "sliced-crowd: cold first byte after {latency:?}, origin had sent {} KiB",
        sent >> 10
    );
    assert_eq!(&first[..], &body[..first.len()]);
    assert!(
        sent < 32 * MIB as u64,
        "first byte only after {sent} origin bytes"
    );
    drop(resp);

    // A crowd of cold viewers (another cache key): one origin GET per slice they cover.
    let gets_before = s.origin_gets("/movie.bin");
    let baseline = s.edge.rss_bytes();
    let range = format!("bytes=0-{}", crowd_len - 1);
    let want = sha256_hex(&body[..crowd_len]);
    let s = Arc::new(s);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = tokio::spawn({
        let (s, peak) = (s.clone(), peak.clone());
        async move {
            loop {
                peak.fetch_max(s.edge.rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..viewers {
        let s = s.clone();
        let range = range.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = s.http.get(s.edge.url("/movie.bin?t=crowd"));
            if crowd_len < size {
                req = req.header("range", range);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let (sha, len, _) = read_paced(resp, f64::INFINITY).await;
            (status, sha, len)
        }));
    }
    for t in tasks {
        let (status, sha, len) = t.await.unwrap();
        assert!(status == 200 || status == 206, "{status}");
        assert_eq!(len, crowd_len);
        assert_eq!(sha, want);
    }
    let took = started.elapsed();
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let gets = s.origin_gets("/movie.bin") - gets_before;
    let slices = crowd_len.div_ceil(SLICE);
    eprintln!(
        "sliced-crowd: {viewers} viewers x {} MiB in {took:?}; {gets} origin GETs for {slices} slices; \
         RSS {} MiB -> peak {} MiB",
        crowd_len >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert_eq!(gets, slices, "one origin fetch per slice");
    // The cache holds what was read; beyond that only fills and per-connection buffers.
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < (crowd_len + 96 * MIB) as u64,
        "RSS grew by {} MiB for {} MiB of slices",
        growth >> 20,
        crowd_len >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_cut_by_the_origin_is_never_cached_and_its_readers_fail_fast() {
    let size = 24 * MIB;
    let Some(s) = Scenario::start("sliced-cut", |c| {
        c.cache.max_object_size = ByteSize(64 * MIB as u64);
        c.cache.memory = ByteSize(128 * MIB as u64);
        c.cache.error_caching_min_ttl = Dur::ZERO;
        c.origin.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    let body = pseudo_random_bytes(size, 24);
    let want = sha256_hex(&body);
    s.bucket
        .put("/cut.bin", body, ObjectMeta::cache_control("max-age=3600"))
        .await
        .unwrap();
    // Each origin connection is cut inside the first slice.
    s.relay.cut_responses_after(3 * MIB as u64);
    let s = Arc::new(s);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let resp = s.http.get(s.edge.url("/cut.bin")).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.map(|b| b.len()))
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        // Either the origin's failure before any header (502) or a cut body: never a
        // short body passed off as whole.
        assert!(
            status == 502 || body.is_err(),
            "status {status}, body {body:?}"
        );
    }
    let took = started.elapsed();
    eprintln!("sliced-cut: 10 viewers failed in {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "readers fail fast: {took:?}"
    );
    s.relay.cut_responses_after(0);
    let r = s.get("/cut.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.x_cache(), "Miss", "nothing stored from the cut fill");
    assert_eq!(sha256_hex(&r.body), want);
    assert_eq!(s.get("/cut.bin").await.x_cache(), "Hit");
}
