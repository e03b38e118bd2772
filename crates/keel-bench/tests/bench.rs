//! Fast tests of the measurement itself: percentiles, the Zipf shape, /proc parsing, and that the
//! open loop measures from the intended start (against a fake server, on tokio's paused clock).

use keel_bench::config::{Config, KeyDistribution, LoadShape, OpMix, ReadLevel};
use keel_bench::driver::{Connection, OpError, Route, Target};
use keel_bench::histogram::LatencyHistogram;
use keel_bench::keys::{KeyPicker, ZipfTable};
use keel_bench::procstat;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn percentiles_of_a_uniform_spread() {
    let mut h = LatencyHistogram::new();
    for us in 1..=10_000u64 {
        h.record_us(us);
    }
    let s = h.summary();
    assert_eq!(s.count, 10_000);
    // HDR with 3 significant digits: within 0.1% of the exact order statistic.
    let close = |got_ms: f64, want_ms: f64| (got_ms - want_ms).abs() <= want_ms * 0.001 + 0.001;
    assert!(close(s.p50_ms, 5.0), "p50 {}", s.p50_ms);
    assert!(close(s.p90_ms, 9.0), "p90 {}", s.p90_ms);
    assert!(close(s.p99_ms, 9.9), "p99 {}", s.p99_ms);
    assert!(close(s.p999_ms, 9.99), "p99.9 {}", s.p999_ms);
    assert!(close(s.max_ms, 10.0), "max {}", s.max_ms);
    assert!((s.mean_ms - 5.0005).abs() < 0.01, "mean {}", s.mean_ms);
}

#[test]
fn merged_histograms_equal_one_histogram() {
    let mut a = LatencyHistogram::new();
    let mut b = LatencyHistogram::new();
    let mut all = LatencyHistogram::new();
    for us in 0..5_000u64 {
        let v = 1 + (us * 7919) % 100_000;
        if us % 2 == 0 {
            a.record_us(v)
        } else {
            b.record_us(v)
        }
        all.record_us(v);
    }
    a.merge(&b);
    assert_eq!(a.summary(), all.summary());
    // A skewed tail: one slow op in a thousand moves p99.9 but not p99.
    let mut h = LatencyHistogram::new();
    for _ in 0..999 {
        h.record_us(1_000);
    }
    h.record_us(1_000_000);
    let s = h.summary();
    assert!((s.p99_ms - 1.0).abs() < 0.01);
    assert!((s.max_ms - 1000.0).abs() < 1.0);
}

#[test]
fn latencies_beyond_the_range_are_clamped_and_counted() {
    let mut h = LatencyHistogram::new();
    h.record(Duration::from_secs(3600));
    h.record_us(0);
    let s = h.summary();
    assert_eq!(s.count, 2);
    assert_eq!(s.clamped_count, 1);
}

#[test]
fn zipf_table_has_the_zipf_shape() {
    let keys = 1_000u64;
    let s = 0.99;
    let table = ZipfTable::new(keys, s);
    let harmonic: f64 = (1..=keys).map(|r| 1.0 / (r as f64).powf(s)).sum();
    assert!((table.probability(0) - 1.0 / harmonic).abs() < 1e-12);
    // P(rank r) / P(rank 2r+1) = ((2r+2)/(r+1))^s = 2^s.
    let ratio = table.probability(4) / table.probability(9);
    assert!((ratio - 2f64.powf(s)).abs() < 1e-9, "ratio {ratio}");

    let mut picker = KeyPicker::new(
        KeyDistribution::Zipf { exponent: s },
        keys,
        Some(Arc::new(ZipfTable::new(keys, s))),
        7,
    );
    let draws = 200_000u64;
    let mut counts = vec![0u64; keys as usize];
    for _ in 0..draws {
        let k = picker.next_key_index();
        assert!(k < keys);
        counts[k as usize] += 1;
    }
    for rank in [0u64, 1, 9] {
        let expected = table.probability(rank) * draws as f64;
        let got = counts[rank as usize] as f64;
        // Within 5 standard deviations of a binomial count.
        let sd = (expected * (1.0 - table.probability(rank))).sqrt();
        assert!(
            (got - expected).abs() < 5.0 * sd,
            "rank {rank}: {got} vs {expected}"
        );
    }
    // Hot keys: the top 1% of keys draw far more than 1% of operations.
    let top: u64 = counts[..10].iter().sum();
    assert!(top as f64 > 0.35 * draws as f64, "top 10 keys drew {top}");
}

