//! Server-side probes of persistent instances (as Nacos's `TcpSuperSenseProcessor`,
//! `HttpHealthCheckProcessor` and `MysqlHealthCheckProcessor`, `shared/nacos-api.md`
//! §3.3), and the worker that runs them.
//!
//! Every `health.interval_ms` ± `health.jitter_ms` a round starts: it reads every
//! persistent instance whose cluster has a checker other than `NONE` from the registry
//! snapshots and queues a probe of each, except those whose previous probe is still
//! running. At most `health.max_concurrency` probes run at once, each bounded by
//! `health.timeout_ms`, and rounds do not wait for each other: a slow or hanging target
//! holds one slot for at most the timeout and delays no other instance's checks.
//! `health.check_times` consecutive results of the other kind flip an instance; a
//! refused connection or an unexpected HTTP status flips a healthy one at once ("fail
//! now"). Each flip goes through `NamingService`, so DNS, the list API and push follow
//! through the registry's change events, and is logged with its reason.
//!
//! Owns only its streak counters and the probes in flight (soft state, dropped for
//! instances that are gone); health itself lives in the registry.
//!
//! In a cluster ([`ProbeWorker::with_sharing`]) a member probes only the services it is
//! responsible for (rendezvous hash of the service over the members that are not
//! DOWN, DESIGN §2), and its verdicts reach every member: each flip within 100 ms, and
//! every [`SHARE_ALL_EVERY_ROUNDS`] rounds the health of every instance it has probed,
//! so a member that was down or restarted catches up. Health stays soft state: it is
//! not written through Raft.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::auth::proof::AccessProof;
use crate::cluster::members::Membership;
use crate::cluster::peer::{self, PeerClient};
use crate::cluster::responsibility::service_id;
use crate::model::{HealthChecker, InstanceKey, ServiceKey, health::probe_headers};
use crate::naming::ProbeTarget;
use crate::naming::command::{Applied, NamingCommand};
use crate::naming::dispatch::NamingDispatcher;
use crate::settings::HealthSettings;

/// Peer path of probe verdicts: a batch of [`NamingCommand::SetProbedHealth`].
pub const VERDICTS_PATH: &str = "/nacos/internal/v1/health/verdicts";

/// Every this many rounds a member sends its peers the health of every instance it
/// probed (30 s at the default 5 s interval), besides each flip as it happens.
pub const SHARE_ALL_EVERY_ROUNDS: u64 = 6;

/// How a cluster member shares the probing: whom it asks who is responsible, and how it
/// reaches the peers.
pub struct ProbeSharing {
    membership: Arc<Membership>,
    client: PeerClient,
}

impl ProbeSharing {
    /// Sharing among `membership`'s members, over `client`.
    pub fn new(membership: Arc<Membership>, client: PeerClient) -> Self {
        Self { membership, client }
    }

    fn is_responsible(&self, service: &ServiceKey) -> bool {
        self.membership.is_responsible_for(&service_id(service))
    }

    /// Sends `verdicts` to every peer, in the background; a peer that misses them gets
    /// the next full round.
    fn send(&self, verdicts: Vec<NamingCommand>) {
        let body = peer::encode(&verdicts);
        for member in self.membership.peers() {
            let (client, member, body) = (self.client.clone(), member.clone(), body.clone());
            tokio::spawn(async move {
                if let Err(e) = client
                    .post(&member, VERDICTS_PATH, body, Duration::from_secs(2))
                    .await
                {
                    debug!(peer = %member, error = %e, "probe verdicts not delivered");
                }
            });
        }
    }
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The target answered as a healthy one does.
    Healthy,
    /// It did not; counts towards `check_times`. The text says why.
    Failed(String),
    /// It refused outright (connection refused, unexpected HTTP status): a healthy
    /// instance turns unhealthy at once. The text says why.
    FailedNow(String),
}

