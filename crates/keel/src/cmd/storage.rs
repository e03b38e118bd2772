//! `keel storage`: being built (see the issue tracker); exits 3 until it lands.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> i32 {
    eprintln!("keel storage: not built yet");
    3
}
