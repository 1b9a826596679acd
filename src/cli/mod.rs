//! The command line: `cartero <noun> <verb>`. Thin by design: parse the
//! arguments, call the library, print. Exit codes: 0 success, 1 failure
//! (the message says what and where), 2 bad usage, 141 standard output
//! closed by its reader (`| head`), quietly.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::store::Store;

pub mod address;
pub mod api_key;
pub mod campaign;
pub mod compliance;
pub mod contacts;
pub mod feedback;
pub mod form;
pub mod hygiene;
pub mod init;
pub mod journey;
pub mod output;
pub mod report;
pub mod schedule;
pub mod segment;
pub mod serve;
pub mod signup;

#[derive(Debug, Parser)]
#[command(
    name = "cartero",
    version,
    about = "Email campaigns kept as files in git, sent to segments of your contacts, with consent you can prove.",
    after_help = "Example:\n  cartero contacts import contacts.csv --list newsletter --consent-source \"signup form 2025\"\n  cartero campaign send campaigns/welcome.toml"
)]
pub struct Cli {
    /// Configuration file [default: cartero.toml in the current folder or
    /// the nearest parent that has one].
    #[arg(long, global = true, env = "CARTERO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL (overrides database.url).
    #[arg(long, global = true, env = "CARTERO_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Hide progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log output (repeat for more).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import, show, export and erase contacts, and see their changes.
    Contacts(contacts::Args),
    /// Count and sample segments.
    Segment(segment::Args),
    /// Check, preview, send, pause, resume and cancel campaigns; see where a send stands.
    Campaign(campaign::Args),
    /// Journeys: check the files, the status of one, a tick by hand.
    Journey(journey::Args),
    /// Read bounces, complaints and unsubscribe mails.
    Feedback(feedback::Args),
    /// Check email addresses.
    Address(address::Args),
    /// Re-validate and clean the contact database.
    Hygiene(hygiene::Args),
    /// Prove consent: verify and checkpoint the ledger, its log, audits, retention.
    Compliance(compliance::Args),
    /// Run the recipients' endpoint: unsubscribe, opens, clicks, preferences.
    Serve(serve::Args),
    /// Start a new project: cartero.toml, a campaign, templates, sample contacts.
    Init(init::Args),
    /// Print embeddable sign-up forms.
    Form(form::Args),
    /// Sign-ups waiting for their confirmation: status, purge, retry their mails.
    Signup(signup::Args),
    /// Create, revoke and list keys of the events API.
    ApiKey(api_key::Args),
    /// Campaign reports, KPIs, the contact database over time.
    Report(report::Args),
    /// List the campaigns `cartero serve` delivers by itself, and when (a cron schedule, or one instant).
    Schedule(schedule::Args),
}

/// Output format for commands whose output is data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
}

/// What every command may need, loaded on first use so that commands which
/// need no database (address check, feedback parse) work without one.
pub struct Context {
    /// `--config`/`CARTERO_CONFIG`; without it, the nearest cartero.toml.
    pub config_path: Option<PathBuf>,
    pub database_url: Option<String>,
    pub quiet: bool,
}

impl Context {
    /// The project's cartero.toml: the one named, or the nearest one in the
    /// current folder or its parents (as git finds `.git`).
    pub fn project_file(&self) -> Option<PathBuf> {
        match &self.config_path {
            Some(p) => p.is_file().then(|| p.clone()),
            None => find_project_file(&std::env::current_dir().ok()?),
        }
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        let path = self
            .config_path
            .clone()
            .or_else(|| self.project_file())
            .unwrap_or_else(|| PathBuf::from(PROJECT_FILE));
        let mut cfg = Config::load(&path)?;
        if let Some(url) = &self.database_url {
            cfg.database.url = url.clone();
        }
        Ok(cfg)
    }

    pub async fn store(&self, cfg: &Config) -> anyhow::Result<Store> {
        // Outside a project, an implicit `sqlite://cartero.db` would create
        // an empty database wherever the command ran.
        if self.database_url.is_none() && self.project_file().is_none() {
            let here = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| ".".into());
            anyhow::bail!(
                "no {PROJECT_FILE} in {here} or any folder above it: this is not a cartero project. \
                 Start one with `cartero init` (or `cartero init DIR`), run cartero inside a project, \
                 or name a database with --database-url"
            );
        }
        let url = sqlite_url_relative_to(&cfg.database.url, &cfg.base_dir);
        crate::store::consent::install_keys(cfg.compliance.ledger_keys()?);
        Store::open(&url)
            .await
            .with_context(|| format!("opening database {}", crate::store::redact_url(&url)))
    }

    /// Whether the configured database exists already (a PostgreSQL server
    /// is taken to): a dry run must not create a SQLite file.
    pub fn database_exists(&self, cfg: &Config) -> bool {
        let url = sqlite_url_relative_to(&cfg.database.url, &cfg.base_dir);
        match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(rest) => {
                let path = rest.split('?').next().unwrap_or(rest);
                path.is_empty() || path.starts_with(':') || Path::new(path).exists()
            }
            None => true,
        }
    }

    /// Whether to draw progress bars: never when quiet or not on a terminal.
    pub fn progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.quiet && std::io::stderr().is_terminal()
    }
}

const PROJECT_FILE: &str = "cartero.toml";

/// The nearest `cartero.toml` in `dir` or its parents.
fn find_project_file(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(PROJECT_FILE))
        .find(|p| p.is_file())
}

/// A relative SQLite path in cartero.toml is relative to the file, not to the
/// shell's working directory.
fn sqlite_url_relative_to(url: &str, base: &Path) -> String {
    if let Some(rest) = url.strip_prefix("sqlite://")
        && !rest.starts_with('/')
        && !rest.starts_with(':')
        && base != Path::new(".")
    {
        return format!("sqlite://{}", base.join(rest).display());
    }
    url.to_string()
}

