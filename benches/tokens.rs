//! Criterion benchmarks of the token hot paths, each beside a baseline measured
//! in the same run (the machine is shared and noisy, so ratios are what count):
//!
//! * `validate/*`: `validate_access_token` against the crypto floor (raw `ring`
//!   HMAC-SHA256 verify of the signing input plus the SHA-256 id, no parsing)
//!   and the peer (`jsonwebtoken` decoding the same token, then the same id and
//!   store lookup), on a 100,000-token memory store: tokens seen before
//!   (`datahub`, the memo of verified tokens at work) and as if seen for the
//!   first time (`datahub_first_sight`, the memo off), with last-used
//!   recording on and off.
//! * `create/*`: `create_access_token` against raw `ring` sign plus id.
//! * `list/*`: one owner's first page of 20, through the service and from the
//!   store directly, at 100,000 and 1,000,000 tokens. The first store built
//!   also has its resident memory per token printed.
//!
//! `cargo bench --bench tokens` ends with a table of the ratios. Run without
//! `--bench` (as `cargo test --benches` does) it is a quick smoke test on stores
//! a hundred times smaller.

use std::cell::{Cell, OnceCell};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{BenchmarkId, Criterion};
use datahub_access_tokens::store::{ListPage, ListQuery, OwnerLimit, TokenUse};
use datahub_access_tokens::{
    AccessTokenClaims, AccessTokenDuration, AccessTokenType, CreateAccessTokenInput, DataHubAccessTokenInfo,
    DataHubTokenService, ListAccessTokenInput, MemoryTokenStore, Policies, Result, StoredAccessToken,
    TokenCodec, TokenService, TokenServiceConfig, TokenStore, Urn, DEFAULT_ISSUER, VERSION_STATEFUL,
};
use ring::{digest, hmac};
use serde::Deserialize;
use tokio::runtime::Runtime;

// Fixed bench secrets (not DataHub's public defaults), shared by every baseline.
const SIGNING_KEY: &str = "bench-signing-key-0123456789abcdefghijklmnopqrstuvwxyz";
const SALT: &str = "bench-salt-0123456789abcdefghijklmnopqrstuvwxyz";

/// Tokens per owner in every store: one user's tokens over the years.
const TOKENS_PER_OWNER: usize = 100;
/// Distinct tokens the validation benches cycle through, so lookups are not
/// all answered from one hot cache line.
const VALIDATION_SAMPLE: usize = 1_000;
/// Tokens created per timed batch in `create/datahub`; they are deleted
/// (untimed) after each batch, so the store stays near its starting size.
const CREATE_BATCH: u64 = 1_000;

/// Store sizes; a hundredth of them in smoke-test mode.
struct Scale {
    small: usize,
    large: usize,
    full: bool,
}

impl Scale {
    fn from_args() -> Self {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let full = std::env::args().any(|a| a == "--bench");
        let divisor = if full { 1 } else { 100 };
        Scale {
            small: 100_000 / divisor,
            large: 1_000_000 / divisor,
            full,
        }
    }
}

/// Keys a rolled deployment still accepts (never used to sign here).
const PREVIOUS_KEYS: [&str; 2] = [
    "bench-previous-signing-key-one-0123456789abcdef",
    "bench-previous-signing-key-two-0123456789abcdef",
];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn config() -> TokenServiceConfig {
    // Owners start with TOKENS_PER_OWNER tokens and the create bench adds up
    // to a batch more: a limit above that keeps the limit check measured.
    TokenServiceConfig::new(SIGNING_KEY, SALT)
        .and_then(|c| c.with_max_tokens_per_owner(Some(2 * TOKENS_PER_OWNER + CREATE_BATCH as usize)))
        .expect("bench config")
}

fn user(n: usize) -> Urn {
    Urn::corp_user(&format!("user{n:07}")).expect("valid user urn")
}

