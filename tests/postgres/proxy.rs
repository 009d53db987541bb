//! A TCP proxy in front of PostgreSQL that a test can cut, so one replica
//! loses its database while the shared server (and other replicas) run on.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
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
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let (mode, watching) = watch::channel(Mode::Forward);
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
                        tokio::spawn(async move { forward(client, upstream, &mut watching).await });
                    }
                }
            }
        });
        Proxy { port, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mode: &mut watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = mode.changed() => {
            if *mode.borrow_and_update() == Mode::Blackhole {
                hold_until_changed(client, Some(server), mode).await;
            }
            // Refuse: both sockets close here.
        }
    }
}

/// Holds the sockets open, passing nothing, until the mode changes again;
/// then closes them (bytes in flight were lost, so resuming is not an option).
async fn hold_until_changed(client: TcpStream, server: Option<TcpStream>, mode: &mut watch::Receiver<Mode>) {
    let _ = mode.changed().await;
    drop((client, server));
}
