//! When a service stops: on Ctrl-C (SIGINT) or SIGTERM, which `paysys up`, systemd and
//! container runtimes send.
//!
//! Shared because every service's `serve` hands the same future to its accept loop;
//! what stops a service should not depend on which one it is.

/// Completes on Ctrl-C or SIGTERM. A signal that cannot be listened for is ignored
/// (the other still works); it never completes on its own.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
