//! A TCP proxy in front of PostgreSQL that a test can cut, so one replica
//! loses its database while the shared server (and other replicas) run on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pass everything through.
    Forward,
    /// Close every connection and refuse new ones (a database that is down).
    Refuse,
    /// Keep connections open but pass nothing (a silent network failure).
    Blackhole,
}

/// Runs until dropped (its task ends with the test's runtime).
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    cut_after_commit: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let (mode, watching) = watch::channel(Mode::Forward);
        let cut_after_commit = Arc::new(AtomicBool::new(false));
        let cut = cut_after_commit.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut watching = watching.clone();
                let now = *watching.borrow_and_update();
                match now {
                    Mode::Refuse => drop(client),
                    Mode::Blackhole => {
                        tokio::spawn(async move { hold_until_changed(client, None, &mut watching).await });
                    }
                    Mode::Forward => {
                        let cut = cut.clone();
                        tokio::spawn(async move { forward(client, upstream, &mut watching, &cut).await });
                    }
                }
            }
        });
        Proxy {
            port,
            mode,
            cut_after_commit,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The next time the server answers a `COMMIT`, that answer is lost:
    /// the connection is cut instead (the transaction has committed, but
    /// the client cannot know). Once.
    pub fn cut_after_next_commit(&self) {
        self.cut_after_commit.store(true, Ordering::SeqCst);
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mode: &mut watch::Receiver<Mode>,
    cut_after_commit: &AtomicBool,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let changed = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let to_server = tokio::io::copy(&mut client_read, &mut server_write);
        let to_client = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                // CommandComplete of a COMMIT carries the tag "COMMIT\0".
                let commit = buf[..n].windows(7).any(|w| w == b"COMMIT\0");
                if commit && cut_after_commit.swap(false, Ordering::SeqCst) {
                    return;
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = to_server => false,
            () = to_client => false,
            _ = mode.changed() => true,
        }
    };
    if changed && *mode.borrow_and_update() == Mode::Blackhole {
        hold_until_changed(client, Some(server), mode).await;
    }
    // Otherwise both sockets close here.
}

/// Holds the sockets open, passing nothing, until the mode changes again;
/// then closes them (bytes in flight were lost, so resuming is not an option).
async fn hold_until_changed(client: TcpStream, server: Option<TcpStream>, mode: &mut watch::Receiver<Mode>) {
    let _ = mode.changed().await;
    drop((client, server));
}
