//! `paysys-vault`: parse flags, hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = paysys_vault::cli::Cli::parse();
    paysys_vault::cli::main(cli)
}
