//! The aggregators' commands, as `tally-server dap …` runs them: `leader` and `helper` (one
//! process per store, each with its own store and keys), `collector-keygen`, `provision`,
//! `import-task` and `rotate-key`.
//!
//! The definitions are here, with the aggregators; `tally-server`'s command line mounts
//! [`DapCommand`] under `dap` and hands [`run`] what only it knows: how a chart config becomes
//! a layout and the aggregators' settings ([`FromCharts`], for `provision --charts`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tally_dap::layout::Layout;
use tally_service::serve::LimitArgs;
use tally_service::store::Durability;

use crate::common::unix_now;
use crate::keys;
use crate::leader::LeaderOptions;
use crate::provision::{self, CollectorPublic, HelperTarget, TaskSettings};
use crate::server::{self, ServeOptions};
use crate::store::Store;
use crate::task::{AggregatorRole, TaskFile};

/// `tally-server dap …`.
#[derive(Debug, clap::Subcommand)]
pub enum DapCommand {
    /// Serve as the DAP leader of every task in the store: take clients' reports, aggregate
    /// them with the helper, answer the collector.
    Leader(LeaderArgs),
    /// Serve as the DAP helper of every task in the store: prepare the leader's aggregation
    /// jobs, hand over a batch's share once.
    Helper(ServeArgs),
    /// Make a collector's HPKE key pair and bearer token.
    CollectorKeygen {
        /// The private credential (Janus's collector credential JSON), created mode 0600.
        #[arg(long)]
        credential_out: PathBuf,
        /// The public part for the aggregators: HPKE config and token digest.
        #[arg(long)]
        public_out: PathBuf,
    },
    /// Create a task on both aggregators and write the upload config's aggregation section.
    Provision(ProvisionArgs),
    /// Install a helper task file made by `provision --helper-task-out`.
    ImportTask {
        /// The helper's store: a directory or s3://bucket/prefix.
        #[arg(long)]
        store: String,
        /// The task file.
        #[arg(long)]
        task: PathBuf,
    },
    /// Make a new current HPKE key; older keys stay accepted for the grace period. A running
    /// aggregator picks it up within --key-reload-secs.
    RotateKey {
        /// The aggregator's store: a directory or s3://bucket/prefix.
        #[arg(long)]
        store: String,
        /// Days the previous keys stay accepted (at least twice a client's one-day cache).
        #[arg(long, default_value_t = 7)]
        grace_days: u64,
    },
}

/// How either aggregator serves.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The aggregator's store: a directory (created 0700 if missing) or s3://bucket/prefix
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL from the
    /// environment). One process serves a store: a second one is refused, or waits with
    /// --standby.
    #[arg(long)]
    pub store: String,
    /// Stand by instead of refusing when another process serves the store: wait, without
    /// listening or writing, until that process stops (on S3: until its lease is released or
    /// has gone --lease-secs unrenewed), then take over and serve. Run replicas this way behind
    /// a load balancer that checks the port.
    #[arg(long)]
    pub standby: bool,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8440")]
    pub listen: SocketAddr,
    /// Write the bound address here once listening (for --listen with port 0).
    #[arg(long)]
    pub address_file: Option<PathBuf>,
    /// Local store only: answer once written to disk (`disk`, survives power loss) or once in
    /// the page cache (`process-crash`, survives a killed process, not a power cut).
    #[arg(long, value_enum, default_value_t = Durability::Disk)]
    pub durability: Durability,
    /// Seconds between re-reads of the HPKE keys (a rotation needs no restart).
    #[arg(long, default_value_t = 60)]
    pub key_reload_secs: u64,
    /// S3 store only: seconds the store's lease lasts unrenewed. A restart (or a standby) after
    /// a crash waits this long for the dead process's lease to lapse; a process paused longer
    /// loses it and stops.
    #[arg(long, default_value_t = 30.0)]
    pub lease_secs: f64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// How the leader serves and batches its work.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Most reports per aggregation job.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub job_size: u64,
    /// Aggregation jobs in flight per task.
    #[arg(long, default_value_t = 2)]
    pub jobs_in_flight: usize,
    /// Milliseconds reports wait for more to fill an aggregation job.
    #[arg(long, default_value_t = 250)]
    pub job_linger_ms: u64,
}

