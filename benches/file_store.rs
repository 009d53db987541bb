//! FileTokenStore benchmarks, each against a baseline measured in the same
//! run on the same disk, reported as ratios at the end:
//!
//! * one durable insert vs one append + `fdatasync` of the same size;
//! * 64 concurrent inserters vs the one-fsync-per-insert rate;
//! * opening a store of 1,000,000 live tokens (in a fresh child process, so
//!   its resident memory is measured alone), with bytes on disk per token.
//!
//! `cargo bench --bench file_store`; set `DHAT_BENCH_OPEN_TOKENS=0` to skip
//! the open measurement (building the million-token store takes a while), or
//! to another count.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{Criterion, Throughput};
use datahub_access_tokens::store::FileTokenStore;
use datahub_access_tokens::{DataHubAccessTokenInfo, StoredAccessToken, TokenStore, Urn};

const OPEN_CHILD: &str = "DHAT_BENCH_OPEN_DIR";
const OPEN_TOKENS: &str = "DHAT_BENCH_OPEN_TOKENS";
const STORE_DIR: &str = "DHAT_BENCH_STORE_DIR";
const INSERTERS: u64 = 64;

/// A realistic record: a 44-character id, a urn per user, an expiry.
fn token(n: u64) -> StoredAccessToken {
    let digest = ring::digest::digest(&ring::digest::SHA256, &n.to_le_bytes());
    StoredAccessToken {
        id: base64::engine::general_purpose::STANDARD.encode(digest),
        info: DataHubAccessTokenInfo {
            name: format!("token {n}"),
            actor_urn: Urn::corp_user(&format!("user{}", n % 1000)).unwrap(),
            owner_urn: Urn::corp_user(&format!("user{}", n % 1000)).unwrap(),
            created_at: 1_700_000_000_000 + n as i64,
            expires_at: Some(1_800_000_000_000 + n as i64),
            description: None,
            last_used_at: None,
        },
    }
}

/// Mean time per iteration of each benchmark, accumulated over every sample.
#[derive(Default)]
struct Means(Mutex<HashMap<&'static str, (Duration, u64)>>);

impl Means {
    fn add(&self, name: &'static str, elapsed: Duration, iters: u64) {
        let mut means = self.0.lock().unwrap();
        let entry = means.entry(name).or_default();
        entry.0 += elapsed;
        entry.1 += iters;
    }

    fn get(&self, name: &str) -> Option<f64> {
        let means = self.0.lock().unwrap();
        let (total, iters) = means.get(name)?;
        Some(total.as_secs_f64() / *iters as f64)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    if let Ok(dir) = std::env::var(OPEN_CHILD) {
        open_child(Path::new(&dir));
        return;
    }
    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let means = Means::default();
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(FileTokenStore::open(tmp.path().join("store")))
        .unwrap();
    let next = AtomicU64::new(0);

    // The size of one insert record, for a baseline of the same size.
    let before = store.stats().log_bytes;
    rt.block_on(store.insert(token(next.fetch_add(1, Ordering::Relaxed))))
        .unwrap();
    let record_bytes = (store.stats().log_bytes - before) as usize;

    let mut group = criterion.benchmark_group("durable_insert");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_append_fdatasync", |b| {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(tmp.path().join("baseline"))
            .unwrap();
        let record = vec![0x5au8; record_bytes];
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                file.write_all(&record).unwrap();
                file.sync_data().unwrap();
            }
            let elapsed = start.elapsed();
            means.add("baseline", elapsed, iters);
            elapsed
        })
    });
    group.bench_function("file_store_insert", |b| {
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store
                        .insert(token(next.fetch_add(1, Ordering::Relaxed)))
                        .await
                        .unwrap();
                }
                start.elapsed()
            });
            means.add("insert", elapsed, iters);
            elapsed
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("concurrent_inserts");
    group.throughput(Throughput::Elements(INSERTERS));
    group.bench_function("64_inserters", |b| {
        // One iteration: each of the 64 inserters inserts once.
        b.iter_custom(|iters| {
            let elapsed = rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                let first = next.fetch_add(INSERTERS * iters, Ordering::Relaxed);
                let start = Instant::now();
                for inserter in 0..INSERTERS {
                    let store = store.clone();
                    tasks.spawn(async move {
                        for i in 0..iters {
                            store.insert(token(first + inserter * iters + i)).await.unwrap();
                        }
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.unwrap();
                }
                start.elapsed()
            });
            means.add("concurrent", elapsed, iters);
            elapsed
        })
    });
    group.finish();
    criterion.final_summary();

    // Criterion's own estimates of each benchmark are printed above; the
    // disk's speed drifts between them, so the insert ratio is taken paired.
    if let (Some(baseline), Some(_), Some(concurrent)) = (
        means.get("baseline"),
        means.get("insert"),
        means.get("concurrent"),
    ) {
        let (paired_baseline, paired_insert) = paired(&rt, &store, &next, record_bytes, tmp.path());
        let per_insert_rate = 1.0 / baseline;
        let concurrent_rate = INSERTERS as f64 / concurrent;
        println!("\n=== file store ratios (same run, same disk)");
        println!(
            "one durable insert, paired with the baseline op by op (medians of 200): {:.0} us vs {:.0} us \
             -> ratio {:.2} (budget 1.5)",
            paired_insert * 1e6,
            paired_baseline * 1e6,
            paired_insert / paired_baseline
        );
        println!(
            "64 concurrent inserters: {concurrent_rate:.0} inserts/s vs one fsync per insert: \
             {per_insert_rate:.0}/s -> ratio {:.1} (needs >= 5)",
            concurrent_rate / per_insert_rate
        );
    }
    drop(store);

    let tokens: u64 = std::env::var(OPEN_TOKENS)
        .ok()
        .map(|v| v.parse().expect("DHAT_BENCH_OPEN_TOKENS is a number"))
        .unwrap_or(1_000_000);
    if tokens > 0 {
        open_benchmark(&rt, tokens);
    }
}

