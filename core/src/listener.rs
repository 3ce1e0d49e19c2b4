//! An HTTP listener of a service's own (metrics and health, the providers' webhooks): bound
//! at startup, so a taken port stops the service with a clear error, then served in a task
//! until shutdown.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `listen`, then serves `app` in a task of its own until `cancel` fires; logs what it
/// serves (`what`) and where. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    what: &'static str,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving {what}");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, %address, "the listener for {what} stopped");
        }
    });
    Ok(address)
}