const DURATIONS: [AccessTokenDuration; 6] = [
    AccessTokenDuration::OneDay,
    AccessTokenDuration::OneWeek,
    AccessTokenDuration::OneMonth,
    AccessTokenDuration::ThreeMonths,
    AccessTokenDuration::SixMonths,
    AccessTokenDuration::OneYear,
];

/// A service whose memory store holds `size` tokens made by `create_access_token`
/// (`size / 100` owners with 100 tokens each), and the plaintexts of
/// `sample_size` of them spread over the store.
fn service_with_tokens(
    rt: &Runtime,
    size: usize,
    sample_size: usize,
) -> (DataHubTokenService, MemoryTokenStore, Vec<String>) {
    let store = MemoryTokenStore::new();
    let service = DataHubTokenService::new(config(), store.clone(), Policies::datahub_defaults());
    let keep_every = (size / sample_size).max(1);
    let mut sample = Vec::with_capacity(sample_size);
    rt.block_on(async {
        for i in 0..size {
            let owner = user(i % (size / TOKENS_PER_OWNER).max(1));
            let input = CreateAccessTokenInput::personal(
                owner.as_str(),
                format!("token {i}"),
                DURATIONS[i % DURATIONS.len()],
            );
            let created = service.create_access_token(&owner, input).await.expect("create");
            if i % keep_every == 0 {
                sample.push(created.expose_access_token().to_owned());
            }
        }
    });
    assert_eq!(store.len(), size);
    (service, store, sample)
}

/// The claims `jsonwebtoken` decodes into for the peer baseline: the same
/// required claims our codec insists on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // decoded to be fair to the peer, read only in part
struct PeerClaims {
    version: String,
    #[serde(rename = "type")]
    token_type: String,
    actor_type: String,
    actor_id: String,
    sub: Option<String>,
    jti: Option<String>,
    iss: Option<String>,
    exp: Option<i64>,
}

/// What the validation benches share, built on first use so a filtered run
/// that skips them does not pay for it.
struct ValidateFixture {
    service: DataHubTokenService,
    store: MemoryTokenStore,
    tokens: Vec<String>,
    /// Per token: where the signature starts, and the decoded signature.
    split: Vec<(usize, [u8; 32])>,
}

impl ValidateFixture {
    fn new(rt: &Runtime, size: usize) -> Self {
        let (service, store, tokens) = service_with_tokens(rt, size, VALIDATION_SAMPLE);
        // The floor gets its inputs pre-split and pre-decoded: no parsing at all.
        let split = tokens
            .iter()
            .map(|t| {
                let dot = t.rfind('.').expect("three parts");
                let mut tag = [0u8; 32];
                URL_SAFE_NO_PAD
                    .decode_slice(&t[dot + 1..], &mut tag)
                    .expect("signature");
                (dot, tag)
            })
            .collect();
        ValidateFixture {
            service,
            store,
            tokens,
            split,
        }
    }
}

