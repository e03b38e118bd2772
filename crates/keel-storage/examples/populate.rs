//! Writes a small data directory on the real disk (for trying `keel storage verify/dump`).
//! `cargo run -p keel-storage --example populate -- DIR [ENTRIES]`
use keel_storage::{Entry, HardState, RealIo, Storage, StorageOptions, WalOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: populate DIR [ENTRIES]");
        std::process::exit(2);
    };
    let entries: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let options = StorageOptions {
        wal: WalOptions {
            segment_capacity_bytes: 64 << 10,
            ..WalOptions::default()
        },
        repair: false,
    };
    let (mut st, _) = Storage::open(RealIo, dir.as_ref(), options).expect("open");
    let first = st.wal.last_index() + 1;
    for index in first..first + entries {
        st.wal
            .append(&[Entry {
                index,
                term: 1,
                payload: format!("entry {index}").into_bytes(),
            }])
            .expect("append");
        if index % 10 == 0 {
            st.wal.sync().expect("sync");
        }
    }
    let last = st.wal.sync().expect("sync");
    st.hard_state
        .save(&HardState {
            term: 1,
            vote: Some(1),
            commit: last,
            extra: Vec::new(),
        })
        .expect("save");
    println!("{dir}: log ends at {last}");
}
