//! The command line of a node binary: `worker --config FILE`, `validate --config FILE`,
//! `agents --config FILE` (the app as compiled), `send TOPIC --key K --value V`, and asking a
//! running node: `status`, `tables` and `table get NAME KEY`; `reset` (every node stopped).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::app::App;
use crate::config::{Config, ConfigErrors, LogConfig, LogFormat};
use crate::send::{send, SendArgs};

#[derive(Debug, Parser)]
#[command(
    name = "faust-node",
    version,
    about = "A faust-rs stream processing node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a worker: consume, process, serve /metrics, until SIGTERM or SIGINT.
    Worker {
        /// TOML config file; FAUST__<SECTION>__<KEY> variables override it.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a config file (and its environment overrides) and list every problem.
    Validate {
        /// TOML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Send one record to a topic, encoded with the topic's codecs (or --codec), and print
    /// where it landed.
    Send {
        #[command(flatten)]
        args: SendArgs,
        /// TOML config file, for the broker and the topic's codecs.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Describe the app as the config compiles it: agents, topics, sinks, tables, policies,
    /// and every topic the node needs.
    Agents {
        /// TOML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Reset the app (every node stopped): the group's offsets to the start (or end), the
    /// internal topics deleted, this node's store wiped. Refused while the group has members.
    Reset {
        /// TOML config file of the app.
        #[arg(short, long)]
        config: PathBuf,
        /// Where the offsets go.
        #[arg(long, value_enum, default_value = "earliest")]
        to: crate::reset::ResetTo,
        /// Print what would be done, and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// What a running node is doing: health, active partitions with their lag and last
    /// commit, standbys, counts. Exit code 1 when it is not healthy.
    Status {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the tables of a running node: kind, source topic, keys it holds per partition.
    Tables {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Read a running node's tables.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Print KEY's value in table NAME as JSON, from whichever node holds it (any node
    /// forwards). Exit code 1 when the key has no value.
    Get {
        /// The table.
        name: String,
        /// The key: JSON (`42`, `"42"`), or else taken as a string (`/page/1`).
        key: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// Which running node to ask.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The node's web address (host:port); default: `web.bind` of --config.
    #[arg(long)]
    node: Option<String>,
    /// The node's TOML config file (for `web.bind`).
    #[arg(short, long)]
    config: Option<PathBuf>,
}

impl NodeArgs {
    fn address(&self, app: &App) -> Result<String, String> {
        match (&self.node, &self.config) {
            (Some(n), _) => Ok(n.clone()),
            (None, Some(c)) => load(app, c).map(|c| c.web.bind),
            (None, None) => Ok(Config::default().web.bind),
        }
    }
}

/// Prints a node's answer: its body on stdout when it is 200, else the error on stderr.
fn print_answer(
    answer: Result<crate::ask::Answer, String>,
    ok: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    match answer {
        Ok(a) if a.status == 200 => {
            print!("{}", ok(&a.body));
            ExitCode::SUCCESS
        }
        Ok(a) => {
            let error = a.body["error"]
                .as_str()
                .map_or_else(|| a.body.to_string(), str::to_owned);
            eprintln!("error ({}): {error}", a.status);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

impl App {
    /// Parses the command line (`worker --config FILE`, `validate --config FILE`) and runs it.
    pub fn main(self) -> std::process::ExitCode {
        main(self, std::env::args_os())
    }

    /// As [`App::main`] with the given arguments (the first is the program name): for a node
    /// started from inside another program, such as a test harness.
    pub fn main_from<I, T>(self, args: I) -> std::process::ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        main(self, args)
    }
}

/// Exit code for a configuration that does not validate.
const BAD_CONFIG: u8 = 2;

fn load(app: &App, path: &std::path::Path) -> Result<Config, String> {
    let (config, mut issues) =
        Config::load_partial(path, std::env::vars()).map_err(|e| e.to_string())?;
    let file = path.display().to_string();
    issues.extend(app.issues(&config).into_iter().map(|mut i| {
        i.origin = file.clone();
        i
    }));
    match issues.is_empty() {
        true => Ok(config),
        false => Err(ConfigErrors { file, issues }.to_string()),
    }
}

/// Sets up `tracing` from `[log]` (`RUST_LOG` wins); a no-op when already set up.
pub fn init_logging(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal);
    let _ = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::error!("cannot listen for signals; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) fn main<I, T>(app: App, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Send { args, config } => {
            let config = match config.map(|c| load(&app, &c)).transpose() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(BAD_CONFIG);
                }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let sent = match runtime {
                Ok(rt) => rt.block_on(send(&args, config.as_ref())),
                Err(e) => Err(format!("cannot start a runtime: {e}")),
            };
            match sent {
                Ok((partition, offset)) => {
                    println!("sent to {}[{partition}]@{offset}", args.topic);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Agents { config } => {
            let compiled = load(&app, &config).and_then(|c| {
                crate::topology::Topology::compile(app.agents(), &c).map_err(|e| e.to_string())
            });
            match compiled {
                Ok(t) => {
                    print!("{}", t.describe());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(BAD_CONFIG)
                }
            }
        }
        Command::Reset {
            config,
            to,
            dry_run,
        } => {
            let topology = load(&app, &config).and_then(|c| {
                crate::topology::Topology::compile(app.agents(), &c).map_err(|e| e.to_string())
            });
            let topology = match topology {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(BAD_CONFIG);
                }
            };
            let done = crate::reset::plan(&topology, to).and_then(|plan| {
                print!("{}", plan.text());
                match dry_run {
                    true => Ok("dry run: nothing done"),
                    false => crate::reset::apply(&topology, &plan).map(|()| "reset done"),
                }
            });
            match done {
                Ok(said) => {
                    println!("{said}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Status { node } => {
            match node.address(&app).map(|a| crate::ask::ask(&a, "/status")) {
                Ok(Ok(a)) if a.status == 200 || a.status == 503 => {
                    print!("{}", crate::ask::status_text(&a.body));
                    match a.status {
                        200 => ExitCode::SUCCESS,
                        _ => ExitCode::FAILURE,
                    }
                }
                Ok(answer) => print_answer(answer, |_| String::new()),
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(BAD_CONFIG)
                }
            }
        }
        Command::Tables { node } => match node.address(&app) {
            Ok(addr) => print_answer(crate::ask::ask(&addr, "/tables"), crate::ask::tables_text),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(BAD_CONFIG)
            }
        },
        Command::Table {
            command: TableCommand::Get { name, key, node },
        } => match node.address(&app) {
            Ok(addr) => print_answer(
                crate::ask::ask(&addr, &crate::ask::key_path(&name, &key)),
                |body| format!("{body}\n"),
            ),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(BAD_CONFIG)
            }
        },
        Command::Validate { config } => match load(&app, &config) {
            Ok(c) => {
                println!(
                    "{}: ok (app {}, broker {}, {} topic(s), {} agent(s))",
                    config.display(),
                    c.app.id,
                    c.broker.bootstrap,
                    c.topics.len(),
                    app.agents().len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(BAD_CONFIG)
            }
        },
        Command::Worker { config } => {
            let c = match load(&app, &config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(BAD_CONFIG);
                }
            };
            init_logging(&c.log);
            match app.run(c, termination()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "node failed");
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