fn bench_validate(c: &mut Criterion, scale: &Scale) {
    let rt = runtime();
    let fixture = OnceCell::new();
    let fixture = || fixture.get_or_init(|| ValidateFixture::new(&rt, scale.small));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SIGNING_KEY.as_bytes());
    let jwt_key = jsonwebtoken::DecodingKey::from_secret(SIGNING_KEY.as_bytes());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.leeway = 0; // as strict about `exp` as we are
    validation.set_required_spec_claims(&["exp"]);

    let mut group = c.benchmark_group("validate");
    group.bench_function("floor", |b| {
        let ValidateFixture { tokens, split, .. } = fixture();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % tokens.len();
            let (token, (dot, tag)) = (tokens[i].as_bytes(), &split[i]);
            hmac::verify(&key, &token[..*dot], tag).expect("valid signature");
            let mut id = digest::Context::new(&digest::SHA256);
            id.update(token);
            id.update(SALT.as_bytes());
            black_box(id.finish())
        })
    });
    group.bench_function("datahub", |b| {
        let ValidateFixture { service, tokens, .. } = fixture();
        let mut i = 0;
        b.to_async(&rt).iter(|| {
            i = (i + 1) % tokens.len();
            let token = &tokens[i];
            async move { service.validate_access_token(token).await.expect("valid") }
        })
    });
    // The same tokens through services built alike over the same store, each
    // once, differing in one setting:
    // * `datahub_rebuilt`: the default settings (the baseline of the others);
    // * `datahub_with_previous_keys`: two previous keys listed too; key
    //   rotation must not cost the common case;
    // * `datahub_last_used_off`: last-used recording off; every token here is
    //   used again within the interval, so what recording costs on the hot
    //   path is the throttle check;
    // * `datahub_first_sight`: the memo of verified tokens off, so the HMAC,
    //   base64 and claims parsing are paid every time, as on a token's first
    //   validation.
    type Configure = fn(TokenServiceConfig) -> TokenServiceConfig;
    let variants: [(&str, Configure); 4] = [
        ("datahub_rebuilt", |c| c),
        ("datahub_with_previous_keys", |c| {
            c.with_previous_signing_keys(PREVIOUS_KEYS)
                .expect("bench previous keys")
        }),
        ("datahub_last_used_off", |c| {
            c.with_last_used_interval_ms(None).expect("bench config")
        }),
        ("datahub_first_sight", |c| c.with_verified_token_cache(0)),
    ];
    let services: [OnceCell<DataHubTokenService>; 4] = Default::default();
    for ((name, configure), cell) in variants.into_iter().zip(&services) {
        group.bench_function(name, |b| {
            let ValidateFixture { store, tokens, .. } = fixture();
            let service = cell.get_or_init(|| {
                DataHubTokenService::new(configure(config()), store.clone(), Policies::datahub_defaults())
            });
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i = (i + 1) % tokens.len();
                let token = &tokens[i];
                async move { service.validate_access_token(token).await.expect("valid") }
            })
        });
    }
    group.bench_function("peer", |b| {
        let ValidateFixture {
            service,
            store,
            tokens,
            ..
        } = fixture();
        let mut i = 0;
        b.to_async(&rt).iter(|| {
            i = (i + 1) % tokens.len();
            let token = &tokens[i];
            let (jwt_key, validation) = (&jwt_key, &validation);
            async move {
                let data = jsonwebtoken::decode::<PeerClaims>(token, jwt_key, validation).expect("valid");
                assert!(data.claims.version == "2" && data.claims.actor_type == "USER");
                let id = service.codec().token_id(token);
                assert!(store.contains(&id).await.expect("lookup"), "not revoked");
                data.claims
            }
        })
    });
    group.finish();
}

/// Accepts every write and keeps nothing: the service's own share of create.
#[derive(Debug)]
struct DiscardingStore;

#[async_trait::async_trait]
impl TokenStore for DiscardingStore {
    async fn insert_within_limit(&self, _: StoredAccessToken, _: Option<OwnerLimit>) -> Result<()> {
        Ok(())
    }
    async fn replace(&self, _: &str, _: StoredAccessToken) -> Result<()> {
        Ok(())
    }
    async fn get(&self, _: &str) -> Result<Option<StoredAccessToken>> {
        Ok(None)
    }
    async fn delete(&self, _: &str) -> Result<bool> {
        Ok(false)
    }
    async fn list(&self, _: &ListQuery) -> Result<ListPage> {
        Ok(ListPage::default())
    }
    async fn delete_expired(&self, _: i64) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn record_last_used(&self, _: &[TokenUse]) -> Result<()> {
        Ok(())
    }
}

