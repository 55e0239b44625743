//! The `ext-runner` binary: parse the command line and run it. Everything
//! else is the library (`ext_runner::cli`, `ext_runner::serve`).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Before configuration: the default connection caps are sized from it.
    ext_runner::limits::raise_fd_limit();
    ext_runner::cli::Cli::parse().run()
}