/// Figures of the last completed round (from its start until its last probe ended),
/// for metrics and the benchmark.
#[derive(Debug, Default)]
pub struct ProbeStats {
    last_round_ms: AtomicU64,
    last_round_targets: AtomicU64,
}

impl ProbeStats {
    /// Wall time of the last completed round, milliseconds.
    pub fn last_round_ms(&self) -> u64 {
        self.last_round_ms.load(Ordering::Relaxed)
    }

    /// Instances probed in the last completed round.
    pub fn last_round_targets(&self) -> u64 {
        self.last_round_targets.load(Ordering::Relaxed)
    }
}

/// Consecutive results of one instance.
#[derive(Default)]
struct Streak {
    ok: u32,
    failed: u32,
    /// The last round that saw the instance; streaks of instances a round no longer
    /// sees are dropped.
    round: u64,
    /// The checker the streak was counted with; a new checker starts a new streak.
    checker: Option<HealthChecker>,
}

/// A started round: when, and how many of its probes are still to end.
struct RoundState {
    started: Instant,
    targets: usize,
    remaining: usize,
}

type Probing =
    std::pin::Pin<Box<dyn std::future::Future<Output = (u64, ProbeTarget, Verdict)> + Send>>;

/// Probes persistent instances and flips their health.
pub struct ProbeWorker {
    dispatcher: Arc<NamingDispatcher>,
    settings: Arc<HealthSettings>,
    stats: Arc<ProbeStats>,
    streaks: HashMap<ServiceKey, HashMap<InstanceKey, Streak>>,
    /// Probes waiting for a slot, with their round.
    queue: VecDeque<(u64, ProbeTarget)>,
    /// Instances queued or being probed: a round skips them.
    busy: HashSet<(ServiceKey, InstanceKey)>,
    rounds: HashMap<u64, RoundState>,
    sharing: Option<ProbeSharing>,
    /// Verdicts waiting to go to the peers, and when they go.
    pending: Vec<NamingCommand>,
    flush_at: Option<Instant>,
}

impl ProbeWorker {
    /// A worker that reads its targets from the dispatcher's naming service and
    /// submits its verdicts through the dispatcher, with `settings`.
    pub fn new(dispatcher: Arc<NamingDispatcher>, settings: HealthSettings) -> Self {
        Self {
            dispatcher,
            settings: Arc::new(settings),
            stats: Arc::default(),
            streaks: HashMap::new(),
            queue: VecDeque::new(),
            busy: HashSet::new(),
            rounds: HashMap::new(),
            sharing: None,
            pending: Vec::new(),
            flush_at: None,
        }
    }

    /// A worker of a cluster member: probes only its share of the services and tells
    /// its peers the verdicts (see the module docs).
    pub fn with_sharing(mut self, sharing: ProbeSharing) -> Self {
        self.sharing = Some(sharing);
        self
    }