fn bench_create(c: &mut Criterion, scale: &Scale) {
    let rt = runtime();
    let fixture = OnceCell::new();
    let fixture = || fixture.get_or_init(|| service_with_tokens(&rt, scale.small, VALIDATION_SAMPLE));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SIGNING_KEY.as_bytes());
    // An equivalent signing input: header and claims (as the service writes
    // them) of a token, already base64.
    let owner = user(42);
    let claims = AccessTokenClaims::new(VERSION_STATEFUL, AccessTokenType::Personal, owner.id())
        .with_sub(owner.id())
        .with_jti("6f1c2f4e-8a57-4d0b-9a8e-3c1f2b7d9e10")
        .with_iss(DEFAULT_ISSUER)
        .with_exp(1_800_000_000);
    let token = TokenCodec::new(&config()).sign(&claims);
    let signing_input = token[..token.rfind('.').expect("three parts")].to_owned();
    let owners = scale.small / TOKENS_PER_OWNER;
    let inputs: Vec<(Urn, CreateAccessTokenInput)> = (0..owners)
        .map(|n| {
            let owner = user(n);
            let input = CreateAccessTokenInput::personal(owner.as_str(), "ci", AccessTokenDuration::OneMonth);
            (owner, input)
        })
        .collect();

    let mut group = c.benchmark_group("create");
    group.bench_function("floor", |b| {
        b.iter(|| {
            let tag = hmac::sign(&key, black_box(signing_input.as_bytes()));
            let mut tag_b64 = [0u8; 43];
            URL_SAFE_NO_PAD
                .encode_slice(tag.as_ref(), &mut tag_b64)
                .expect("43 bytes");
            let mut id = digest::Context::new(&digest::SHA256);
            id.update(signing_input.as_bytes());
            id.update(b".");
            id.update(&tag_b64);
            id.update(SALT.as_bytes());
            black_box((tag_b64, id.finish()))
        })
    });
    // The same creates without the per-owner limit (what the limit costs),
    // and on a store that keeps nothing (what the service itself costs:
    // claims, signing, id, checks and the answer, without the index insert).
    let unlimited = OnceCell::new();
    let storeless = OnceCell::new();
    for name in ["datahub", "datahub_no_limit", "datahub_discarding_store"] {
        group.bench_function(name, |b| {
            let (limited, store, _) = fixture();
            let service = match name {
                "datahub" => limited,
                "datahub_no_limit" => unlimited.get_or_init(|| {
                    let config = config().with_max_tokens_per_owner(None).expect("no limit");
                    DataHubTokenService::new(config, store.clone(), Policies::datahub_defaults())
                }),
                _ => storeless.get_or_init(|| {
                    DataHubTokenService::new(config(), DiscardingStore, Policies::datahub_defaults())
                }),
            };
            let turn = Cell::new(0);
            b.to_async(&rt).iter_custom(|iters| {
                let (inputs, turn) = (&inputs, &turn);
                let next = move || {
                    let n = (turn.get() + 1) % inputs.len();
                    turn.set(n);
                    (&inputs[n].0, inputs[n].1.clone())
                };
                async move {
                    let mut elapsed = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let batch = (iters - done).min(CREATE_BATCH);
                        let batch_inputs: Vec<_> = (0..batch).map(|_| next()).collect();
                        let mut ids = Vec::with_capacity(batch_inputs.len());
                        let start = Instant::now();
                        for (caller, input) in batch_inputs {
                            let created = service.create_access_token(caller, input).await.expect("create");
                            ids.push(created);
                        }
                        elapsed += start.elapsed();
                        for created in ids {
                            let id = &created.metadata.as_ref().expect("stored").id;
                            store.delete(id).await.expect("delete");
                        }
                        done += batch;
                    }
                    elapsed
                }
            })
        });
    }
    group.finish();
}

