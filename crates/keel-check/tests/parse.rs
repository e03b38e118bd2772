//! Parser tests for each format, including malformed input with line numbers.

use keel_check::{parse_history, EventKind, Format, Process, Value};

#[test]
fn edn_vector_with_comments_commas_and_nemesis() {
    let text = "; a comment\n[{:process 3, :type :invoke, :f :cas, :value [1 4]}\n {:process 3 :type :fail :f :cas :value [1 4] :error \"nope {:x}\"} ; trailing\n {:process :nemesis, :type :info, :f :start, :value nil}\n]\n";
    let (history, format) = parse_history(text, None).expect("parses");
    assert_eq!(format, Format::Edn);
    assert_eq!(history.len(), 3);
    let first = &history.events[0];
    assert_eq!(first.process, Process::Client(3));
    assert_eq!(first.kind, EventKind::Invoke);
    assert_eq!(first.f, "cas");
    assert_eq!(first.value, Value::List(vec![Value::Int(1), Value::Int(4)]));
    assert_eq!(first.line, 2);
    assert_eq!(history.events[1].line, 3);
    assert_eq!(history.events[2].process, Process::Named("nemesis".into()));
}

#[test]
fn edn_one_map_per_line_with_key_time_and_txn() {
    let text = "{:process 0, :type :invoke, :f :txn, :value [[:read :x nil] [:write :y 2]], :time 10}\n{:process 0, :type :ok, :f :txn, :value [[:read :x 0] [:write :y 2]], :time 20, :key \"k\"}\n";
    let (history, format) = parse_history(text, None).expect("parses");
    assert_eq!(format, Format::Edn);
    assert_eq!(history.len(), 2);
    assert_eq!(history.events[0].time_ns, Some(10));
    assert_eq!(history.events[1].key, Some(Value::str("k")));
    assert_eq!(history.events[1].line, 2);
    let micro = history.events[1].value.as_list().expect("list")[0].clone();
    assert_eq!(
        micro,
        Value::List(vec![
            Value::Keyword("read".into()),
            Value::Keyword("x".into()),
            Value::Int(0)
        ])
    );
}

