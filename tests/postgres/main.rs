//! Tests of `PostgresTokenStore` against a real PostgreSQL server.
//!
//! They need `DATAHUB_TOKENS_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); `.ci/run` sets it. Without it
//! every test reports "not run" and the run says so plainly. Each test works
//! in a schema of its own, dropped at the end, so runs never collide.
//!
//! A small harness of our own (not libtest) so that a test not run is
//! reported as not run, not as passed. It accepts libtest's name filters,
//! `--exact`, `--skip NAME` and `--list`; tests run one after another.

mod common;
mod failures;
mod proxy;
mod replicas;
mod store;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Instant;

use common::URL_VAR;

// Not `Send`: each test runs on its own runtime with `block_on`.
type TestFuture = Pin<Box<dyn Future<Output = ()>>>;

type Test = (&'static str, fn(String) -> TestFuture);

const TESTS: &[Test] = &[
    ("conformance_suite", |url| Box::pin(store::conformance_suite(url))),
    ("stricter_default_isolation_changes_nothing", |url| {
        Box::pin(store::stricter_default_isolation_changes_nothing(url))
    }),
    ("owner_limit_holds_under_repeatable_read", |url| {
        Box::pin(store::owner_limit_holds_under_repeatable_read(url))
    }),
    ("racing_writers_under_repeatable_read", |url| {
        Box::pin(store::racing_writers_under_repeatable_read(url))
    }),
    ("migrations_are_idempotent_and_versioned", |url| {
        Box::pin(store::migrations_are_idempotent_and_versioned(url))
    }),
    ("two_tables_first_opened_together_in_a_new_schema", |url| {
        Box::pin(store::two_tables_first_opened_together_in_a_new_schema(url))
    }),
    ("a_version_2_table_is_upgraded_in_place", |url| {
        Box::pin(store::a_version_2_table_is_upgraded_in_place(url))
    }),
    ("listings_run_on_indexes", |url| {
        Box::pin(store::listings_run_on_indexes(url))
    }),
    ("nul_characters_are_handled", |url| {
        Box::pin(store::nul_characters_are_handled(url))
    }),
    ("validation_is_served_from_cache", |url| {
        Box::pin(store::validation_is_served_from_cache(url))
    }),
    ("removals_by_hand_reach_every_replica", |url| {
        Box::pin(store::removals_by_hand_reach_every_replica(url))
    }),
    ("a_renamed_schema_still_carries_removals", |url| {
        Box::pin(store::a_renamed_schema_still_carries_removals(url))
    }),
    ("revocation_delay_between_replicas", |url| {
        Box::pin(replicas::revocation_delay_between_replicas(url))
    }),
    ("two_replicas_eight_tasks_each", |url| {
        Box::pin(replicas::two_replicas_eight_tasks_each(url))
    }),
    ("connections_killed_mid_run", |url| {
        Box::pin(failures::connections_killed_mid_run(url))
    }),
    ("database_outage_fails_cleanly_and_recovers", |url| {
        Box::pin(failures::database_outage_fails_cleanly_and_recovers(url))
    }),
    ("silent_listener_stops_cache_within_bound", |url| {
        Box::pin(failures::silent_listener_stops_cache_within_bound(url))
    }),
    ("a_stuck_owner_lock_does_not_drain_the_pool", |url| {
        Box::pin(failures::a_stuck_owner_lock_does_not_drain_the_pool(url))
    }),
    ("an_unreachable_server_is_named_at_connect", |url| {
        Box::pin(failures::an_unreachable_server_is_named_at_connect(url))
    }),
    (
        "writes_whose_commit_answer_is_lost_are_not_reported_failed",
        |url| Box::pin(failures::writes_whose_commit_answer_is_lost_are_not_reported_failed(url)),
    ),
];

fn main() -> ExitCode {
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let (mut exact, mut list) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exact" => exact = true,
            "--list" => list = true,
            "--skip" => skips.extend(args.next()),
            // libtest options that take a value; their value is not a filter.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" | "--report-time" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            filter => filters.push(filter.to_owned()),
        }
    }
    let matches = |name: &str, pattern: &String| {
        if exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    let selected: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| matches(name, f)))
        .filter(|(name, _)| !skips.iter().any(|s| matches(name, s)))
        .collect();
    let filtered_out = TESTS.len() - selected.len();
    if list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    println!("\nrunning {} tests", selected.len());
    let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
        for (name, _) in &selected {
            println!("test {name} ... not run: {URL_VAR} is not set");
        }
        println!(
            "\nPostgreSQL tests NOT RUN: set {URL_VAR}=postgres://postgres@127.0.0.1:5432/test \
             (any database you may create schemas in; see README, \"PostgreSQL store\")."
        );
        println!(
            "\ntest result: ok. 0 passed; 0 failed; {} ignored; 0 measured; {filtered_out} filtered out; finished in 0.00s\n",
            selected.len()
        );
        return ExitCode::SUCCESS;
    };
    common::capture_logs();
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, test) in &selected {
        println!("test {name} ...");
        let test_started = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(test(url.clone()))
        }));
        let secs = test_started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("test {name} ... ok ({secs:.2}s)"),
            Err(_) => {
                println!("test {name} ... FAILED ({secs:.2}s)");
                failed.push(*name);
            }
        }
    }
    let status = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {status}. {} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        selected.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