/// A memory store of `owners * per_owner` realistic records (spread creation
/// times, DataHub's durations, some never expiring, some described), inserted
/// directly: building a million through the service would only add minutes.
fn listing_store(rt: &Runtime, owners: usize, per_owner: usize) -> MemoryTokenStore {
    let store = MemoryTokenStore::new();
    let owner_urns: Vec<Urn> = (0..owners).map(user).collect();
    // One hour to ninety days; every sixth token never expires (`get` is `None`).
    let lifetimes_ms = [3_600_000, 86_400_000, 604_800_000, 2_592_000_000, 7_776_000_000];
    rt.block_on(async {
        for i in 0..owners * per_owner {
            let owner = owner_urns[i % owners].clone();
            let created_at = 1_700_000_000_000 + i as i64 * 1_000;
            let record = StoredAccessToken {
                id: STANDARD.encode(digest::digest(&digest::SHA256, &(i as u64).to_le_bytes())),
                info: DataHubAccessTokenInfo {
                    name: format!("token {i}"),
                    actor_urn: owner.clone(),
                    owner_urn: owner,
                    created_at,
                    expires_at: lifetimes_ms.get(i % 6).map(|ms| created_at + ms),
                    description: (i % 3 == 0).then(|| format!("made by job {i}")),
                    last_used_at: None,
                },
            };
            store.insert(record).await.expect("insert");
        }
    });
    store
}

fn bench_list(c: &mut Criterion, scale: &Scale) {
    let rt = runtime();
    let mut group = c.benchmark_group("list");
    let shapes = [
        ("100k", scale.small / TOKENS_PER_OWNER, TOKENS_PER_OWNER),
        ("1m", scale.large / TOKENS_PER_OWNER, TOKENS_PER_OWNER),
        // The same million with fewer owners, each with ten times the tokens.
        (
            "1m_big_owners",
            scale.small / TOKENS_PER_OWNER,
            10 * TOKENS_PER_OWNER,
        ),
    ];
    // Only the first store built is measured: listing runs first, in a
    // fresh heap, and later stores reuse the memory of those dropped before.
    let fresh_heap = Cell::new(true);
    for (label, owners, per_owner) in shapes {
        // Built once per store shape, when the first bench needing it runs.
        let fixture = OnceCell::new();
        let fixture = || {
            fixture.get_or_init(|| {
                let before = resident_kib().filter(|_| fresh_heap.replace(false));
                let store = listing_store(&rt, owners, per_owner);
                if let (Some(before), Some(after)) = (before, resident_kib()) {
                    let per_token = after.saturating_sub(before) * 1024 / (owners * per_owner) as u64;
                    println!(
                        "list/{label}: memory store resident, records included: {per_token} B per token"
                    );
                }
                let service = DataHubTokenService::new(config(), store.clone(), Policies::datahub_defaults());
                (service, store)
            })
        };
        // Every owner in turn, as each user lists their own tokens.
        let requests: Vec<(Urn, ListAccessTokenInput, ListQuery)> = (0..owners)
            .map(|n| {
                let owner = user(n);
                let input = ListAccessTokenInput::owned_by(&owner, 20);
                let query = ListQuery::from_input(&input).expect("valid query");
                (owner, input, query)
            })
            .collect();
        group.bench_function(BenchmarkId::new("service", label), |b| {
            let (service, _) = fixture();
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i = (i + 1) % requests.len();
                let (owner, input, _) = &requests[i];
                async move {
                    let page = service.list_access_tokens(owner, input).await.expect("list");
                    assert_eq!((page.count, page.total), (20, per_owner));
                    page
                }
            })
        });
        group.bench_function(BenchmarkId::new("store", label), |b| {
            let (_, store) = fixture();
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i = (i + 1) % requests.len();
                let (_, _, query) = &requests[i];
                async move { store.list(query).await.expect("list") }
            })
        });
    }
    group.finish();
}

/// This process's resident memory (Linux `/proc/self/status`; `None` elsewhere).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Where criterion writes its results; fixed so the summary can read them.
fn output_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("bench executable path");
    match exe.ancestors().nth(3) {
        Some(target) => target.join("criterion"),
        None => PathBuf::from("target/criterion"),
    }
}

/// Criterion's estimate of the time per iteration, in ns, of a benchmark
/// measured during this run: the slope of time over iterations, as criterion
/// prints it (per-sample averages are biased by each sample's fixed cost).
fn estimate_ns(dir: &Path, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(id).join("new").join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None; // left over from an earlier run (e.g. one filtered out now)
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}

