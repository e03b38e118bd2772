//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> i32` (the exit code).
pub mod audit;
pub mod bench;
pub mod check;
pub mod cluster;
pub mod conn;
pub mod demo;
pub mod kv;
pub mod model;
pub mod nemesis;
pub mod serve;
pub mod sim;
pub mod storage;
