//! The `hsx` binary: parse, run, print errors with their chain, map to an exit code.
use clap::Parser;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help and --version are successes; every other parse failure is a usage error (2).
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    cli::init_logging(&args);
    match cli::run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", cli::describe(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
