use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = rwsplit::cli::Cli::parse();
    rwsplit::logging::init(cli.log_format);
    match rwsplit::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