/// The disk's speed drifts (other processes share it), so also time the
/// baseline and the insert alternately, op by op, and compare medians.
fn paired(
    rt: &tokio::runtime::Runtime,
    store: &FileTokenStore,
    next: &AtomicU64,
    record_bytes: usize,
    dir: &Path,
) -> (f64, f64) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("paired-baseline"))
        .unwrap();
    let record = vec![0x5au8; record_bytes];
    let (mut baseline, mut insert) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let start = Instant::now();
        file.write_all(&record).unwrap();
        file.sync_data().unwrap();
        baseline.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        rt.block_on(store.insert(token(next.fetch_add(1, Ordering::Relaxed))))
            .unwrap();
        insert.push(start.elapsed().as_secs_f64());
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(baseline), median(insert))
}

/// Builds a store of `tokens` live tokens, then opens it in fresh child
/// processes and reports the median open time and memory.
fn open_benchmark(rt: &tokio::runtime::Runtime, tokens: u64) {
    let tmp = tempfile::tempdir().unwrap();
    // DHAT_BENCH_STORE_DIR keeps the built store for later runs.
    let dir = std::env::var(STORE_DIR).map_or_else(|_| tmp.path().join("million"), Into::into);
    let built = Instant::now();
    let reuse = dir.join("tokens.log").exists();
    rt.block_on(async {
        if reuse {
            let store = FileTokenStore::open(&dir).await.unwrap();
            assert_eq!(
                store.stats().live_tokens as u64,
                tokens,
                "{STORE_DIR} holds another count"
            );
            return;
        }
        let store = FileTokenStore::open(&dir).await.unwrap();
        let inserters = 512;
        let per = tokens.div_ceil(inserters);
        let mut tasks = tokio::task::JoinSet::new();
        for inserter in 0..inserters {
            let store = store.clone();
            tasks.spawn(async move {
                for n in inserter * per..((inserter + 1) * per).min(tokens) {
                    store.insert(token(n)).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(store.stats().live_tokens as u64, tokens);
        store.close().await.unwrap();
    });
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "\n{} a store of {tokens} tokens in {:.1} s ({bytes} bytes on disk, {:.0} bytes per token)",
        if reuse { "reopened" } else { "built" },
        built.elapsed().as_secs_f64(),
        bytes as f64 / tokens as f64
    );
    let mut runs: Vec<(f64, u64, f64)> = (0..3)
        .map(|_| {
            let output = Command::new(std::env::current_exe().unwrap())
                .env(OPEN_CHILD, &dir)
                .output()
                .unwrap();
            assert!(output.status.success(), "the open child failed: {output:?}");
            let text = String::from_utf8(output.stdout).unwrap();
            let line = text.lines().find_map(|l| l.strip_prefix("OPENED ")).unwrap();
            let parts: Vec<&str> = line.split(' ').collect();
            (
                parts[0].parse().unwrap(),
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
            )
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (secs, rss, cpu) = runs[1];
    println!(
        "open of {tokens} live tokens: {secs:.2} s wall, {cpu:.2} s CPU (median of 3; budget 2 s -> \
         {:.2} of budget), resident memory {:.0} MiB = {:.0} bytes per token",
        secs / 2.0,
        rss as f64 / (1024.0 * 1024.0),
        rss as f64 / tokens as f64
    );
}

/// Child: opens the store once, prints `OPENED <seconds> <rss growth bytes>`.
fn open_child(dir: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rss_before = resident_bytes();
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let store = rt.block_on(FileTokenStore::open(dir)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let rss = resident_bytes().saturating_sub(rss_before);
    assert!(store.stats().live_tokens > 0);
    println!("OPENED {secs} {rss} {cpu}");
    // Skip freeing a million records one by one: the process ends here.
    std::process::exit(0);
}

/// CPU time (user + system) this process has used, in seconds (Linux
/// `/proc/self/stat`, in clock ticks of 1/100 s; 0 elsewhere).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesized command name; utime and stime are 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// This process's resident set size (Linux `/proc/self/status`; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}
