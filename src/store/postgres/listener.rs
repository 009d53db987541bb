//! The background task that keeps the cache honest: it `LISTEN`s on the
//! store's channel, removes the ids every committed removal names, proves
//! every quarter of `max_staleness` that it still hears the database, and
//! when its connection fails, distrusts and clears the cache, says so in a
//! log event, and reconnects.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgNotification, PgPoolOptions};

use super::cache::ExistsCache;

/// What the listener task shares with the store. No `Debug`: the connect
/// options may hold a password (sqlx's `Debug` prints it).
pub(super) struct Shared {
    pub(super) cache: ExistsCache,
    pub(super) channel: String,
    /// Tells this store's heartbeats from other replicas'.
    pub(super) instance: String,
    pub(super) connect_options: PgConnectOptions,
    pub(super) max_staleness: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) listening: AtomicBool,
    pub(super) reconnects: AtomicU64,
}

const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// A listening connection of its own, so it never takes a connection from
/// (or waits on) the store's pool.
pub(super) async fn connect(shared: &Shared) -> Result<PgListener, sqlx::Error> {
    let attempt = async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(shared.connect_timeout)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(shared.connect_options.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        // Report a lost connection at once; this task reconnects itself.
        listener.eager_reconnect(false);
        listener.listen(&shared.channel).await?;
        Ok(listener)
    };
    match tokio::time::timeout(shared.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Starts trusting the cache on a freshly `LISTEN`ing connection. Anything
/// cached before may have missed notifications, so it is cleared first.
pub(super) fn resynchronized(shared: &Shared) {
    shared.cache.clear();
    shared.listening.store(true, Ordering::Release);
    shared.cache.trust_until(Instant::now() + shared.max_staleness);
}

/// Runs until the store is dropped (which aborts it).
pub(super) async fn run(shared: Arc<Shared>, mut listener: PgListener) {
    // Heartbeat numbers go on across reconnects: a ping sent on an
    // abandoned connection and committed after the new one listens is
    // heard by the new one, and must not pass for one of its own.
    let mut sequence: u64 = 0;
    loop {
        let reason = serve(&shared, &mut listener, &mut sequence).await;
        shared.listening.store(false, Ordering::Release);
        shared.cache.distrust();
        shared.cache.clear();
        tracing::warn!(
            channel = %shared.channel,
            reason = %reason,
            "PostgreSQL token store lost its revocation listener: validating every token against \
             the database until it reconnects"
        );
        // Dropping it sends UNLISTEN on the old connection from a task of its
        // own; on a silently dead network that task waits until TCP gives up.
        drop(listener);
        listener = reconnect(&shared).await;
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
        resynchronized(&shared);
        tracing::info!(
            channel = %shared.channel,
            "PostgreSQL token store is listening for revocations again: token cache cleared and \
             resynchronized"
        );
    }
}

async fn reconnect(shared: &Shared) -> PgListener {
    let mut wait = FIRST_RETRY;
    loop {
        match connect(shared).await {
            Ok(listener) => return listener,
            Err(error) => {
                tracing::debug!(channel = %shared.channel, %error, "revocation listener cannot reconnect yet");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LAST_RETRY);
            }
        }
    }
}

/// Handles notifications and heartbeats until the connection fails; returns why.
async fn serve(shared: &Shared, listener: &mut PgListener, sequence: &mut u64) -> String {
    let mut heartbeat = tokio::time::interval(shared.max_staleness / 4);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Heartbeats sent and not yet heard back, oldest first.
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        tokio::select! {
            // `try_recv` is cancel-safe: it consumes a message only whole.
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => handle(shared, &notification, &mut in_flight),
                Ok(None) => return "the connection was closed".to_owned(),
                Err(error) => return error.to_string(),
            },
            _ = heartbeat.tick() => {
                *sequence += 1;
                let sent = Instant::now();
                in_flight.push_back((*sequence, sent));
                if in_flight.len() > 64 {
                    in_flight.pop_front();
                }
                // Sent on the listening connection itself: hearing it back
                // proves that connection works, and since PostgreSQL delivers
                // notifications in commit order, that every removal committed
                // before `sent` has been heard.
                let ping = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&shared.channel)
                    .bind(format!("ping {} {sequence}", shared.instance))
                    .execute(&mut *listener);
                match tokio::time::timeout(shared.max_staleness, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return format!("heartbeat failed: {error}"),
                    Err(_) => return format!("no heartbeat answer within {:?}", shared.max_staleness),
                }
            }
        }
    }
}

fn handle(shared: &Shared, notification: &PgNotification, in_flight: &mut VecDeque<(u64, Instant)>) {
    let payload = notification.payload();
    if let Some(ping) = payload.strip_prefix("ping ") {
        let mine = ping
            .split_once(' ')
            .filter(|(instance, _)| *instance == shared.instance)
            .and_then(|(_, sequence)| sequence.parse::<u64>().ok());
        if let Some(sequence) = mine {
            while let Some(&(pending, sent)) = in_flight.front() {
                if pending > sequence {
                    break;
                }
                in_flight.pop_front();
                if pending == sequence {
                    shared.cache.trust_until(sent + shared.max_staleness);
                }
            }
        }
        return;
    }
    match serde_json::from_str::<Vec<String>>(payload) {
        Ok(ids) => shared.cache.remove(ids.iter().map(String::as_str)),
        // `*`, or anything unexpected: forgetting everything is always safe.
        Err(_) => shared.cache.clear(),
    }
}
