//! `tally-server`: the collector's command line (`serve`, `keygen`, `sign`, `plan`,
//! `config generate`, `export`, `import`), the DAP aggregators of private aggregation (`dap
//! leader|helper|collector-keygen|provision|import-task|rotate-key`, from
//! `tally-dap-aggregator`), and its shell completions and man page (`completions`, `man`),
//! generated from the same definition.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tally_server::clock::Clock;
use tally_server::serve::LimitArgs;
use tally_server::signing::{self, PASSWORD_ENV};
use tally_server::store::{Durability, Store};
use tally_server::{AppState, DEFAULT_RETENTION_WEEKS, DEFAULT_THRESHOLD, Options};

#[derive(Parser)]
#[command(
    name = "tally-server",
    version,
    about = "The tally collector: serves the signed upload config, accepts and merges reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the signed config, accept uploads, publish aggregates.
    Serve(ServeArgs),
    /// Write a new minisign key pair (password from TALLY_SERVER_KEY_PASSWORD, or --no-password).
    Keygen {
        /// Where to write the public key (give it to clients to pin).
        #[arg(long, short = 'p', default_value = "tally-server.pub")]
        public_key: PathBuf,
        /// Where to write the secret key (keep it off the server).
        #[arg(long, short = 's', default_value = "tally-server.key")]
        secret_key: PathBuf,
        /// Write the secret key unencrypted (like `minisign -W`), for automated signing.
        #[arg(long)]
        no_password: bool,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Sign an upload config, writing CONFIG.minisig beside it (prehashed minisign signature).
    Sign {
        /// The config to sign; it must be a valid upload config.
        config: PathBuf,
        /// The secret key (password from TALLY_SERVER_KEY_PASSWORD if it has one).
        #[arg(long, short = 's', default_value = "tally-server.key")]
        secret_key: PathBuf,
    },
    /// Compute the sample rate that gives a wanted margin of error.
    Plan {
        /// Wanted half-width of every share's interval, e.g. 0.02 for ±2 points.
        #[arg(long)]
        margin: f64,
        /// Confidence level of that interval.
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        /// Reports per week you expect at sample rate 1 (opted-in installations).
        #[arg(long)]
        expected_reports: u64,
    },
    /// The upload config, from the chart config (`config generate`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write the published aggregates of the store's weeks, as `/data/` serves them.
    Export(tally_server::open_data::ExportArgs),
    /// Store report files directly (no config or age checks), e.g. `tally demo`'s simulated
    /// weeks.
    Import(tally_server::import::ImportArgs),
    /// Private aggregation (DAP-09 with Prio3): run the leader or the helper, make the
    /// collector's key, provision a task, rotate an aggregator's key.
    #[command(subcommand)]
    Dap(tally_dap_aggregator::cli::DapCommand),
    /// Print the shell completion script for SHELL.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff: `tally-server man | man -l -`), or write every page with --dir.
    Man {
        /// Write every page (tally-server.1 and one per subcommand) into this directory, e.g.
        /// ~/.local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Write the upload config the charts of CHARTS need: their counters and nothing else, rates
    /// planned from each chart's margin, version one above the last one served. Sign it with
    /// `tally-server sign` before serving it.
    Generate(tally_server::charts_config::GenerateArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Storage: a directory, or s3://bucket/prefix (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION, AWS_ENDPOINT_URL from the environment).
    #[arg(long)]
    store: String,
    /// The signed upload config to serve; its signature is CONFIG.minisig beside it.
    #[arg(long)]
    config: PathBuf,
    /// The collector's public key (a .pub file, or its base64 line): the config must verify.
    #[arg(long)]
    key: String,
    /// The chart config the served config was generated from: the public /config page shows
    /// its titles, questions and proposals. The server refuses a config not generated from it.
    #[arg(long)]
    charts: Option<PathBuf>,
    /// Publication threshold: anything seen in fewer distinct reports is withheld.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    threshold: u64,
    #[command(flatten)]
    limits: LimitArgs,
    /// Milliseconds between checkpoints of the merged aggregates (made when reports arrived
    /// since the last one): a restart re-reads at most the reports of this long.
    #[arg(long, default_value_t = 5000)]
    flush_ms: u64,
    /// Local store only: answer uploads once on disk (`disk`, survives power loss) or once in the
    /// page cache (`process-crash`, survives a killed server, not a power cut).
    #[arg(long, value_enum, default_value_t = Durability::Disk)]
    durability: Durability,
    /// Seconds between re-reads of the store (reports written by other servers; each re-read
    /// lists only what is new since the last checkpoint).
    #[arg(long, default_value_t = 5)]
    reconcile_secs: u64,
    /// Weeks raw reports are kept after their week is merged (closed to uploads); the merged
    /// aggregates are kept.
    #[arg(long, default_value_t = DEFAULT_RETENTION_WEEKS)]
    retention_weeks: u32,
    /// Private aggregation: the collector's credential (`dap collector-keygen
    /// --credential-out`). With it, and a config with an `aggregation` section, the server
    /// collects every ended week from the leader and publishes the aggregate; without it, it
    /// publishes only what another server on the store collected.
    #[arg(long, value_name = "FILE")]
    dap_credential: Option<PathBuf>,
    /// Private aggregation: days after its Monday a week is collected (at least 7). The default
    /// waits until the week is closed to uploads, so that no late report is refused.
    #[arg(long, default_value_t = tally_server::dap_collect::DEFAULT_COLLECT_AFTER_DAYS)]
    collect_after_days: u32,
    /// Private aggregation: seconds between looks for weeks to collect (a week with fewer
    /// reports than the minimum batch size is tried again then).
    #[arg(long, default_value_t = tally_server::dap_collect::DEFAULT_COLLECT_EVERY_SECS)]
    collect_every_secs: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Keygen {
            public_key,
            secret_key,
            no_password,
            force,
        } => keygen(&public_key, &secret_key, no_password, force),
        Command::Sign { config, secret_key } => {
            signing::sign_config(&config, &secret_key, password_from_env()).map(|sig| {
                println!("signed {} -> {}", config.display(), sig.display());
            })
        }
        Command::Plan {
            margin,
            confidence,
            expected_reports,
        } => tally_server::plan::plan(margin, confidence, expected_reports).map(|plan| {
            print!("{}", plan.explain());
        }),
        Command::Config(ConfigCommand::Generate(args)) => {
            tally_server::charts_config::generate_command(&args)
        }
        Command::Export(args) => tally_server::open_data::export_command(&args),
        Command::Import(args) => tally_server::import::import_command(&args),
        Command::Dap(command) => tally_dap_aggregator::cli::run(
            command,
            &tally_server::charts_config::aggregation_from_charts,
        ),
        Command::Completions { shell } => {
            // Generated whole before it is written: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tally-server", &mut script);
            if shell == clap_complete::Shell::Bash {
                script = bash_nested_fix(script);
            }
            write_stdout(&script)
        }
        Command::Man { dir: Some(dir) } => std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir))
            .with_context(|| format!("cannot write the man pages in {}", dir.display()))
            .map(|()| {
                println!(
                    "Wrote tally-server.1 and a page per subcommand to {}.",
                    dir.display()
                );
            }),
        Command::Man { dir: None } => {
            let mut page = Vec::new();
            // As `--dir` writes it: no page for `help`, which the pages themselves are.
            clap_mangen::Man::new(Cli::command().disable_help_subcommand(true))
                .render(&mut page)
                .map_err(anyhow::Error::from)
                .and_then(|()| write_stdout(&page))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap_complete's bash script names a hyphenated binary's subcommand states two ways
/// (`tally__server__subcmd__dap` where it tracks the words typed, `tally__subcmd__server__…`
/// where it matches them), so nothing below the first level completes (clap-rs/clap#6421).
/// One spelling for both makes `tally-server dap le<TAB>` complete.
fn bash_nested_fix(script: Vec<u8>) -> Vec<u8> {
    String::from_utf8(script)
        .map(|text| {
            text.replace("tally__subcmd__server", "tally__server")
                .into_bytes()
        })
        .unwrap_or_else(|e| e.into_bytes())
}

/// Writes `bytes` to stdout; a closed pipe (`tally-server man | head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn password_from_env() -> Option<String> {
    tally_env::var_os(PASSWORD_ENV)
        .and_then(|p| p.into_string().ok())
        .filter(|p| !p.is_empty())
}

fn keygen(
    public_key: &Path,
    secret_key: &Path,
    no_password: bool,
    force: bool,
) -> anyhow::Result<()> {
    let password = match (password_from_env(), no_password) {
        (Some(_), true) => {
            anyhow::bail!("{PASSWORD_ENV} is set but --no-password was given; choose one")
        }
        (None, false) => anyhow::bail!(
            "set {PASSWORD_ENV} to encrypt the secret key, or pass --no-password to write it unencrypted"
        ),
        (password, _) => password,
    };
    let id = signing::keygen(public_key, secret_key, password, force)?;
    println!("key id {id}");
    println!("public key: {} (clients pin this)", public_key.display());
    println!(
        "secret key: {} (sign configs with it; keep it off the server)",
        secret_key.display()
    );
    Ok(())
}

/// The config to serve, as read and checked before the store is opened.
struct SignedConfig {
    public_key: minisign_verify::PublicKey,
    json: Vec<u8>,
    signature: Vec<u8>,
    charts: Option<tally_server::charts_config::ChartsFile>,
}

/// Reads the public key, the config and its signature, and the chart config if one is given;
/// checks that the config was generated from the chart config and is signed by the key.
fn read_signed_config(args: &ServeArgs) -> anyhow::Result<SignedConfig> {
    let key_text = if Path::new(&args.key).exists() {
        std::fs::read_to_string(&args.key)
            .with_context(|| format!("cannot read the public key {}", args.key))?
    } else {
        args.key.clone()
    };
    let public_key = signing::parse_public_key(&key_text)?;
    let json = std::fs::read(&args.config)
        .with_context(|| format!("cannot read the config {}", args.config.display()))?;
    let sig_path = signing::signature_path(&args.config);
    let signature = std::fs::read(&sig_path).with_context(|| {
        format!(
            "cannot read the config signature {}; create it with `tally-server sign`",
            sig_path.display()
        )
    })?;
    let charts = args
        .charts
        .as_deref()
        .map(tally_server::charts_config::ChartsFile::read)
        .transpose()?;
    if let Some(charts) = &charts {
        let served = tally_protocol::UploadConfig::parse(&json)
            .with_context(|| format!("the config {} does not parse", args.config.display()))?;
        tally_server::charts_config::check_served(charts, &served).with_context(|| {
            format!(
                "{} was not generated from {}",
                args.config.display(),
                args.charts.as_deref().unwrap_or(Path::new("")).display()
            )
        })?;
    }
    // Checked here, so that only the config's own faults are reported as the config's: what
    // `AppState::open` finds wrong in the store says so and names the file.
    if let Ok(signature_text) = std::str::from_utf8(&signature) {
        signing::verify_config(&json, signature_text, &public_key)
            .with_context(|| format!("refusing to serve {}", args.config.display()))?;
    }
    Ok(SignedConfig {
        public_key,
        json,
        signature,
        charts,
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let clock = Clock::from_env()?;
    let SignedConfig {
        public_key,
        json,
        signature,
        charts,
    } = read_signed_config(&args)?;
    let options = Options {
        threshold: args.threshold,
        clock,
        body_timeout: args.limits.body_timeout(),
        retention_weeks: args.retention_weeks,
    };
    let limits = args.limits.limits();
    let credential = args
        .dap_credential
        .as_deref()
        .map(tally_server::dap_collect::read_credential)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async move {
        let store = Store::open_with(&args.store, args.durability)?;
        let state =
            AppState::open(store, json.into(), signature.into(), &public_key, options).await?;
        let simulated = state
            .store()
            .get(
                &object_store::path::Path::from(tally_server::open_data::SIMULATED_KEY),
                tally_server::store::MAX_NOTE_BYTES,
            )
            .await?
            .map(|how| String::from_utf8_lossy(&how).into_owned());
        let site = tally_server::config_page::Site { charts, simulated };
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let port = listener.local_addr()?.port();
        let shutdown = tally_server::serve::shutdown_signal()?;
        let background = state.spawn_background(
            Duration::from_millis(args.flush_ms.max(10)),
            Duration::from_secs(args.reconcile_secs.max(1)),
        );
        let collecting = match &credential {
            Some(credential) => tally_server::dap_collect::WeekCollector::new(
                &state,
                credential,
                args.collect_after_days,
                Duration::from_secs(args.collect_every_secs),
            )?
            .map(|collector| tokio::spawn(collector.run())),
            None => None,
        };
        if let Some(section) = &state.served_config().aggregation {
            if collecting.is_some() {
                eprintln!(
                    "tally-server: private aggregation: collecting each week {} days after its Monday from the leader {}",
                    args.collect_after_days, section.leader
                );
            } else {
                eprintln!(
                    "tally-server: private aggregation: no --dap-credential, so this server collects no week (it publishes what another server on the store collected)"
                );
            }
        }
        // The port only: the log never holds an IP address, so it can be checked for none.
        println!("tally-server: listening on port {port}");
        tally_server::serve::serve(
            listener,
            tally_server::app_with(state.clone(), site),
            limits,
            shutdown,
            Duration::from_secs(5),
        )
        .await;
        background.abort();
        if let Some(collecting) = collecting {
            collecting.abort();
        }
        // The last checkpoint saves the next start re-reading these reports; it is bounded, so
        // that a store that stopped answering cannot keep the server from stopping.
        match tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, state.flush()).await {
            Ok(flushed) => {
                flushed.context("the last checkpoint failed (the next start reads the reports since the one before)")?;
            }
            Err(_) => anyhow::bail!(
                "the last checkpoint did not finish within {FINAL_CHECKPOINT_TIMEOUT:?} (the next start reads the reports since the one before)"
            ),
        }
        println!("tally-server: stopped");
        anyhow::Ok(())
    });
    // Blocking reads of the store still running (a store that stopped answering) do not keep
    // the process alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Longest the last checkpoint may take once the server was asked to stop.
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);