/// `dap provision`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    /// The leader's store: a directory or s3://bucket/prefix.
    #[arg(long)]
    pub leader_store: String,
    /// The helper's store, when this machine can write it.
    #[arg(
        long,
        conflicts_with = "helper_task_out",
        required_unless_present = "helper_task_out"
    )]
    pub helper_store: Option<String>,
    /// Write the helper's task file here instead, for its operator's `import-task`.
    #[arg(long)]
    pub helper_task_out: Option<PathBuf>,
    /// The collector's public file (from `collector-keygen`).
    #[arg(long)]
    pub collector_public: PathBuf,
    /// The chart config: its [aggregation] table names the aggregators, the minimum batch size
    /// and the version buckets, and the layout is the one `config generate` derives from its
    /// charts; the section is written where the table's `section` says.
    #[arg(long, conflicts_with_all = ["layout", "leader_url", "helper_url", "min_batch_size", "time_precision"])]
    pub charts: Option<PathBuf>,
    /// The measurement layout (JSON), without --charts.
    #[arg(long, required_unless_present = "charts")]
    pub layout: Option<PathBuf>,
    /// The leader's public base URL, without --charts.
    #[arg(long, required_unless_present = "charts")]
    pub leader_url: Option<String>,
    /// The helper's public base URL, without --charts.
    #[arg(long, required_unless_present = "charts")]
    pub helper_url: Option<String>,
    /// Fewest reports a batch is collected with (the publication threshold), without --charts.
    #[arg(long, required_unless_present = "charts")]
    pub min_batch_size: Option<u64>,
    /// Seconds report times are rounded down to, without --charts (default a day).
    #[arg(long)]
    pub time_precision: Option<u64>,
    /// Reports older than this many days are refused (the replay horizon).
    #[arg(long, default_value_t = 35)]
    pub report_expiry_days: u64,
    /// Seconds a report's time may be in the future.
    #[arg(long, default_value_t = 3600)]
    pub clock_skew_secs: u64,
    /// Where to write the config section (JSON); with --charts, the table's `section` by
    /// default.
    #[arg(long, required_unless_present = "charts")]
    pub config_out: Option<PathBuf>,
}

/// What a chart config gives `provision`: the layout its charts need and the settings of its
/// `[aggregation]` table.
#[derive(Debug, Clone)]
pub struct FromCharts {
    pub layout: Layout,
    pub leader_url: String,
    pub helper_url: String,
    pub min_batch_size: u64,
    pub time_precision: u64,
    /// Where the section goes (the table's `section`, relative to the chart file).
    pub section: PathBuf,
}

