//! The memory store passes the store conformance suite.

use datahub_access_tokens::{store::conformance, MemoryTokenStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    conformance::run_all(|| async { MemoryTokenStore::new() }).await;
}
