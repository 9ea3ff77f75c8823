//! `simulate`: runs one system at one λ (or a sweep) and writes a run directory.
//! Exit codes: 0 success, 1 bad input or I/O error, 3 a run stopped early (partial results
//! written).

use std::process::ExitCode;

fn main() -> ExitCode {
    let request = match grokflow::cli::parse_invocation(std::env::args_os()) {
        grokflow::cli::Invocation::Run(r) => r,
        grokflow::cli::Invocation::Merge { dirs, out } => {
            return match grokflow::sweep::merge(&dirs, &out) {
                Ok(files) => {
                    let names: Vec<String> =
                        files.iter().map(|f| f.display().to_string()).collect();
                    println!(
                        "merged {} shard directories: wrote {}",
                        dirs.len(),
                        names.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
    };
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