    /// Queues verdicts for the peers; they go within 100 ms.
    fn share(&mut self, verdicts: impl IntoIterator<Item = NamingCommand>) {
        if self.sharing.is_none() {
            return;
        }
        self.pending.extend(verdicts);
        if !self.pending.is_empty() && self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + Duration::from_millis(100));
        }
    }

    fn flush(&mut self) {
        self.flush_at = None;
        let verdicts = std::mem::take(&mut self.pending);
        if let Some(sharing) = &self.sharing
            && !verdicts.is_empty()
        {
            sharing.send(verdicts);
        }
    }

    /// The figures this worker keeps up to date.
    pub fn stats(&self) -> Arc<ProbeStats> {
        self.stats.clone()
    }

    fn next_delay(&self) -> Duration {
        let jitter = self.settings.jitter_ms;
        let base = self.settings.interval_ms.saturating_sub(jitter);
        Duration::from_millis(base + rand::rng().random_range(0..=2 * jitter))
    }

    /// Runs until `shutdown` fires.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut next_round = Instant::now() + self.next_delay();
        let mut round = 0u64;
        let mut in_flight: FuturesUnordered<Probing> = FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(self.flush_at.unwrap_or(next_round)), if self.flush_at.is_some() => {
                    self.flush();
                }
                _ = tokio::time::sleep_until(next_round) => {
                    round += 1;
                    next_round = Instant::now() + self.next_delay();
                    self.start_round(round);
                }
                Some((r, target, verdict)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.busy.remove(&(target.service.clone(), target.instance.key()));
                    self.apply(&target, verdict).await;
                    self.probe_ended(r);
                }
            }
            while in_flight.len() < self.settings.max_concurrency {
                let Some((r, target)) = self.queue.pop_front() else {
                    break;
                };
                in_flight.push(probe_owned(r, target, self.settings.clone()));
            }
        }
    }

    /// Queues a probe of every target that is not still being probed, and drops the
    /// streaks of instances that are gone.
    fn start_round(&mut self, round: u64) {
        let mut targets = self.dispatcher.naming().probe_targets();
        if let Some(sharing) = &self.sharing {
            targets.retain(|t| sharing.is_responsible(&t.service));
        }
        let share_all = self.sharing.is_some() && round.is_multiple_of(SHARE_ALL_EVERY_ROUNDS);
        let mut current = Vec::new();
        let mut queued = 0;
        for target in targets {
            if share_all
                && let Some(streak) = self
                    .streaks
                    .get(&target.service)
                    .and_then(|s| s.get(&target.instance.key()))
                && (streak.ok > 0 || streak.failed > 0)
            {
                current.push(NamingCommand::SetProbedHealth {
                    service: target.service.clone(),
                    client: target.instance.key(),
                    cluster: target.instance.cluster.to_string(),
                    checker: target.cluster.health_checker.clone(),
                    healthy: target.instance.healthy,
                });
            }
            let ikey = target.instance.key();
            let streak = match self.streaks.get_mut(&target.service) {
                Some(instances) => instances,
                None => self.streaks.entry(target.service.clone()).or_default(),
            }
            .entry(ikey.clone())
            .or_default();
            streak.round = round;
            if self.busy.insert((target.service.clone(), ikey)) {
                self.queue.push_back((round, target));
                queued += 1;
            }
        }
        self.streaks.retain(|_, instances| {
            instances.retain(|_, s| s.round == round);
            !instances.is_empty()
        });
        self.rounds.insert(
            round,
            RoundState {
                started: Instant::now(),
                targets: queued,
                remaining: queued,
            },
        );
        if queued == 0 {
            self.probe_ended_of(round, false);
        }
        self.share(current);
    }

    fn probe_ended(&mut self, round: u64) {
        self.probe_ended_of(round, true);
    }

    /// Counts one ended probe of `round` (none with `counted = false`); records the
    /// round's figures once its last probe ended.
    fn probe_ended_of(&mut self, round: u64, counted: bool) {
        let Some(state) = self.rounds.get_mut(&round) else {
            return;
        };
        if counted {
            state.remaining = state.remaining.saturating_sub(1);
        }
        if state.remaining > 0 {
            return;
        }
        let elapsed = state.started.elapsed().as_millis() as u64;
        let targets = state.targets;
        self.rounds.remove(&round);
        self.stats.last_round_ms.store(elapsed, Ordering::Relaxed);
        self.stats
            .last_round_targets
            .store(targets as u64, Ordering::Relaxed);
        debug!(
            round,
            targets,
            elapsed_ms = elapsed,
            "health check round done"
        );
    }

    /// Counts one result and flips the instance when its streak is long enough.
    async fn apply(&mut self, target: &ProbeTarget, verdict: Verdict) {
        let check_times = self.settings.check_times;
        let Some(streak) = self
            .streaks
            .get_mut(&target.service)
            .and_then(|instances| instances.get_mut(&target.instance.key()))
        else {
            // The instance left while it was probed.
            return;
        };
        let checker = &target.cluster.health_checker;
        if streak.checker.as_ref() != Some(checker) {
            *streak = Streak {
                round: streak.round,
                checker: Some(checker.clone()),
                ..Streak::default()
            };
        }
        let healthy = target.instance.healthy;
        if verdict != Verdict::Healthy {
            debug!(service = %target.service, instance = %target.instance.ip, port = target.instance.port, ?verdict, "probe failed");
        }
        let flip = match verdict {
            Verdict::Healthy => {
                streak.failed = 0;
                streak.ok = streak.ok.saturating_add(1);
                (!healthy && streak.ok >= check_times)
                    .then(|| (true, format!("{} consecutive successful probes", streak.ok)))
            }
            Verdict::Failed(reason) => {
                streak.ok = 0;
                streak.failed = streak.failed.saturating_add(1);
                (healthy && streak.failed >= check_times).then(|| {
                    (
                        false,
                        format!(
                            "{} consecutive failed probes, last: {reason}",
                            streak.failed
                        ),
                    )
                })
            }
            Verdict::FailedNow(reason) => {
                streak.ok = 0;
                streak.failed = streak.failed.saturating_add(1);
                healthy.then_some((false, reason))
            }
        };
        let Some((to, reason)) = flip else {
            return;
        };
        let command = NamingCommand::SetProbedHealth {
            service: target.service.clone(),
            client: target.instance.key(),
            cluster: target.instance.cluster.to_string(),
            checker: checker.clone(),
            healthy: to,
        };
        let proof = AccessProof::system("probe");
        if let Ok(Applied::Health(true)) = self.dispatcher.submit(command.clone(), &proof).await {
            self.share([command]);
            info!(
                service = %target.service,
                instance = %target.instance.instance_id(&target.service),
                checker = target.cluster.health_checker.type_name(),
                reason = %reason,
                "instance {} by health check",
                if to { "healthy" } else { "unhealthy" }
            );
        }
    }
}

