//! A token store that fails every call, as a lost database would.

use async_trait::async_trait;
use datahub_access_tokens::store::{ListPage, ListQuery, OwnerLimit, TokenUse};
use datahub_access_tokens::{Error, Result, StoredAccessToken, TokenStore};

/// Fails every call with a storage error whose text must never reach a client.
#[derive(Debug)]
pub struct BrokenStore;

/// Words of the hidden error, to check no response leaks them.
pub const SECRET_DETAILS: [&str; 2] = ["disk on fire", "/secret/path"];

fn broken() -> Error {
    Error::storage("reading /secret/path", std::io::Error::other("disk on fire"))
}

#[async_trait]
impl TokenStore for BrokenStore {
    async fn insert_within_limit(&self, _: StoredAccessToken, _: Option<OwnerLimit>) -> Result<()> {
        Err(broken())
    }
    async fn replace(&self, _: &str, _: StoredAccessToken) -> Result<()> {
        Err(broken())
    }
    async fn get(&self, _: &str) -> Result<Option<StoredAccessToken>> {
        Err(broken())
    }
    async fn delete(&self, _: &str) -> Result<bool> {
        Err(broken())
    }
    async fn list(&self, _: &ListQuery) -> Result<ListPage> {
        Err(broken())
    }
    async fn delete_expired(&self, _: i64) -> Result<Vec<String>> {
        Err(broken())
    }
    async fn record_last_used(&self, _: &[TokenUse]) -> Result<()> {
        Err(broken())
    }
}