/// Exit status after the reader of standard output went away (`| head`):
/// 128 + SIGPIPE, what the shell reports for Unix tools ended by it.
const EXIT_CLOSED_PIPE: i32 = 141;

/// True when an error is a write to a pipe whose reader has gone.
fn is_closed_pipe(e: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(broken)
            || c.downcast_ref::<csv::Error>()
                .is_some_and(|ce| match ce.kind() {
                    csv::ErrorKind::Io(io) => broken(io),
                    _ => false,
                })
    })
}

/// `println!` panics when standard output is a closed pipe (Rust ignores
/// SIGPIPE, so the write fails instead of ending the process). A command
/// piped into `head` then ends quietly, as Unix tools do, without a panic
/// message or a backtrace.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_CLOSED_PIPE);
        }
        default(info);
    }));
}

pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let ctx = Context {
        config_path: cli.config.clone(),
        database_url: cli.database_url.clone(),
        quiet: cli.quiet,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Contacts(a) => contacts::run(a, &ctx).await,
            Command::Segment(a) => segment::run(a, &ctx).await,
            Command::Campaign(a) => campaign::run(a, &ctx).await,
            Command::Schedule(a) => schedule::run(a, &ctx).await,
            Command::Journey(a) => journey::run(a, &ctx).await,
            Command::Feedback(a) => feedback::run(a, &ctx).await,
            Command::Address(a) => address::run(a, &ctx).await,
            Command::Hygiene(a) => hygiene::run(a, &ctx).await,
            Command::Compliance(a) => compliance::run(a, &ctx).await,
            Command::Serve(a) => serve::run(a, &ctx).await,
            Command::Report(a) => report::run(&ctx, a).await,
            Command::Init(a) => init::run(a),
            Command::Form(a) => form::run(a, &ctx).await,
            Command::Signup(a) => signup::run(a, &ctx).await,
            Command::ApiKey(a) => api_key::run(a, &ctx).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if is_closed_pipe(&e) => ExitCode::from(EXIT_CLOSED_PIPE as u8),
        Err(e) => {
            // Errors quote contact data and attacker-sent mail: no raw
            // terminal escapes (domain::text).
            use crate::domain::text::for_terminal;
            eprintln!("error: {}", for_terminal(&e.to_string()));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", for_terminal(&cause.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    // Without -v only cartero's own warnings reach the terminal; the
    // libraries' (sqlx's slow-statement warnings, ...) need -v.
    let default = match verbose {
        0 => "off,cartero=warn",
        1 => "warn,cartero=info",
        2 => "info,cartero=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CARTERO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal, never in a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// A noun's description names only verbs it has: `contacts --help` once
    /// offered a `list` command that does not exist (issue 16 item 19).
    #[test]
    fn nouns_describe_only_their_own_commands() {
        let cli = super::Cli::command();
        let verbs: std::collections::BTreeSet<String> = cli
            .get_subcommands()
            .flat_map(|n| n.get_subcommands().map(|v| v.get_name().to_string()))
            .collect();
        for noun in cli.get_subcommands() {
            let own: Vec<&str> = noun.get_subcommands().map(|v| v.get_name()).collect();
            if own.is_empty() {
                continue;
            }
            let about = noun.get_about().map(|a| a.to_string()).unwrap_or_default();
            for word in about
                .to_lowercase()
                .split(|c: char| !c.is_alphanumeric() && c != '-')
                .filter(|w| verbs.contains(*w) && *w != noun.get_name())
            {
                assert!(
                    own.contains(&word),
                    "`cartero {} --help` says {about:?}, but {word:?} is not one of its commands {own:?}",
                    noun.get_name()
                );
            }
        }
    }

    /// Every example in every command's help parses: it names commands and
    /// options that exist.
    #[test]
    fn every_example_in_the_help_parses() {
        fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
            if let Some(h) = cmd.get_after_help() {
                out.extend(
                    h.to_string()
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.starts_with("cartero "))
                        .map(str::to_string),
                );
            }
            for c in cmd.get_subcommands() {
                walk(c, out);
            }
        }
        let mut examples = Vec::new();
        walk(&super::Cli::command(), &mut examples);
        assert!(examples.len() > 20, "{examples:?}");
        for ex in examples {
            // Words as a shell splits them: 'single' and "double" quoted
            // runs kept whole.
            let mut args = Vec::new();
            let mut cur = String::new();
            let mut quote: Option<char> = None;
            // Inside `$( ... )`, a command substitution: one word.
            let mut subst = 0usize;
            for ch in ex.chars() {
                if subst > 0 || (ch == '(' && cur.ends_with('$')) {
                    match ch {
                        '(' => subst += 1,
                        ')' => subst -= 1,
                        _ => {}
                    }
                    cur.push(ch);
                    continue;
                }
                match (ch, quote) {
                    ('\'' | '"', None) => quote = Some(ch),
                    (c, Some(q)) if c == q => quote = None,
                    // A redirection or a pipe ends cartero's arguments.
                    ('>' | '|' | '&' | ';', None) => break,
                    (' ', None) => {
                        if !cur.is_empty() {
                            args.push(std::mem::take(&mut cur));
                        }
                    }
                    (c, _) => cur.push(c),
                }
            }
            if !cur.is_empty() {
                args.push(cur);
            }
            if let Err(e) = <super::Cli as clap::Parser>::try_parse_from(&args) {
                panic!("the example `{ex}` does not parse: {e}");
            }
        }
    }
}