/// [`probe`] as a boxed `Send` future that owns its target and carries its round, so
/// a set of them can be driven by a spawned task.
fn probe_owned(round: u64, target: ProbeTarget, policy: Arc<HealthSettings>) -> Probing {
    Box::pin(async move {
        let verdict = probe(&target, &policy).await;
        (round, target, verdict)
    })
}

/// Probes one target with its cluster's checker, within `policy.timeout_ms`, and only
/// at an address `policy` allows ([`HealthSettings::may_probe`]): an instance whose
/// address is outside fails at once, without any packet sent; a host name is resolved
/// once and the probe goes to the first allowed address it has (never resolved again
/// for the same probe, so a name that changes its answers cannot steer it elsewhere).
pub async fn probe(target: &ProbeTarget, policy: &HealthSettings) -> Verdict {
    let timeout = Duration::from_millis(policy.timeout_ms);
    let port = target.cluster.probe_port(target.instance.port);
    let host = &*target.instance.ip;
    // Each checker's future is boxed as `Send` where its lifetimes are concrete: the
    // compiler cannot otherwise prove `Send` for the sqlx calls inside for every
    // lifetime, which `buffer_unordered` in a spawned task asks of it.
    type Probe<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Verdict> + Send + 'a>>;
    let work: Probe<'_> = Box::pin(async move {
        let ip = match allowed_address(host, target.instance.addr, port, policy).await {
            Ok(ip) => ip,
            Err(verdict) => return verdict,
        };
        let work: Probe<'_> = match &target.cluster.health_checker {
            HealthChecker::Tcp => Box::pin(probe_tcp(SocketAddr::new(ip, port))),
            HealthChecker::Http {
                path,
                headers,
                expected_response_code,
            } => Box::pin(probe_http(
                host,
                SocketAddr::new(ip, port),
                target.instance.addr.is_none(),
                path,
                headers,
                *expected_response_code,
            )),
            HealthChecker::Mysql { user, pwd, cmd } => Box::pin(probe_mysql(
                SocketAddr::new(ip, port),
                user,
                pwd,
                cmd,
                timeout,
            )),
            HealthChecker::None => Box::pin(std::future::ready(Verdict::Healthy)),
        };
        work.await
    });
    match tokio::time::timeout(timeout, work).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::Failed(format!(
            "no answer from {host}:{port} within {} ms",
            timeout.as_millis()
        )),
    }
}

