//! `paysys-gateway`: parse flags, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    paysys_gateway::cli::main(paysys_gateway::cli::Cli::parse())
}
