//! Development runner (the real entry point is `keel nemesis`):
//! `cargo run -p keel-nemesis --example campaign -- KEEL_BIN OUT_DIR SECONDS FAULTS [MUTANT]`
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: campaign KEEL_BIN OUT_DIR SECONDS FAULTS [MUTANT]");
        std::process::exit(2);
    }
    let mut config =
        keel_nemesis::CampaignConfig::new(args[1].clone().into(), args[2].clone().into());
    config.time_ms = args[3].parse::<u64>().unwrap_or(20) * 1000;
    config.faults = match keel_nemesis::FaultKind::parse_mix(&args[4]) {
        Ok(mix) => mix,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    config.mutant = args.get(5).cloned().filter(|m| !m.is_empty());
    if let Some(nodes) = std::env::var("NEMESIS_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.nodes = nodes;
    }
    if let Some(think_ms) = std::env::var("NEMESIS_THINK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.think_ms = think_ms;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match runtime.block_on(keel_nemesis::run(config)) {
        Ok(summary) => {
            for p in &summary.problems {
                println!("problem: {p}");
            }
            for n in &summary.notes {
                println!("note: {n}");
            }
            println!("{}", summary.line());
            std::process::exit(summary.exit_code());
        }
        Err(e) => {
            eprintln!("harness error: {e:#}");
            std::process::exit(2);
        }
    }
}