#[test]
fn uniform_keys_cover_the_space_evenly() {
    let mut picker = KeyPicker::new(KeyDistribution::Uniform, 10, None, 3);
    let mut counts = [0u64; 10];
    for _ in 0..100_000 {
        counts[picker.next_key_index() as usize] += 1;
    }
    for c in counts {
        assert!((9_000..11_000).contains(&c), "count {c}");
    }
}

#[test]
fn proc_stat_and_status_parse() {
    let stat =
        "1234 (keel serve (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
    assert_eq!(procstat::parse_stat_cpu_ticks(stat).unwrap(), 325);
    assert!(procstat::parse_stat_cpu_ticks("12 (x) S 1 2").is_err());
    let status = "Name:\tkeel\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
    assert_eq!(
        procstat::parse_status_rss_kib(status).unwrap(),
        (10240, 20480)
    );
    assert!(procstat::parse_status_rss_kib("Name:\tx\n").is_err());
    let me = procstat::sample(std::process::id()).unwrap();
    assert!(me.rss_kib > 0 && me.peak_rss_kib >= me.rss_kib);
}

#[test]
fn bad_settings_are_refused_with_a_reason() {
    assert!(OpMix::parse("mixed:101").is_err());
    assert_eq!(
        OpMix::parse("mixed:90").unwrap(),
        OpMix::Mixed { get_percent: 90 }
    );
    assert!(ReadLevel::parse("bounded:x").is_err());
    assert_eq!(
        ReadLevel::parse("bounded:50").unwrap(),
        ReadLevel::Bounded { staleness_ms: 50 }
    );
    assert!(KeyDistribution::parse("zipf:-1").is_err());
    let c = Config {
        keys: 1_000_000_000,
        key_size_bytes: 8,
        ..Config::default()
    };
    assert!(c.validate().is_err());
    let c = Config {
        shape: LoadShape::Open { rate_per_s: 0.0 },
        ..Config::default()
    };
    assert!(c.validate().is_err());
    let c = Config::default();
    assert_eq!(c.key(42), b"b000000000000042".to_vec());
}

/// A fake server: each operation takes `service` of (paused) time, one at a time per connection.
struct SlowTarget {
    service: Duration,
}

struct SlowConn {
    service: Duration,
}

impl Connection for SlowConn {
    async fn put(&mut self, _key: &[u8], _value: &[u8]) -> Result<(), OpError> {
        tokio::time::sleep(self.service).await;
        Ok(())
    }
    async fn get(&mut self, _key: &[u8], _level: ReadLevel) -> Result<(), OpError> {
        tokio::time::sleep(self.service).await;
        Err(OpError::new("NOT_LEADER", "fake"))
    }
    async fn cas(&mut self, _k: &[u8], _e: &[u8], _v: &[u8]) -> Result<bool, OpError> {
        tokio::time::sleep(self.service).await;
        Ok(false)
    }
    async fn txn(&mut self, k: &[u8], k2: &[u8], _e: &[u8], _v: &[u8]) -> Result<bool, OpError> {
        tokio::time::sleep(self.service).await;
        // The second key is the next one, wrapping at the end of the key space.
        Ok(k != k2)
    }
}

impl Target for SlowTarget {
    type Conn = SlowConn;
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn connect(&self, _client_index: usize, _route: Route) -> anyhow::Result<SlowConn> {
        Ok(SlowConn {
            service: self.service,
        })
    }
}

fn fake_config(shape: LoadShape, clients: usize) -> Config {
    Config {
        op: OpMix::Put,
        shape,
        clients,
        warmup_s: 0.0,
        duration_s: 1.0,
        prefill: false,
        ..Config::default()
    }
}

#[tokio::test(start_paused = true)]
async fn open_loop_counts_queueing_from_the_intended_start() {
    // 100 arrivals/s on one connection, 20 ms each: the server keeps half the pace, so arrival
    // k (intended at 10k ms) completes at 20(k+1) ms and waited 10k + 20 ms.
    let target = Arc::new(SlowTarget {
        service: Duration::from_millis(20),
    });
    let config = fake_config(LoadShape::Open { rate_per_s: 100.0 }, 1);
    let report = keel_bench::runner::run(target, &config, &[]).await.unwrap();
    assert_eq!(report.ops, 100, "every arrival of the second is issued");
    let l = &report.latency;
    assert!((l.p50_ms - 520.0).abs() < 15.0, "p50 {}", l.p50_ms);
    assert!((l.max_ms - 1010.0).abs() < 15.0, "max {}", l.max_ms);
    // Measured from the actual start, every operation would look like 20 ms.
    assert!(l.p99_ms > 900.0);
}

