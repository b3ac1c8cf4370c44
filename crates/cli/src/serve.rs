//! `portcullis serve`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use portcullis_auth::{AuthOptions, Authenticator};
use portcullis_config::Config;
use portcullis_server::{admin, telemetry, tls, Server};
use portcullis_spool::Spool;

/// How long running sessions may go on after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The data directory holds the spool (every queued message and who sent
/// it), the ban list and keys: an existing one that other users may enter
/// is left as it is (the operator chose it) but named in the log.
fn warn_if_shared(data_dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(data_dir) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %data_dir.display(),
                mode = %format!("{mode:04o}"),
                hint = "chmod 700 it",
                "the data directory is open to other users; queued messages and keys are in it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = data_dir;
}

/// Reads the config again (for SIGHUP).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config> + Send + Sync>;

pub fn run(config: Config, reload_config: ConfigLoader) -> Result<ExitCode> {
    // Everything that can be checked is checked before anything is made:
    // a bad file or a taken port leaves no data directory behind.
    crate::check_files(&config)?;
    let policy = crate::policy::load(&config)?;
    portcullis_server::preflight::check_ports(&config)?;
    warn_if_shared(&config.data_dir);
    portcullis_server::private_dir(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    // Before the runtime: the PostgreSQL client blocks on its own.
    let (store, activity) = crate::stores::open_with_activity(&config)?;
    let spool = Arc::new(Spool::open(&config.spool_dir).context("opening the spool")?);
    let tls = tls::setup(
        &config.tls,
        &config.hostname,
        config.client_certificates.as_ref(),
    )?;
    let certificate = tls.certificate.clone();
    let delivery = (config.delivery.clone())
        .map(|d| portcullis_delivery::Engine::new(spool.clone(), d, config.hostname.clone()))
        .transpose()
        .context("starting delivery")?;
    // One worker: the single-threaded scheduler. A work-stealing one with
    // a single worker still pays for stealing (shared queues, atomics on
    // every wake) with no one to steal for: measured 2-3 % more
    // instructions per session and per message.
    let mut runtime = match config.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(workers);
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        if let Some(address) = config.admin {
            let metrics = install_metrics_recorder()?;
            let listener = admin::bind(address)
                .await
                .with_context(|| format!("admin listener on {address}"))?;
            tokio::spawn(admin::serve(listener, metrics, stopping.clone()));
        }
        let defaults = AuthOptions::default();
        let options = AuthOptions {
            verified_cache_ttl: config.auth.verified_cache_ttl,
            max_concurrent_verifications: config
                .auth
                .max_concurrent_verifications
                .unwrap_or(defaults.max_concurrent_verifications),
            slot_wait: config.auth.slot_wait.unwrap_or(defaults.slot_wait),
            slot_queue: config.auth.slot_queue.unwrap_or(defaults.slot_queue),
            failure_floor: config.auth.failure_floor,
            password_max_age: config.auth.password_max_age,
            ..defaults
        };
        let authenticator = Authenticator::with_options(store, &options);
        let server = Server::bind(
            &config,
            authenticator,
            spool.clone(),
            Some(tls),
            stopping.clone(),
        )
        .await?;
        tokio::spawn(reload_on_sighup(
            certificate,
            server.reloader(),
            reload_config,
        ));
        let server = match activity {
            Some(activity) => server.with_activity(activity, &config),
            None => server,
        };
        let server = match policy {
            Some(policy) => {
                tokio::spawn(crate::policy::reload_on_sighup(policy.clone()));
                server.with_policy(policy)
            }
            None => server,
        };
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stop signal: no new connections, finishing open sessions");
            let _ = stop.send(true);
        });
        let observer: portcullis_delivery::ResultObserver = Arc::new(server.delivery_observer());
        let delivery = delivery.map(|engine| {
            let engine = engine.with_observer(observer);
            tokio::spawn(engine.run(stopping.clone()))
        });
        server.run(SHUTDOWN_GRACE).await;
        if let Some(delivery) = delivery {
            let _ = delivery.await;
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// On each SIGHUP: reads the certificate and key again (a renewed
/// certificate takes effect without a restart; open connections keep the
/// one they shook hands with), and reads the config file again, applying
/// what new sessions are told and allowed. Anything that fails to load is
/// logged and the old one stays; settings that need a restart are named
/// in the log. The policy script has its own SIGHUP reload.
async fn reload_on_sighup(
    certificate: Arc<tls::ServerCertificate>,
    listeners: portcullis_server::Reloader,
    reload_config: ConfigLoader,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; nothing will reload");
            return;
        };
        let reload_config = Arc::new(reload_config);
        let listeners = Arc::new(listeners);
        while hangup.recv().await.is_some() {
            let slot = certificate.clone();
            match tokio::task::spawn_blocking(move || slot.reload()).await {
                Ok(Ok(())) => tracing::info!("certificate reloaded"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "certificate reload failed; keeping the old one")
                }
                Err(_) => tracing::error!("certificate reload task failed"),
            }
            let (load, listeners) = (reload_config.clone(), listeners.clone());
            let applied = tokio::task::spawn_blocking(move || {
                let config = load()?;
                Ok::<_, anyhow::Error>(listeners.apply(&config)?)
            })
            .await;
            match applied {
                Ok(Ok(needs_restart)) if needs_restart.is_empty() => {
                    tracing::info!("config reloaded")
                }
                Ok(Ok(needs_restart)) => tracing::warn!(
                    not_applied = ?needs_restart,
                    "config reloaded; these changes need a restart"
                ),
                Ok(Err(error)) => {
                    tracing::error!(error = %format!("{error:#}"), "config reload failed; keeping the old one")
                }
                Err(_) => tracing::error!("config reload task failed"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (certificate, listeners, reload_config);
    }
}

/// Installs the Prometheus recorder that the admin listener renders.
fn install_metrics_recorder() -> Result<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(telemetry::LATENCY_BUCKETS)
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    telemetry::describe();
    Ok(handle)
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The allocators' settings (see `allocator.rs`), first thing in `main`.
///
/// - glibc's mmap threshold is fixed at [`crate::allocator::BIG`]: the
///   blocks it gets are all that big, and each is mapped on its own and
///   unmapped when freed. Left dynamic, the threshold rises to the size
///   of a freed mapped block, and the next argon2id buffer would come
///   from the heap and stay there.
/// - mimalloc keeps freed memory `PURGE_DELAY_MS` before giving it back
///   (an operator's `MIMALLOC_PURGE_DELAY` wins). Given back at once, a
///   message's buffers were faulted in again for the next one: 74 -> 64
///   µs of server CPU per message, 20 messages a session, at 10 ms.
/// - Transparent huge pages are off for the process: mimalloc asks for
///   them on its arena, where each thread's first small allocations then
///   make 2 MiB resident (measured: 10 MiB more at start, 6 KiB more per
///   connection after a load). mimalloc's own option for this is read
///   once, before `main` runs.
#[allow(unsafe_code)] // the allocators' option calls and prctl, see the SAFETY notes
pub fn tune_allocator() {
    // The index of `mi_option_purge_delay` in mimalloc 3's `mimalloc.h`,
    // which `libmimalloc-sys` builds by default (the crate names only
    // some options).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const PURGE_DELAY_MS: std::os::raw::c_long = 10;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores a tuning value; it is called
        // first thing in `main`, before any other thread exists (options
        // are not synchronised), with a value the header documents.
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS);
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and no pointers, and is called
    // before any other thread allocates; its failure leaves the dynamic
    // threshold, which is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, crate::allocator::BIG as libc::c_int);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes an integer flag and no pointers;
    // its failure (an old kernel) leaves the default, which is harmless.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    /// The option indices are the ones of the mimalloc this build links:
    /// before they are set, each reads its documented default.
    #[test]
    #[allow(unsafe_code)] // reading allocator options
    fn the_allocator_options_are_the_ones_meant() {
        // SAFETY: reading an option has no effect; nothing else in this
        // test binary sets options.
        let purge_delay = unsafe { libmimalloc_sys::mi_option_get(15) };
        assert_eq!(purge_delay, 1000, "mimalloc 3's default");
        super::tune_allocator();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: as above.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(15) }, 10);
        }
    }
}
