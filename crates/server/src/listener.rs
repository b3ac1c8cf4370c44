//! The accept loop of one listener.

use std::sync::Arc;

use portcullis_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::context::{BoundListener, Shared};
use crate::{connection, telemetry};

/// Accepts until a stop is asked for. The loop owns `socket`, so leaving
/// it closes the port at once: a client that connects after SIGTERM is
/// refused by the kernel instead of waiting in the backlog for a greeting
/// that never comes.
pub(crate) async fn accept_loop(
    socket: TcpListener,
    listener: Arc<BoundListener>,
    shared: Arc<Shared>,
) {
    let mut stopping = shared.stopping.clone();
    if let Some(addr) = listener.local_addr {
        tracing::info!(listener = %listener.name, %addr, implicit_tls = listener.implicit_tls, "listening");
    }
    loop {
        let accepted = tokio::select! {
            // Shutdown: stop taking connections; running sessions go on.
            _ = stopping.wait_for(|stop| *stop) => break,
            accepted = socket.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep going.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::warn!(client = %peer, "connection limit reached");
            metrics::counter!(telemetry::CONNECTIONS_REFUSED).increment(1);
            tokio::spawn(async move {
                let mut out = Vec::new();
                Reply::too_many_connections().write_to(&mut out);
                let _ = stream.write_all(&out).await;
            });
            continue;
        };
        metrics::counter!(telemetry::CONNECTIONS, "listener" => listener.name.clone()).increment(1);
        let listener = listener.clone();
        let shared = shared.clone();
        // Boxed: the session's future is several KiB, and tokio moves a
        // task's future by value into its cell and again at each stage
        // change; a box moves a pointer instead.
        tokio::spawn(Box::pin(async move {
            let active = metrics::gauge!(telemetry::CONNECTIONS_ACTIVE);
            active.increment(1.0);
            // The address the client connected to: the listener's, unless
            // it listens on a wildcard, `::ffff:0.0.0.0` included (then a
            // system call asks).
            let local = match listener.local_addr {
                Some(bound) if !bound.ip().to_canonical().is_unspecified() => Some(bound),
                _ => stream.local_addr().ok(),
            };
            connection::serve(stream, peer, local, &listener, &shared).await;
            active.decrement(1.0);
            drop(permit);
        }));
    }
}
