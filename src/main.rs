//! The `nacre` binary: parses the command line, reads the settings, starts the node and
//! stops it on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nacre::app::App;
use nacre::settings::Settings;

/// Nacre: Nacos-compatible naming, answered over DNS.
/// jemalloc: pages of freed memory go back to the OS, and untouched parts of large
/// buffers (hyper's per-connection read buffer) stay out of the resident set.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node.
    Serve {
        /// Config file (TOML). Default: conf/nacre.toml when it exists, else the
        /// compiled-in defaults.
        #[arg(long, env = "NACRE_CONFIG")]
        config: Option<PathBuf>,
        /// HTTP listen address (Nacos API), e.g. 0.0.0.0:8848; port 0 picks a free port.
        #[arg(long, env = "NACRE_HTTP_ADDR")]
        http_addr: Option<SocketAddr>,
        /// DNS listen address for UDP and TCP, e.g. 0.0.0.0:53; port 0 picks a free port.
        #[arg(long, env = "NACRE_DNS_ADDR")]
        dns_addr: Option<SocketAddr>,
        /// Data directory.
        #[arg(long, env = "NACRE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Config database URL: mysql://user:password@host:3306/db, or sqlite:path.
        /// Default: SQLite in the data directory.
        #[arg(long, env = "NACRE_DB_URL")]
        db_url: Option<String>,
        /// Cluster members in Nacos's `cluster.conf` format (`host[:port]` a line, `#`
        /// comments); replaces `[cluster] members`. The peers' secret comes from
        /// `NACRE_CLUSTER_SECRET` or `<data dir>/cluster.secret`.
        #[arg(long, env = "NACRE_CLUSTER_CONF")]
        cluster_conf: Option<PathBuf>,
        /// This node's address exactly as the members list names it, e.g. 10.0.0.1:8848.
        #[arg(long, env = "NACRE_NODE_ADDR")]
        node_addr: Option<String>,
    },
}

fn main() -> ExitCode {
    nacre::telemetry::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line: "cannot bind ... (hint): Permission denied".
            eprintln!("nacre: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let Command::Serve {
        config,
        http_addr,
        dns_addr,
        data_dir,
        db_url,
        cluster_conf,
        node_addr,
    } = Cli::parse().command;
    let default_file = PathBuf::from("conf/nacre.toml");
    let mut settings = match config {
        Some(path) => Settings::from_file(&path)?,
        None if default_file.exists() => Settings::from_file(&default_file)?,
        None => Settings::default(),
    };
    if let Some(addr) = http_addr {
        settings.http.addr = addr;
    }
    if let Some(addr) = dns_addr {
        settings.dns.addr = addr;
    }
    if let Some(dir) = data_dir {
        settings.data.dir = dir;
    }
    if let Some(url) = db_url {
        settings.config_store.url = url;
    }
    if let Some(path) = cluster_conf {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the cluster file {}", path.display()))?;
        settings.cluster.members =
            nacre::settings::ClusterSettings::parse_cluster_conf(&text, settings.http.addr.port());
        if settings.cluster.members.is_empty() {
            anyhow::bail!("the cluster file {} names no member", path.display());
        }
    }
    if let Some(addr) = node_addr {
        settings.cluster.node_addr = addr;
    }
    // Secrets come from the environment only (never a flag, which `ps` shows).
    settings.cluster.secret = std::env::var("NACRE_CLUSTER_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if let Some(key) = std::env::var("NACRE_AUTH_TOKEN_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        settings.auth.token_key = key;
    }
    settings.auth.admin_password = std::env::var("NACRE_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    settings.validate()?;
    // Held long polls, TCP DNS clients and probes in flight each take a descriptor;
    // the usual soft limit of 1024 is far too low for a server.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // The handlers go in before the server starts: a SIGTERM sent as soon as the
        // listening addresses are logged must stop it cleanly, not kill it.
        let stop = shutdown_signal()?;
        let app = App::start(settings).await?;
        stop.await;
        tracing::info!("shutting down");
        app.shutdown().await;
        Ok(())
    })
}

/// A future that ends on SIGINT or SIGTERM; the handlers are installed when this is
/// called.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}
