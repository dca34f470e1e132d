//! Process glue shared by every server and daemon (`DESIGN.md`, "Daemons"): a [`Stop`]
//! flag raised by SIGTERM/SIGINT, systemd readiness notifications (`READY=1`,
//! `STOPPING=1`; no-ops when `NOTIFY_SOCKET` is unset), the periodic [`run_daemon`] loop
//! (forever with an interval, or `--once`) and [`run_server`] (bind, notify, serve until
//! a signal, drain).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::http::{bind, serve, Handler, ServeOptions};

/// How long a running pass may take to notice a stop before it is abandoned.
pub const PASS_STOP_GRACE: Duration = Duration::from_secs(30);

/// A cloneable stop flag: raised once, observed by every clone.
#[derive(Debug, Clone)]
pub struct Stop {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Stop {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// A flag raised by the first SIGTERM or SIGINT. Must be called inside a runtime.
    pub fn on_signals() -> io::Result<Self> {
        let stop = Stop::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let s = stop.clone();
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "stop requested");
            s.stop();
        });
        Ok(stop)
    }

    /// Raise the flag.
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the flag is raised.
    pub async fn stopped(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which cannot happen while we hold one.
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Sleep for `d` unless stopped first; `true` when the full time passed.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stopped() => false,
        }
    }
}

fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Tell systemd the service is ready (`Type=notify` units).
pub fn notify_ready() {
    notify(sd_notify::NotifyState::Ready);
}

/// Tell systemd the service is stopping.
pub fn notify_stopping() {
    notify(sd_notify::NotifyState::Stopping);
}

/// A free-form status line for `systemctl status`.
pub fn notify_status(status: &str) {
    notify(sd_notify::NotifyState::Status(status));
}

/// A multi-threaded runtime with `workers` worker threads (0: one per core).
pub fn build_runtime(workers: usize) -> io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.build()
}

/// Run `pass` once (`once`) or forever, starting a pass every `interval` (plus up to 10%
/// random jitter so that nodes drift apart), until SIGTERM/SIGINT. See [`run_daemon_with`].
pub async fn run_daemon<F, Fut>(
    name: &str,
    interval: Duration,
    once: bool,
    pass: F,
) -> io::Result<()>
where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = ()>,
{
    let stop = Stop::on_signals()?;
    run_daemon_with(name, interval, once, stop, pass).await;
    Ok(())
}

/// The daemon loop with a caller-owned [`Stop`]. Each pass gets a clone of it and should
/// return soon after it is raised; a pass still running [`PASS_STOP_GRACE`] after the
/// stop is dropped (its disk writes are crash-safe by design).
pub async fn run_daemon_with<F, Fut>(
    name: &str,
    interval: Duration,
    once: bool,
    stop: Stop,
    mut pass: F,
) where
    F: FnMut(Stop) -> Fut,
    Fut: Future<Output = ()>,
{
    notify_ready();
    tracing::info!(daemon = name, ?interval, once, "daemon started");
    let mut n = 0u64;
    loop {
        n += 1;
        let begin = Instant::now();
        tracing::info!(daemon = name, pass = n, "pass starting");
        let fut = pass(stop.clone());
        let mut fut = std::pin::pin!(fut);
        let finished = tokio::select! {
            () = &mut fut => true,
            () = stop.stopped() => tokio::time::timeout(PASS_STOP_GRACE, &mut fut).await.is_ok(),
        };
        let elapsed = begin.elapsed();
        if finished {
            tracing::info!(
                daemon = name,
                pass = n,
                elapsed_s = elapsed.as_secs_f64(),
                "pass done"
            );
        } else {
            tracing::warn!(
                daemon = name,
                pass = n,
                "pass ignored the stop request; abandoned"
            );
        }
        if once || stop.is_stopped() {
            break;
        }
        let jitter = interval.mul_f64(rand::thread_rng().gen_range(0.0..0.1));
        let wait = interval.saturating_sub(elapsed) + jitter;
        notify_status(&format!("pass {n} done in {:.1}s", elapsed.as_secs_f64()));
        if !stop.sleep(wait).await {
            break;
        }
    }
    notify_stopping();
    tracing::info!(daemon = name, "daemon stopped");
}

/// Bind `addr`, then [`run_server_on`] until SIGTERM/SIGINT.
pub async fn run_server<H: Handler>(
    addr: SocketAddr,
    handler: Arc<H>,
    opts: ServeOptions,
) -> io::Result<()> {
    let listener = bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    run_server_on(listener, handler, opts, Stop::on_signals()?).await
}

/// Serve on a bound listener until `stop`: notifies systemd READY=1 once listening and
/// STOPPING=1 when the stop arrives, then drains (see [`serve`]).
pub async fn run_server_on<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    opts: ServeOptions,
    stop: Stop,
) -> io::Result<()> {
    tracing::info!(server = %opts.name, addr = %listener.local_addr()?, "listening");
    notify_ready();
    let shutdown = async move {
        stop.stopped().await;
        notify_stopping();
    };
    serve(listener, handler, shutdown, opts).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn once_runs_one_pass() {
        let count = AtomicU32::new(0);
        run_daemon_with(
            "t",
            Duration::from_secs(3600),
            true,
            Stop::new(),
            |_| async {
                count.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn loops_until_stopped() {
        let count = AtomicU32::new(0);
        let stop = Stop::new();
        let s = stop.clone();
        run_daemon_with("t", Duration::from_millis(5), false, stop, |_| {
            if count.fetch_add(1, Ordering::SeqCst) == 2 {
                s.stop();
            }
            async {}
        })
        .await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stop_interrupts_sleep_and_pass() {
        let stop = Stop::new();
        let s = stop.clone();
        let begin = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.stop();
        });
        // The pass waits for the stop itself, as a well-behaved long pass does.
        run_daemon_with(
            "t",
            Duration::from_secs(3600),
            false,
            stop.clone(),
            |st| async move {
                st.stopped().await;
            },
        )
        .await;
        assert!(begin.elapsed() < Duration::from_secs(5));
        assert!(!stop.sleep(Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn signals_install() {
        // Installing the handlers must work inside a runtime (no signal is sent).
        let stop = Stop::on_signals().unwrap();
        assert!(!stop.is_stopped());
    }
}