fn print_ratios(dir: &Path, since: SystemTime) {
    let m = |id: &str| estimate_ns(dir, id, since);
    // Both times beside each ratio: on a shared machine the floors move
    // between runs, and a ratio is only comparable with its floor in view.
    let time = |ns: f64| match ns {
        ns if ns < 1000.0 => format!("{ns:.0} ns"),
        ns => format!("{:.2} us", ns / 1000.0),
    };
    let ratio = |label: &str, num: &str, den: &str, target: &str| {
        if let (Some(n), Some(d)) = (m(num), m(den)) {
            let times = format!("{} / {}", time(n), time(d));
            println!("{label:<48} {:>7.2}x  {times:<20} (target {target})", n / d);
        }
    };
    println!("\nRatios of the times measured in this run:");
    ratio(
        "validate: datahub / floor",
        "validate/datahub",
        "validate/floor",
        "<= 1.6x",
    );
    ratio(
        "validate: first sight (no memo) / floor",
        "validate/datahub_first_sight",
        "validate/floor",
        "<= 1.6x",
    );
    ratio(
        "validate: last-used on / off (rebuilt alike)",
        "validate/datahub_rebuilt",
        "validate/datahub_last_used_off",
        "~1.0x",
    );
    ratio(
        "validate: peer / first sight",
        "validate/peer",
        "validate/datahub_first_sight",
        ">= 3x",
    );
    ratio(
        "validate: with 2 previous keys / without (rebuilt alike)",
        "validate/datahub_with_previous_keys",
        "validate/datahub_rebuilt",
        "~1.0x",
    );
    ratio(
        "validate: peer / datahub",
        "validate/peer",
        "validate/datahub",
        ">= 3x",
    );
    ratio(
        "create: with per-owner limit / without",
        "create/datahub",
        "create/datahub_no_limit",
        "~1.0x",
    );
    ratio(
        "create: on a store keeping nothing / floor",
        "create/datahub_discarding_store",
        "create/floor",
        "(the service's share)",
    );
    ratio(
        "create: datahub / floor",
        "create/datahub",
        "create/floor",
        "<= 1.5x",
    );
    ratio(
        "list service: 1M / 100k",
        "list/service/1m",
        "list/service/100k",
        "<= 1.5x",
    );
    ratio(
        "list service: 1M (1,000 x 1,000) / 100k",
        "list/service/1m_big_owners",
        "list/service/100k",
        "<= 1.5x",
    );
    ratio(
        "list store: 1M / 100k",
        "list/store/1m",
        "list/store/100k",
        "<= 1.5x",
    );
    ratio(
        "list store: 1M (1,000 x 1,000) / 100k",
        "list/store/1m_big_owners",
        "list/store/100k",
        "<= 1.5x",
    );
    if let Some(ns) = m("list/service/100k") {
        println!(
            "{:<48} {:>7.2}us  (target <= 20us)",
            "list service: page of 20 at 100k",
            ns / 1000.0
        );
    }
}

fn main() {
    // Every bench is timed in a process that has had a second thread, as a
    // server's has. glibc's malloc skips its arena lock until a process
    // starts one, and criterion's analysis starts threads only after the
    // first bench: that bench alone (`list/service/100k`) was timed with
    // the cheaper allocator, 3.3 against 4.1 us (benches/README.md, "List").
    std::thread::spawn(|| {}).join().expect("an empty thread");
    let scale = Scale::from_args();
    let started = SystemTime::now();
    let dir = output_directory();
    let mut c = Criterion::default().output_directory(&dir).configure_from_args();
    // Listing first, so the 100k and 1M stores are both built in a fresh
    // heap: after the other groups free their stores, the 100k records would
    // land in fragmented memory and the size comparison would flatter the 1M.
    bench_list(&mut c, &scale);
    bench_validate(&mut c, &scale);
    bench_create(&mut c, &scale);
    c.final_summary();
    if scale.full {
        print_ratios(&dir, started);
    }
}