/// The address a probe of `host` goes to: its IP, or the first address its name
/// resolves to that `policy` allows. A refusal fails the probe at once, with the
/// reason.
async fn allowed_address(
    host: &str,
    addr: Option<IpAddr>,
    port: u16,
    policy: &HealthSettings,
) -> Result<IpAddr, Verdict> {
    let refused = |ip: IpAddr| {
        Verdict::FailedNow(format!(
            "probe target {ip} is outside health.allow_targets or inside health.deny_targets"
        ))
    };
    if let Some(ip) = addr {
        let ip = ip.to_canonical();
        return if policy.may_probe(ip) {
            Ok(ip)
        } else {
            Err(refused(ip))
        };
    }
    let resolved: Vec<IpAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.map(|a| a.ip().to_canonical()).collect(),
        Err(e) => return Err(Verdict::Failed(format!("cannot resolve {host}: {e}"))),
    };
    match resolved.iter().find(|ip| policy.may_probe(**ip)) {
        Some(ip) => Ok(*ip),
        None => match resolved.first() {
            Some(ip) => Err(refused(*ip)),
            None => Err(Verdict::Failed(format!("cannot resolve {host}"))),
        },
    }
}

/// Opens a TCP connection to `target`. Closing it sends a reset (linger 0), so a
/// probe leaves no TIME_WAIT socket behind.
async fn connect(target: SocketAddr) -> Result<TcpStream, Verdict> {
    match TcpStream::connect(target).await {
        Ok(stream) => {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            Ok(stream)
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Verdict::FailedNow(
            format!("TCP connection to {target} refused"),
        )),
        Err(e) => Err(Verdict::Failed(format!(
            "TCP connection to {target} failed: {e}"
        ))),
    }
}

async fn probe_tcp(target: SocketAddr) -> Verdict {
    match connect(target).await {
        Ok(_) => Verdict::Healthy,
        Err(verdict) => verdict,
    }
}

/// `GET http://host:port<path>` with the checker's headers (only those
/// [`probe_headers`] allows); healthy on the expected status. As Nacos: 503 and 302
/// count as failures, other statuses fail at once. `Host` names the instance's host
/// name when `by_name`, else its address.
async fn probe_http(
    host: &str,
    target: SocketAddr,
    by_name: bool,
    path: &str,
    headers: &str,
    expected: u16,
) -> Verdict {
    use http_body_util::Empty;
    use hyper::body::Bytes;

    let stream = match connect(target).await {
        Ok(stream) => stream,
        Err(verdict) => return verdict,
    };
    let authority = if by_name {
        format!("{host}:{}", target.port())
    } else {
        target.to_string()
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, &authority)
        .header(hyper::header::USER_AGENT, "Nacre-Health-Check")
        .header(hyper::header::CONNECTION, "close");
    for (name, value) in probe_headers(headers).unwrap_or_default() {
        request = request.header(name, value);
    }
    let request = match request.body(Empty::<Bytes>::new()) {
        Ok(request) => request,
        Err(e) => return Verdict::Failed(format!("bad HTTP check request: {e}")),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return Verdict::Failed(format!("HTTP to {authority} failed: {e}")),
        };
    // Drive the connection while waiting for the response head. With `Connection:
    // close` the connection may finish first, having delivered the response.
    tokio::pin!(connection);
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = tokio::select! {
        biased;
        response = &mut send => response,
        _ = &mut connection => send.await,
    };
    let status = match response {
        Ok(response) => response.status().as_u16(),
        Err(e) => return Verdict::Failed(format!("HTTP to {authority} failed: {e}")),
    };
    if status == expected {
        Verdict::Healthy
    } else if status == 503 || status == 302 {
        Verdict::Failed(format!("HTTP status {status}, expected {expected}"))
    } else {
        Verdict::FailedNow(format!("HTTP status {status}, expected {expected}"))
    }
}

