//! `validate`: measures the theory's claims as λ → 0 on every system and writes a report.
//! Exit codes: 0 every applicable check passed, 1 an error (a usage error too), 2 a check failed, 4 inconclusive
//! (none failed, some could not be assessed), 130 interrupted (Ctrl-C; the report holds the
//! systems finished).

use std::process::ExitCode;

use clap::Parser;
use grokflow::validate::{run_validation, ValidateArgs};

fn main() -> ExitCode {
    // A usage error exits with 1, not clap's 2, which here means a check failed.
    let args = match ValidateArgs::try_parse() {
        Ok(a) => a,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(1);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    match run_validation(&args) {
        Ok(done) => {
            print!("{}", done.text);
            ExitCode::from(done.code)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
