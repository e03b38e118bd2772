//! Every Knossos reference history, checked against its folder's verdict.

use keel_check::{check, parse_history, Model, Options, Value, Verdict};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "edn"))
        .collect();
    out.sort();
    out
}

fn check_folder(
    folder: &str,
    model: Model,
    initial: Option<Value>,
    expected: Verdict,
    count: usize,
) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/knossos")
        .join(folder);
    let paths = files(&dir);
    assert_eq!(paths.len(), count, "{folder}: file count");
    let options = Options {
        initial,
        ..Options::default()
    };
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read");
        let (history, _) =
            parse_history(&text, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let report =
            check(&history, model, &options).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(report.verdict, expected, "{}", path.display());
        if expected == Verdict::NotLinearizable {
            let bad = report
                .partitions
                .iter()
                .find(|p| p.verdict == Verdict::NotLinearizable)
                .expect("a bad partition");
            assert!(
                bad.explanation.is_some(),
                "{}: a violation is explained",
                path.display()
            );
        }
    }
}

#[test]
fn cas_register_good_initial_zero() {
    check_folder(
        "cas-register/good",
        Model::CasRegister,
        Some(Value::Int(0)),
        Verdict::Linearizable,
        113,
    );
}

#[test]
fn cas_register_bad_initial_zero() {
    check_folder(
        "cas-register/bad",
        Model::CasRegister,
        Some(Value::Int(0)),
        Verdict::NotLinearizable,
        7,
    );
}

#[test]
fn cas_register_verdicts_hold_with_initial_nil() {
    check_folder(
        "cas-register/good",
        Model::CasRegister,
        None,
        Verdict::Linearizable,
        113,
    );
    check_folder(
        "cas-register/bad",
        Model::CasRegister,
        None,
        Verdict::NotLinearizable,
        7,
    );
}

#[test]
fn multi_register_good() {
    check_folder(
        "multi-register/good",
        Model::MultiRegister,
        Some(Value::Int(0)),
        Verdict::Linearizable,
        1,
    );
    // The file starts with x=0 and y=0 (its comment): y is read as 0 before any write of 0,
    // so with every register initially nil it is, correctly, not linearizable.
    check_folder(
        "multi-register/good",
        Model::MultiRegister,
        None,
        Verdict::NotLinearizable,
        1,
    );
}

#[test]
fn mutex_bad() {
    check_folder("mutex/bad", Model::Mutex, None, Verdict::NotLinearizable, 1);
}

#[test]
fn strict_nil_changes_verdicts_of_files_that_need_the_nil_rule() {
    // 89 good files need "an ok read of nil constrains nothing"; under --strict-nil with
    // initial 0 some of them must become violations.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/knossos/cas-register/good");
    let options = Options {
        initial: Some(Value::Int(0)),
        strict_nil: true,
        ..Options::default()
    };
    let mut violations = 0;
    for path in files(&dir) {
        let text = std::fs::read_to_string(&path).expect("read");
        let (history, _) = parse_history(&text, None).expect("parse");
        if check(&history, Model::CasRegister, &options)
            .expect("check")
            .verdict
            == Verdict::NotLinearizable
        {
            violations += 1;
        }
    }
    assert!(
        violations > 0,
        "strict nil must make some nil reads illegal"
    );
}