/// Runs a `dap` command. `from_charts` reads a chart config for `provision --charts`.
pub fn run(
    command: DapCommand,
    from_charts: &dyn Fn(&Path) -> anyhow::Result<FromCharts>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(run_async(command, from_charts));
    // Blocking reads of a store that stopped answering do not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

fn serve_options(role: AggregatorRole, args: ServeArgs, leader: LeaderOptions) -> ServeOptions {
    ServeOptions {
        role,
        store: args.store,
        listen: args.listen,
        address_file: args.address_file,
        durability: args.durability,
        key_reload: Duration::from_secs(args.key_reload_secs.max(1)),
        limits: args.limits.limits(),
        body_timeout: args.limits.body_timeout(),
        lease_ttl: tally_service::serve::seconds(args.lease_secs),
        standby: args.standby,
        leader,
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn run_async(
    command: DapCommand,
    from_charts: &dyn Fn(&Path) -> anyhow::Result<FromCharts>,
) -> anyhow::Result<()> {
    match command {
        DapCommand::Leader(args) => {
            let leader = LeaderOptions {
                job_size: args.job_size as usize,
                jobs_in_flight: args.jobs_in_flight.max(1),
                job_linger: Duration::from_millis(args.job_linger_ms),
                ..LeaderOptions::default()
            };
            server::serve(serve_options(AggregatorRole::Leader, args.serve, leader)).await
        }
        DapCommand::Helper(args) => {
            server::serve(serve_options(
                AggregatorRole::Helper,
                args,
                LeaderOptions::default(),
            ))
            .await
        }
        DapCommand::CollectorKeygen {
            credential_out,
            public_out,
        } => {
            let (credential, public) = provision::collector_keygen();
            provision::write_private(&credential_out, &serde_json::to_vec_pretty(&credential)?)?;
            std::fs::write(&public_out, serde_json::to_vec_pretty(&public)?)
                .with_context(|| format!("cannot write {}", public_out.display()))?;
            println!(
                "wrote the collector's credential to {} (keep it private) and its public part to {} (for `provision --collector-public`)",
                credential_out.display(),
                public_out.display()
            );
            Ok(())
        }
        DapCommand::Provision(args) => provision_command(args, from_charts).await,
        DapCommand::ImportTask { store, task } => {
            let file: TaskFile = serde_json::from_slice(&read(&task)?)
                .with_context(|| format!("{} is not a task file", task.display()))?;
            provision::install(&store, &file).await
        }
        DapCommand::RotateKey { store, grace_days } => {
            let store = Store::open(&store, Durability::Disk)?;
            let id = keys::rotate(&store, unix_now(), grace_days * 86_400).await?;
            println!("new HPKE config id {id}");
            Ok(())
        }
    }
}

async fn provision_command(
    args: ProvisionArgs,
    from_charts: &dyn Fn(&Path) -> anyhow::Result<FromCharts>,
) -> anyhow::Result<()> {
    let helper = match (args.helper_store, args.helper_task_out) {
        (Some(store), None) => HelperTarget::Store(store),
        (None, Some(file)) => HelperTarget::File(file),
        _ => anyhow::bail!("give --helper-store or --helper-task-out"),
    };
    let collector: CollectorPublic = serde_json::from_slice(&read(&args.collector_public)?)
        .with_context(|| {
            format!(
                "{} is not a collector public file (make one with `tally-server dap collector-keygen`)",
                args.collector_public.display()
            )
        })?;
    let (layout, leader_url, helper_url, min_batch_size, time_precision, config_out) =
        match &args.charts {
            Some(charts) => {
                let from = from_charts(charts)?;
                (
                    from.layout,
                    from.leader_url,
                    from.helper_url,
                    from.min_batch_size,
                    from.time_precision,
                    args.config_out.unwrap_or(from.section),
                )
            }
            None => {
                let missing = |what: &str| anyhow::anyhow!("give {what}, or --charts");
                let layout_path = args.layout.ok_or_else(|| missing("--layout"))?;
                let layout = Layout::from_json(&read(&layout_path)?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", layout_path.display()))?;
                (
                    layout,
                    args.leader_url.ok_or_else(|| missing("--leader-url"))?,
                    args.helper_url.ok_or_else(|| missing("--helper-url"))?,
                    args.min_batch_size
                        .ok_or_else(|| missing("--min-batch-size"))?,
                    args.time_precision.unwrap_or(86_400),
                    args.config_out.ok_or_else(|| missing("--config-out"))?,
                )
            }
        };
    let provisioned = provision::provision(
        &args.leader_store,
        &helper,
        &collector,
        layout,
        &TaskSettings {
            leader_url,
            helper_url,
            time_precision,
            min_batch_size,
            report_expiry_age: args.report_expiry_days * 86_400,
            tolerable_clock_skew: args.clock_skew_secs,
        },
    )
    .await?;
    let mut json = serde_json::to_vec_pretty(&provisioned.config)?;
    json.push(b'\n');
    std::fs::write(&config_out, json)
        .with_context(|| format!("cannot write {}", config_out.display()))?;
    println!("{}", provisioned.task_id);
    eprintln!(
        "task {} on both aggregators ({} entries); its section is in {}{}",
        provisioned.task_id,
        provisioned.config.layout.len(),
        config_out.display(),
        if args.charts.is_some() {
            "; `tally-server config generate` puts it into the upload config"
        } else {
            ""
        }
    );
    Ok(())
}