/// Logs in to MySQL/MariaDB on the instance and runs `cmd` (default `SELECT 1`). A
/// `cmd` that reads `read_only` and finds `ON` marks a replica: a failure, as Nacos.
///
/// `cmd` was checked to be one read-only statement when the checker was set; it is
/// checked again here and runs as a prepared statement (the server refuses to prepare
/// more than one statement, whatever the connection allows), inside `START
/// TRANSACTION READ ONLY` (so even a function with side effects cannot write), under a
/// server-side time limit of `timeout` (MariaDB `max_statement_time`, MySQL
/// `max_execution_time`), and the transaction is rolled back.
async fn probe_mysql(
    target: SocketAddr,
    user: &str,
    pwd: &str,
    cmd: &str,
    timeout: Duration,
) -> Verdict {
    use sqlx::{ConnectOptions, Connection, Row};

    let cmd = if cmd.trim().is_empty() {
        "SELECT 1"
    } else {
        cmd
    };
    if let Err(why) = crate::model::health::read_only_statement(cmd) {
        return Verdict::Failed(format!("MySQL command refused: it {why}"));
    }
    let (host, port) = (target.ip().to_string(), target.port());
    let mut options = sqlx::mysql::MySqlConnectOptions::new()
        .host(&host)
        .port(port)
        .username(user)
        .statement_cache_capacity(0)
        .disable_statement_logging();
    // An empty password means none: sqlx would otherwise send the scramble of "".
    if !pwd.is_empty() {
        options = options.password(pwd);
    }
    let mut conn = match options.connect().await {
        Ok(conn) => conn,
        Err(sqlx::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Verdict::FailedNow(format!("MySQL connection to {host}:{port} refused"));
        }
        Err(e) => return Verdict::Failed(format!("MySQL login to {host}:{port} failed: {e}")),
    };
    // MariaDB takes seconds, MySQL milliseconds (and only for SELECT); each server
    // refuses the other's variable.
    let secs = timeout.as_secs_f64().max(0.001);
    let limited = sqlx::query(&format!("SET SESSION max_statement_time = {secs:.3}"))
        .execute(&mut conn)
        .await
        .is_ok()
        || sqlx::query(&format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis().max(1)
        ))
        .execute(&mut conn)
        .await
        .is_ok();
    if !limited {
        debug!(%host, port, "MySQL probe: no statement time limit on this server");
    }
    let verdict = match sqlx::query("START TRANSACTION READ ONLY")
        .execute(&mut conn)
        .await
    {
        Err(e) => Verdict::Failed(format!("MySQL read-only transaction refused: {e}")),
        Ok(_) => match sqlx::query(cmd).fetch_all(&mut conn).await {
            Err(e) => Verdict::Failed(format!("MySQL command failed: {e}")),
            Ok(rows) if cmd.to_ascii_lowercase().contains("read_only") => {
                let read_only = rows.iter().any(|row| {
                    row.len() >= 2
                        && row
                            .try_get_unchecked::<Vec<u8>, _>(1)
                            .is_ok_and(|v| v.eq_ignore_ascii_case(b"ON"))
                });
                if read_only {
                    Verdict::Failed("MySQL is read-only (a replica)".into())
                } else {
                    Verdict::Healthy
                }
            }
            Ok(_) => Verdict::Healthy,
        },
    };
    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    let _ = conn.close().await;
    debug!(%host, port, ?verdict, "MySQL probe");
    verdict
}
