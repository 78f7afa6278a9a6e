//! `paysys-sandbox`: parse flags, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_sandbox::cli::main(paysys_sandbox::cli::Cli::parse())
}
