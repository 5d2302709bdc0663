//! The command line, in three rooms: [`args`] (what clap parses), [`commands`] (one function per
//! subcommand: arguments → library call) and [`print`] (text, JSON lines, progress). No experiment
//! logic lives here.
//!
//! Exit codes, decided in one place ([`exit_code`]): 0 ok; 1 a check failed (`verify`, `reproduce`);
//! 2 a usage or input error (every `Err`, printed with its whole cause chain).
pub mod args;
pub mod commands;
pub mod print;

pub use args::Cli;
use args::Command;
use print::Out;

pub fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HSX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs one command; returns the process exit code for a finished command (0, or 1 for a failed check).
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let out = Out { json: cli.json, quiet: cli.quiet };
    match &cli.command {
        Command::Run(a) => commands::run(out, a),
        Command::Stage(a) => commands::stage(out, a),
        Command::Verify(a) => commands::verify(out, a),
        Command::Keygen(a) => commands::keygen(out, a),
        Command::Data(d) => commands::data(out, d),
        Command::Reproduce(a) => commands::reproduce(out, a),
        Command::Report(a) => commands::report(out, a),
        Command::Export(a) => commands::export(out, a),
        Command::Score(a) => commands::score(out, a),
        Command::Generate(a) => commands::generate(out, a),
        Command::Embed(a) => commands::embed(out, a),
        Command::Train(a) => commands::train(out, a),
        Command::Bench(b) => commands::bench(b),
    }
}

/// The exit code of a command that failed with `_e`: every error is a usage or input error.
pub fn exit_code(_e: &anyhow::Error) -> u8 {
    2
}

/// The error with its whole cause chain, as `{:#}` prints it, less causes that an outer message
/// already quotes (many errors name their path and repeat their I/O cause).
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn describe_keeps_the_chain_without_repeating_a_quoted_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(hsx::data::DataError::Io { path: "x.json".into(), source: io })
            .context("reading the ledger");
        assert_eq!(super::describe(&e), "reading the ledger: x.json: No such file");
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(super::describe(&plain), "top: outer");
    }
}
