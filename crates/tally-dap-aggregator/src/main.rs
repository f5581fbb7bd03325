//! `tally-dap-aggregator`: run a DAP-09 leader or helper, provision tasks, rotate keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tally_dap::layout::Layout;
use tally_dap_aggregator::keys;
use tally_dap_aggregator::leader::LeaderOptions;
use tally_dap_aggregator::provision::{self, CollectorPublic, HelperTarget, TaskSettings};
use tally_dap_aggregator::server::{self, ServeOptions, unix_now};
use tally_dap_aggregator::store::{Durability, Store};
use tally_dap_aggregator::task::{AggregatorRole, TaskFile};

#[derive(Parser)]
#[command(
    name = "tally-dap-aggregator",
    version,
    about = "tally's DAP-09 aggregators (leader and helper) for private aggregation with Prio3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Leader,
    Helper,
}

#[derive(Clone, Copy, ValueEnum)]
enum DurabilityArg {
    /// Synced to disk before an upload is answered (survives power loss).
    Disk,
    /// In the page cache (survives the process being killed, not the machine).
    ProcessCrash,
}

#[derive(Subcommand)]
enum Command {
    /// Serve as the leader or the helper of every task in the store.
    Serve {
        #[arg(long, value_enum)]
        role: Role,
        /// The aggregator's store: a directory (created if missing) that only this aggregator uses.
        #[arg(long)]
        store: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8440")]
        listen: SocketAddr,
        /// Write the bound address here once listening (for --listen with port 0).
        #[arg(long)]
        address_file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "disk")]
        durability: DurabilityArg,
        /// Seconds between re-reads of the HPKE keys (a rotation needs no restart).
        #[arg(long, default_value_t = 60)]
        key_reload_secs: u64,
        /// Leader: most reports per aggregation job.
        #[arg(long, default_value_t = 1000)]
        job_size: usize,
        /// Leader: aggregation jobs in flight per task.
        #[arg(long, default_value_t = 2)]
        jobs_in_flight: usize,
        /// Leader: milliseconds reports wait for more to fill an aggregation job.
        #[arg(long, default_value_t = 250)]
        job_linger_ms: u64,
    },
    /// Make a collector's HPKE key pair and token.
    CollectorKeygen {
        /// The private credential (Janus's collector credential JSON), created mode 0600.
        #[arg(long)]
        credential_out: PathBuf,
        /// The public part for the aggregators: HPKE config and token digest.
        #[arg(long)]
        public_out: PathBuf,
    },
    /// Create a task on both aggregators and write the upload config's aggregation section.
    Provision {
        #[arg(long)]
        leader_store: PathBuf,
        /// The helper's store, when it is on this machine.
        #[arg(long, conflicts_with = "helper_task_out")]
        helper_store: Option<PathBuf>,
        /// Write the helper's task file here instead, for its operator's `import-task`.
        #[arg(long)]
        helper_task_out: Option<PathBuf>,
        /// The leader's public base URL.
        #[arg(long)]
        leader_url: String,
        /// The helper's public base URL.
        #[arg(long)]
        helper_url: String,
        /// The collector's public file (from `collector-keygen`).
        #[arg(long)]
        collector_public: PathBuf,
        /// The measurement layout (JSON, `tally_dap::layout::Layout`).
        #[arg(long)]
        layout: PathBuf,
        /// Fewest reports a batch is collected with: the publication threshold.
        #[arg(long)]
        min_batch_size: u64,
        /// Seconds; report times are rounded down to it.
        #[arg(long, default_value_t = 86_400)]
        time_precision: u64,
        /// Reports older than this many days are refused (the replay horizon).
        #[arg(long, default_value_t = 35)]
        report_expiry_days: u64,
        /// Seconds a report's time may be in the future.
        #[arg(long, default_value_t = 3600)]
        clock_skew_secs: u64,
        /// Where to write the config section (JSON).
        #[arg(long)]
        config_out: PathBuf,
    },
    /// Install a helper task file made by `provision --helper-task-out`.
    ImportTask {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        task: PathBuf,
    },
    /// Make a new current HPKE key; older keys stay accepted for the grace period.
    RotateKey {
        #[arg(long)]
        store: PathBuf,
        /// Days the previous keys stay accepted (at least twice a client's one-day cache).
        #[arg(long, default_value_t = 7)]
        grace_days: u64,
    },
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            role,
            store,
            listen,
            address_file,
            durability,
            key_reload_secs,
            job_size,
            jobs_in_flight,
            job_linger_ms,
        } => {
            server::serve(ServeOptions {
                role: match role {
                    Role::Leader => AggregatorRole::Leader,
                    Role::Helper => AggregatorRole::Helper,
                },
                store,
                listen,
                address_file,
                durability: match durability {
                    DurabilityArg::Disk => Durability::Disk,
                    DurabilityArg::ProcessCrash => Durability::ProcessCrash,
                },
                key_reload: Duration::from_secs(key_reload_secs.max(1)),
                leader: LeaderOptions {
                    job_size: job_size.max(1),
                    jobs_in_flight: jobs_in_flight.max(1),
                    job_linger: Duration::from_millis(job_linger_ms),
                    ..LeaderOptions::default()
                },
            })
            .await
        }
        Command::CollectorKeygen {
            credential_out,
            public_out,
        } => {
            let (credential, public) = provision::collector_keygen();
            provision::write_private(&credential_out, &serde_json::to_vec_pretty(&credential)?)?;
            std::fs::write(&public_out, serde_json::to_vec_pretty(&public)?)
                .with_context(|| format!("cannot write {}", public_out.display()))?;
            Ok(())
        }
        Command::Provision {
            leader_store,
            helper_store,
            helper_task_out,
            leader_url,
            helper_url,
            collector_public,
            layout,
            min_batch_size,
            time_precision,
            report_expiry_days,
            clock_skew_secs,
            config_out,
        } => {
            let helper = match (helper_store, helper_task_out) {
                (Some(dir), None) => HelperTarget::Store(dir),
                (None, Some(file)) => HelperTarget::File(file),
                _ => anyhow::bail!("give --helper-store or --helper-task-out"),
            };
            let collector: CollectorPublic = serde_json::from_slice(&read(&collector_public)?)
                .with_context(|| {
                    format!(
                        "{} is not a collector public file (make one with collector-keygen)",
                        collector_public.display()
                    )
                })?;
            let layout = Layout::from_json(&read(&layout)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", layout.display()))?;
            let provisioned = provision::provision(
                &leader_store,
                &helper,
                &collector,
                layout,
                &TaskSettings {
                    leader_url,
                    helper_url,
                    time_precision,
                    min_batch_size,
                    report_expiry_age: report_expiry_days * 86_400,
                    tolerable_clock_skew: clock_skew_secs,
                },
            )
            .await?;
            std::fs::write(&config_out, serde_json::to_vec_pretty(&provisioned.config)?)
                .with_context(|| format!("cannot write {}", config_out.display()))?;
            println!("{}", provisioned.task_id);
            Ok(())
        }
        Command::ImportTask { store, task } => {
            let file: TaskFile = serde_json::from_slice(&read(&task)?)
                .with_context(|| format!("{} is not a task file", task.display()))?;
            provision::install(&store, &file).await
        }
        Command::RotateKey { store, grace_days } => {
            let store = Store::open(&store, Durability::Disk)?;
            let id = keys::rotate(&store, unix_now(), grace_days * 86_400).await?;
            println!("new HPKE config id {id}");
            Ok(())
        }
    }
}
