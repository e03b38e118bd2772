//! Small hand-written histories pinning down the semantics (Jepsen's ok / fail / info).

use keel_check::{check, HistoryBuilder, Model, Options, Value, Verdict};

fn int(i: i64) -> Value {
    Value::Int(i)
}

fn pair(a: i64, b: i64) -> Value {
    Value::List(vec![int(a), int(b)])
}

fn verdict(b: HistoryBuilder, model: Model, options: &Options) -> Verdict {
    check(&b.build(), model, options)
        .expect("well-formed")
        .verdict
}

#[test]
fn sequential_stale_read_is_a_violation() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, "write", None, int(1)).ok(0, int(1));
    b.invoke(0, "write", None, int(2)).ok(0, int(2));
    b.invoke(1, "read", None, Value::Nil).ok(1, int(1));
    assert_eq!(
        verdict(b, Model::Register, &Options::default()),
        Verdict::NotLinearizable
    );
}

#[test]
fn concurrent_read_may_see_either_value() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, "write", None, int(1)).ok(0, int(1));
    b.invoke(0, "write", None, int(2));
    b.invoke(1, "read", None, Value::Nil).ok(1, int(1));
    b.ok(0, int(2));
    assert_eq!(
        verdict(b, Model::Register, &Options::default()),
        Verdict::Linearizable
    );
}

#[test]
fn info_stays_open_to_the_end_and_fail_never_happened() {
    // The info write of 3 may take effect long after it "completed".
    let mut b = HistoryBuilder::new();
    b.invoke(0, "write", None, int(3)).info(0);
    b.invoke(1, "write", None, int(1)).ok(1, int(1));
    b.invoke(2, "read", None, Value::Nil).ok(2, int(1));
    b.invoke(2, "read", None, Value::Nil).ok(2, int(3));
    assert_eq!(
        verdict(b, Model::Register, &Options::default()),
        Verdict::Linearizable
    );
    // The same with a failed write: 3 was never written.
    let mut b = HistoryBuilder::new();
    b.invoke(0, "write", None, int(3)).fail(0);
    b.invoke(1, "write", None, int(1)).ok(1, int(1));
    b.invoke(2, "read", None, Value::Nil).ok(2, int(3));
    assert_eq!(
        verdict(b, Model::Register, &Options::default()),
        Verdict::NotLinearizable
    );
}

#[test]
fn nil_reads_constrain_nothing_unless_strict() {
    let build = || {
        let mut b = HistoryBuilder::new();
        b.invoke(0, "write", None, int(1)).ok(0, int(1));
        b.invoke(1, "read", None, Value::Nil).ok(1, Value::Nil);
        b
    };
    assert_eq!(
        verdict(build(), Model::Register, &Options::default()),
        Verdict::Linearizable
    );
    let strict = Options {
        strict_nil: true,
        ..Options::default()
    };
    assert_eq!(
        verdict(build(), Model::Register, &strict),
        Verdict::NotLinearizable
    );
}

#[test]
fn cas_needs_the_expected_value_and_initial_is_honoured() {
    let build = || {
        let mut b = HistoryBuilder::new();
        b.invoke(0, "cas", None, pair(0, 5)).ok(0, pair(0, 5));
        b.invoke(1, "read", None, Value::Nil).ok(1, int(5));
        b
    };
    assert_eq!(
        verdict(build(), Model::CasRegister, &Options::default()),
        Verdict::NotLinearizable
    );
    let zero = Options {
        initial: Some(int(0)),
        ..Options::default()
    };
    assert_eq!(
        verdict(build(), Model::CasRegister, &zero),
        Verdict::Linearizable
    );
}

#[test]
fn kv_append_delete_and_per_key_split() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, "put", Some("a"), Value::str("x"))
        .ok(0, Value::Nil);
    b.invoke(0, "append", Some("a"), Value::str("y"))
        .ok(0, Value::Nil);
    b.invoke(1, "get", Some("a"), Value::Nil)
        .ok(1, Value::str("xy"));
    b.invoke(1, "delete", Some("b"), Value::Nil)
        .ok(1, Value::Nil);
    b.invoke(2, "get", Some("b"), Value::Nil)
        .ok(2, Value::str(""));
    let history = b.build();
    let report = check(&history, Model::Kv, &Options::default()).expect("ok");
    assert_eq!(report.verdict, Verdict::Linearizable);
    assert_eq!(report.partitions.len(), 2);
    let whole = check(
        &history,
        Model::Kv,
        &Options {
            partition: false,
            ..Options::default()
        },
    )
    .expect("ok");
    assert_eq!(whole.verdict, Verdict::Linearizable);
    assert_eq!(whole.partitions.len(), 1);
}

#[test]
fn kv_violation_on_one_key_is_reported_for_that_key_only() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, "put", Some("a"), Value::str("1"))
        .ok(0, Value::Nil);
    b.invoke(0, "put", Some("b"), Value::str("1"))
        .ok(0, Value::Nil);
    b.invoke(1, "get", Some("b"), Value::Nil)
        .ok(1, Value::str("2"));
    let report = check(&b.build(), Model::Kv, &Options::default()).expect("ok");
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let verdicts: Vec<(String, Verdict)> = report
        .partitions
        .iter()
        .map(|p| (p.label.clone(), p.verdict))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("\"a\"".to_string(), Verdict::Linearizable),
            ("\"b\"".to_string(), Verdict::NotLinearizable)
        ]
    );
    let explanation = report.partitions[1]
        .explanation
        .as_ref()
        .expect("explained");
    assert_eq!(report.ops[explanation.blocking_op].f, "get");
    assert_eq!(explanation.prefix.len(), 1);
}

#[test]
fn mutex_double_acquire_is_a_violation() {
    let mut b = HistoryBuilder::new();
    b.invoke(0, "acquire", None, Value::Nil).ok(0, Value::Nil);
    b.invoke(1, "acquire", None, Value::Nil).ok(1, Value::Nil);
    assert_eq!(
        verdict(b, Model::Mutex, &Options::default()),
        Verdict::NotLinearizable
    );
}

#[test]
fn step_budget_gives_unknown_never_a_guess() {
    let config = keel_check::gen::GenConfig {
        seed: 5,
        processes: 12,
        ops: 400,
        info_percent: 25,
        ..Default::default()
    };
    let history = keel_check::gen::linearizable(&config);
    let options = Options {
        steps_max: Some(1),
        ..Options::default()
    };
    let report = check(&history, Model::CasRegister, &options).expect("ok");
    assert_eq!(report.verdict, Verdict::Unknown);
    assert!(report.partitions[0]
        .reason
        .as_deref()
        .unwrap_or("")
        .contains("step budget"));
}

#[test]
fn structural_errors_carry_the_line() {
    let text = "{:process 1 :type :invoke :f :read}\n{:process 1 :type :invoke :f :read}\n";
    let (history, _) = keel_check::parse_history(text, None).expect("parses");
    let err = check(&history, Model::Register, &Options::default()).expect_err("double invoke");
    assert_eq!(err.line, 2);
    let text = "{:process 1 :type :invoke :f :frobnicate}\n";
    let (history, _) = keel_check::parse_history(text, None).expect("parses");
    let err = check(&history, Model::Register, &Options::default()).expect_err("unknown f");
    assert_eq!(err.line, 1);
    assert!(err.message.contains("frobnicate"));
}