#[test]
fn edn_malformed_cases_report_lines() {
    let cases: [(&str, u32, &str); 6] = [
        ("[{:process 1 :type :invoke :f :read}\n {:process 1 :type :bogus :f :read}]", 2, ":type"),
        ("[{:process 1 :type :invoke :f :read}\n\n {:type :ok :f :read}]", 3, ":process"),
        ("[{:process 1 :type :invoke :f :read}\n {:process 1 :type :ok :f :read :value [1 2}]", 2, "unexpected"),
        ("[{:process 1 :type :invoke :f :read}\n {:process 1 :type :ok :f :read :value \"abc}]\n", 2, "unterminated string"),
        ("[{:process 1 :type :invoke :f :read}\n", 1, "unclosed"),
        ("{:process 1 :type :invoke :f :read}\n[1 2]\n", 2, "event map"),
    ];
    for (text, line, needle) in cases {
        let err = parse_history(text, Some(Format::Edn)).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.message.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn jepsen_log_tabs_spaces_timeouts_and_noise() {
    let text = "2017-01-01 INFO  jepsen.core - Running test\n\
INFO  jepsen.util - 7\t:invoke\t:write\t3\n\
INFO  jepsen.util - 8  :invoke  :cas  [3 4]\n\
INFO  jepsen.util - 7\t:ok\t:write\t3\n\
INFO  jepsen.util - 8\t:info\t:cas\t:timed-out\tindeterminate: timeout\n\
INFO  jepsen.util - 9\t:invoke\t:read\tnil\n\
INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
INFO  jepsen.util - 9\t:ok\t:read\t3\n";
    let (history, format) = parse_history(text, None).expect("parses");
    assert_eq!(format, Format::JepsenLog);
    assert_eq!(history.len(), 7);
    assert_eq!(history.events[0].line, 2);
    assert_eq!(history.events[0].value, Value::Int(3));
    assert_eq!(
        history.events[1].value,
        Value::List(vec![Value::Int(3), Value::Int(4)])
    );
    assert_eq!(history.events[3].kind, EventKind::Info);
    assert_eq!(history.events[3].value, Value::Keyword("timed-out".into()));
    assert_eq!(history.events[4].value, Value::Nil);
    assert_eq!(history.events[5].process, Process::Named("nemesis".into()));
    // Bare lines without the logger prefix are events too.
    let (bare, _) = parse_history(
        "3 :invoke :read nil\n3 :ok :read 5\n",
        Some(Format::JepsenLog),
    )
    .expect("parses");
    assert_eq!(bare.len(), 2);
}

#[test]
fn jepsen_log_malformed_cases_report_lines() {
    let cases: [(&str, u32, &str); 3] = [
        (
            "INFO  jepsen.util - 7\t:invoke\t:write\t3\nINFO  jepsen.util - 7\t:done\t:write\t3\n",
            2,
            "unknown type",
        ),
        (
            "INFO  jepsen.util - 7\t:invoke\t:cas\t[1 2\n",
            1,
            "malformed value",
        ),
        ("x\ny\nINFO  jepsen.util - 7\t:invoke\t\"w\"\t3\n", 3, ":f"),
    ];
    for (text, line, needle) in cases {
        let err = parse_history(text, Some(Format::JepsenLog)).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.message.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn keel_json_lines() {
    let text = "{\"process\":0,\"type\":\"invoke\",\"f\":\"put\",\"key\":\"k1\",\"value\":\"a\",\"time\":1000}\n\n\
{\"process\":0,\"type\":\"ok\",\"f\":\"put\",\"key\":\"k1\",\"value\":\"a\",\"time\":2000,\"revision\":7}\n\
{\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"partition\",\"value\":\"majority\"}\n";
    let (history, format) = parse_history(text, None).expect("parses");
    assert_eq!(format, Format::Keel);
    assert_eq!(history.len(), 3);
    assert_eq!(history.events[0].key, Some(Value::str("k1")));
    assert_eq!(history.events[1].line, 3);
    assert_eq!(history.events[1].time_ns, Some(2000));
    assert_eq!(history.events[2].process, Process::Named("nemesis".into()));
}

#[test]
fn keel_json_malformed_cases_report_lines() {
    let ok = "{\"process\":0,\"type\":\"invoke\",\"f\":\"get\",\"key\":\"k\"}\n";
    let cases: [(&str, &str); 7] = [
        (
            "{\"process\":0,\"type\":\"ok\",\"f\":\"get\"",
            "invalid JSON",
        ),
        ("{\"process\":-1,\"type\":\"ok\",\"f\":\"get\"}", "process"),
        ("{\"type\":\"ok\",\"f\":\"get\"}", "missing \"process\""),
        (
            "{\"process\":0,\"type\":\"done\",\"f\":\"get\"}",
            "\"type\"",
        ),
        ("{\"process\":0,\"type\":\"ok\"}", "missing \"f\""),
        (
            "{\"process\":0,\"type\":\"ok\",\"f\":\"get\",\"value\":{\"a\":1}}",
            "\"value\"",
        ),
        (
            "{\"process\":0,\"type\":\"ok\",\"f\":\"get\",\"time\":\"soon\"}",
            "\"time\"",
        ),
    ];
    for (bad, needle) in cases {
        let text = format!("{ok}{bad}\n");
        let err = parse_history(&text, Some(Format::Keel)).expect_err(bad);
        assert_eq!(err.line, 2, "{bad}: {err}");
        assert!(err.message.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn detection() {
    assert_eq!(Format::detect("\n  {\"process\":1}"), Format::Keel);
    assert_eq!(Format::detect("[{:process 1}]"), Format::Edn);
    assert_eq!(Format::detect("{:process 1}"), Format::Edn);
    assert_eq!(Format::detect("; comment\n[]"), Format::Edn);
    assert_eq!(
        Format::detect("INFO  jepsen.util - 1\t:invoke\t:read\tnil"),
        Format::JepsenLog
    );
}

#[test]
fn keel_json_round_trips_generated_histories() {
    use keel_check::gen::{self, Flavor, GenConfig};
    let config = GenConfig {
        flavor: Flavor::Kv,
        keys: 3,
        ops: 200,
        append_percent: 20,
        ..GenConfig::default()
    };
    let history = gen::linearizable(&config);
    let text = history.to_keel_jsonl();
    let (parsed, format) = parse_history(&text, None).expect("parses");
    assert_eq!(format, Format::Keel);
    assert_eq!(parsed.len(), history.len());
    for (index, (a, b)) in history.events.iter().zip(&parsed.events).enumerate() {
        assert_eq!(b.line as usize, index + 1);
        assert_eq!(
            (&a.process, a.kind, &a.f, &a.key, &a.value, a.time_ns),
            (&b.process, b.kind, &b.f, &b.key, &b.value, b.time_ns)
        );
    }
}
