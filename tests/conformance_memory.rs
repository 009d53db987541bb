//! The memory store passes the store conformance suite, also behind the
//! `Arc` and `Box` forwarding impls (written by hand, so checked here).

use std::sync::Arc;

use datahub_access_tokens::{store::conformance, MemoryTokenStore, TokenStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    conformance::run_all(|| async { MemoryTokenStore::new() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms_through_arc_and_box() {
    conformance::run_all(|| async { Arc::new(MemoryTokenStore::new()) as Arc<dyn TokenStore> }).await;
    conformance::run_all(|| async { Box::new(MemoryTokenStore::new()) as Box<dyn TokenStore> }).await;
}
