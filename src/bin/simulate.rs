//! `simulate`: runs one system at one λ (or a sweep) and writes a run directory.
//! Exit codes: 0 success, 1 bad input or I/O error, 3 a run stopped early (partial results
//! written).

use std::process::ExitCode;

fn main() -> ExitCode {
    let request = grokflow::cli::parse_simulate(std::env::args_os());
    grokflow::progress::install_interrupt_handler();
    match grokflow::simulate::simulate(&request) {
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