#[tokio::test(start_paused = true)]
async fn open_loop_below_capacity_sees_the_service_time() {
    let target = Arc::new(SlowTarget {
        service: Duration::from_millis(5),
    });
    let config = fake_config(LoadShape::Open { rate_per_s: 400.0 }, 4);
    let report = keel_bench::runner::run(target, &config, &[]).await.unwrap();
    assert_eq!(report.ops, 400);
    assert!(
        (report.latency.p50_ms - 5.0).abs() < 0.5,
        "p50 {}",
        report.latency.p50_ms
    );
    assert!(report.latency.max_ms < 6.0, "max {}", report.latency.max_ms);
    assert!(
        (report.ops_per_s - 400.0).abs() < 10.0,
        "ops/s {}",
        report.ops_per_s
    );
}

#[tokio::test(start_paused = true)]
async fn closed_loop_throughput_is_clients_over_service_time() {
    let target = Arc::new(SlowTarget {
        service: Duration::from_millis(10),
    });
    let config = fake_config(LoadShape::Closed, 8);
    let report = keel_bench::runner::run(target.clone(), &config, &[])
        .await
        .unwrap();
    // 8 clients x 100 ops/s each for one second.
    assert!((report.ops as i64 - 800).abs() <= 8, "ops {}", report.ops);
    assert!((report.latency.p99_ms - 10.0).abs() < 0.1);
    // Errors are counted by code, not as operations.
    let gets = Config {
        op: OpMix::Get,
        ..fake_config(LoadShape::Closed, 2)
    };
    let report = keel_bench::runner::run(target.clone(), &gets, &[])
        .await
        .unwrap();
    assert_eq!(report.ops, 0);
    assert!(report.errors["NOT_LEADER"] >= 198);
    // A count stops the closed loop early.
    let counted = Config {
        count_max: Some(50),
        ..fake_config(LoadShape::Closed, 4)
    };
    let report = keel_bench::runner::run(target, &counted, &[])
        .await
        .unwrap();
    assert_eq!(report.ops, 50);
}

/// A raw HTTP/1.1 server with keep-alive that answers by request line, as Keel would.
async fn fake_keel() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: headers, then content-length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let body_len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < head_end + body_len {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body =
                        String::from_utf8_lossy(&buf[head_end..head_end + body_len]).to_string();
                    let line = head.lines().next().unwrap_or("").to_string();
                    buf.drain(..head_end + body_len);
                    let (status, answer) = if line.starts_with("get /v1/status") {
                        ("200 OK", r#"{"role":"leader","leader":null}"#.to_string())
                    } else if line.starts_with("put /v1/kv/b000") && body.contains("vvvv") {
                        ("200 OK", r#"{"header":{},"revision":5}"#.to_string())
                    } else if line.starts_with("post /v1/cas") {
                        (
                            "200 OK",
                            r#"{"header":{},"succeeded":false,"revision":5}"#.to_string(),
                        )
                    } else if line.starts_with("post /v1/txn") && body.contains("b000000000000002")
                    {
                        (
                            "200 OK",
                            r#"{"header":{},"succeeded":true,"responses":[]}"#.to_string(),
                        )
                    } else if line.starts_with("get /v1/kv/") && line.contains("read=any") {
                        (
                            "421 Misdirected Request",
                            r#"{"code":"NOT_LEADER","message":"ask 2","leader":{"id":2,"client_addr":"127.0.0.1:1"}}"#
                                .to_string(),
                        )
                    } else {
                        (
                            "400 Bad Request",
                            r#"{"code":"BAD_REQUEST","message":"unexpected"}"#.to_string(),
                        )
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn keel_driver_speaks_the_api_and_reports_error_codes() {
    use keel_bench::keel::KeelTarget;
    let addr = fake_keel().await;
    let target = KeelTarget::discover(&[format!("http://{addr}/")])
        .await
        .unwrap();
    assert_eq!(target.leader(), addr);
    let config = Config::default();
    let mut conn = target.connect(0, Route::Leader).await.unwrap();
    // Several requests over the one keep-alive connection.
    for i in 0..3 {
        conn.put(&config.key(i), &config.value()).await.unwrap();
    }
    assert!(!conn.cas(&config.key(1), b"v", b"v").await.unwrap());
    assert!(conn
        .txn(&config.key(1), &config.key(2), b"v", b"v")
        .await
        .unwrap());
    let e = conn.get(&config.key(1), ReadLevel::Any).await.unwrap_err();
    assert_eq!(e.code, "NOT_LEADER");
    // The connection followed the hint to 127.0.0.1:1, where nothing listens.
    let e = conn.put(&config.key(1), &config.value()).await.unwrap_err();
    assert_eq!(e.code, "TRANSPORT");
    assert!(KeelTarget::discover(&[]).await.is_err());
}
