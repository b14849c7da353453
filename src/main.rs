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

/// `nacre serve`'s flags.
#[derive(clap::Args)]
struct ServeArgs {
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
}

#[derive(Subcommand)]
enum Command {
    /// Runs a node.
    Serve(ServeArgs),
    /// The Raft group of persistent naming data: status, members, recovery.
    Raft {
        #[command(subcommand)]
        action: RaftCommand,
    },
}

#[derive(Subcommand)]
enum RaftCommand {
    /// Prints the group as a member sees it (role, term, indexes, voters, lag).
    Status {
        /// A member's HTTP base URL, e.g. http://10.0.0.1:8848.
        #[arg(long, env = "NACRE_SERVER")]
        server: String,
    },
    /// Adds the member at ADDRESS to the group (a learner until it caught up, then a
    /// voter). Signs in as NACRE_USERNAME (default nacos) with NACRE_PASSWORD.
    AddMember {
        /// A member's HTTP base URL; the change goes to the leader from any member.
        #[arg(long, env = "NACRE_SERVER")]
        server: String,
        /// The new member's address as the others reach it, host:port.
        #[arg(long)]
        address: String,
    },
    /// Removes the member with node id NODE_ID (see `status`) from the group.
    RemoveMember {
        /// A member's HTTP base URL.
        #[arg(long, env = "NACRE_SERVER")]
        server: String,
        /// The member's Raft node id.
        #[arg(long)]
        node_id: u64,
    },
    /// Recovers from a lost quorum, on a STOPPED member: its data becomes a group of
    /// this member alone. Start it, empty the other members' <data>/raft, start them
    /// and add them back with add-member.
    Recover {
        /// The member's data directory.
        #[arg(long, env = "NACRE_DATA_DIR")]
        data_dir: PathBuf,
        /// The member's address as the others reach it, host:port.
        #[arg(long, env = "NACRE_NODE_ADDR")]
        node_addr: String,
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
    match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Raft { action } => raft(action),
    }
}

/// `nacre serve`: settings from the file, the flags and the environment, then the node
/// until SIGINT or SIGTERM.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        config,
        http_addr,
        dns_addr,
        data_dir,
        db_url,
        cluster_conf,
        node_addr,
    } = args;
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

/// `nacre raft ...`: the admin API of the group, or the offline recovery.
fn raft(action: RaftCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (server, method, param) = match action {
            RaftCommand::Status { server } => (server, reqwest::Method::GET, None),
            RaftCommand::AddMember { server, address } => {
                (server, reqwest::Method::POST, Some(("address", address)))
            }
            RaftCommand::RemoveMember { server, node_id } => (
                server,
                reqwest::Method::DELETE,
                Some(("nodeId", node_id.to_string())),
            ),
            RaftCommand::Recover {
                data_dir,
                node_addr,
            } => {
                let naming = std::sync::Arc::new(nacre::naming::NamingService::new(
                    std::sync::Arc::new(nacre::naming::registry::Registry::new()),
                ));
                let state =
                    std::sync::Arc::new(nacre::naming::persistent::PersistentState::new(naming));
                let done = nacre::replication::raft::recover(
                    &data_dir.join("raft"),
                    &node_addr,
                    state.clone(),
                )
                .await?;
                println!(
                    "recovered node {} at {node_addr}: {} services of persistent data up to \
                     log index {} ({} entries replayed). Start this member; empty the \
                     others' <data dir>/raft, start them and add each with \
                     `nacre raft add-member`.",
                    done.node_id,
                    state.services().len(),
                    done.last_log_index,
                    done.replayed,
                );
                return Ok(());
            }
        };
        let params: Vec<(&str, &str)> = param.iter().map(|(k, v)| (*k, v.as_str())).collect();
        println!("{}", admin_call(&server, method, &params).await?);
        Ok(())
    })
}

/// Calls `/nacos/v1/core/cluster/raft[/members]` on `server`, signed in as
/// NACRE_USERNAME (default `nacos`) with NACRE_PASSWORD when one is set. Errors with
/// the server's status and message.
async fn admin_call(
    server: &str,
    method: reqwest::Method,
    params: &[(&str, &str)],
) -> anyhow::Result<String> {
    let server = server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let mut query: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(password) = std::env::var("NACRE_PASSWORD") {
        let username = std::env::var("NACRE_USERNAME").unwrap_or_else(|_| "nacos".into());
        let resp = client
            .post(format!("{server}/nacos/v1/auth/login"))
            .form(&[
                ("username", username.as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("cannot reach {server}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("sign-in as {username} refused ({status}): {body}");
        }
        let token: serde_json::Value =
            serde_json::from_str(&body).context("the sign-in answer is not JSON")?;
        let token = token["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        query.push(("accessToken".into(), token));
    }
    let path = if method == reqwest::Method::GET {
        "/nacos/v1/core/cluster/raft"
    } else {
        "/nacos/v1/core/cluster/raft/members"
    };
    let resp = client
        .request(method, format!("{server}{path}"))
        .query(&query)
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{server} answered {status}: {body}");
    }
    Ok(body)
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
