//! The `hsx` binary: parse, run, print errors with their chain, map to an exit code.
use clap::Parser;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // Before anything can touch libtorch: the portable CPU pins (may re-execute this binary with them).
    let pinned = match hsx::runtime::pin_process_start() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; every other parse failure is a usage error (2).
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    cli::init_logging(&args);
    if let hsx::runtime::StartPins::SetInProcess(why) = pinned {
        tracing::warn!("CPU pins set in-process ({why}); hsx checks that they took before any stage runs");
    }
    let overridden = hsx::runtime::overridden();
    if !overridden.is_empty() {
        tracing::info!(
            "the portable CPU pins replaced these outer settings: {} (HSX_CPU_PINS=native keeps them)",
            overridden.join(", ")
        );
    }
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", cli::describe(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
