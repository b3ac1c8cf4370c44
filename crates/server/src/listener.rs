//! The accept loop of one listener.

use std::sync::Arc;

use portcullis_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::{connection, BoundListener, Shared};

pub(crate) async fn accept_loop(
    listener: BoundListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = Arc::new(listener);
    if let Ok(addr) = listener.socket.local_addr() {
        tracing::info!(listener = %listener.name, %addr, implicit_tls = listener.implicit_tls, "listening");
    }
    loop {
        let accepted = tokio::select! {
            // Shutdown: stop taking connections; running sessions go on.
            _ = shutdown.changed() => break,
            accepted = listener.socket.accept() => accepted,
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
            tokio::spawn(async move {
                let mut out = Vec::new();
                Reply::too_many_connections().write_to(&mut out);
                let _ = stream.write_all(&out).await;
            });
            continue;
        };
        let listener = listener.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            connection::serve(stream, peer, &listener, &shared).await;
            drop(permit);
        });
    }
}
