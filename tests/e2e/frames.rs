//! Malformed and invalid frames: the right CALLERROR (or close), the session and
//! the server stay up, other stations are unaffected.

use crate::harness::{Db, Env, py, strs, tls_args};

const HEARTBEAT: &str = r#"[2,"hb","Heartbeat",{}]"#;

#[test]
fn bad_frames_get_the_specified_callerror() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-F", 3, None).unwrap();
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-F", Some(&creds));
    let (ok, _) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok);

    let cases: &[(&str, &str, &str)] = &[
        ("this is not json", "-1", "RpcFrameworkError"),
        (r#"{"not":"an array"}"#, "-1", "RpcFrameworkError"),
        (r#"[9,"m1","Heartbeat",{}]"#, "m1", "MessageTypeNotSupported"),
        (r#"[2,"m2","NoSuchAction",{}]"#, "m2", "NotImplemented"),
        (r#"[2,"m3","Reset",{"type":"Immediate"}]"#, "m3", "NotSupported"),
        (r#"[2,"m4","Heartbeat",[]]"#, "m4", "FormatViolation"),
        (r#"[2,"m5","Heartbeat",{"unexpected":1}]"#, "m5", "ProtocolError"),
        (
            r#"[2,"m6","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":"one","connectorId":1}]"#,
            "m6",
            "TypeConstraintViolation",
        ),
        (
            r#"[2,"m7","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":1}]"#,
            "m7",
            "OccurrenceConstraintViolation",
        ),
        (
            r#"[2,"m8","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Broken","evseId":1,"connectorId":1}]"#,
            "m8",
            "PropertyConstraintViolation",
        ),
        (
            r#"[2,"m8b","StatusNotification",{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":-1,"connectorId":1}]"#,
            "m8b",
            "PropertyConstraintViolation",
        ),
        (
            r#"[2,"m9","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVV"}}]"#,
            "m9",
            "PropertyConstraintViolation",
        ),
        (r#"[2,"0123456789012345678901234567890123456","Heartbeat",{}]"#, "-1", "RpcFrameworkError"),
        // Not JSON a Value can hold (a number out of range, a lone surrogate),
        // where the schema allows anything, and in a call refused unread.
        (
            r#"[2,"m10","MeterValues",{"evseId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":1}]}],"customData":{"vendorId":"v","x":1e400}}]"#,
            "-1",
            "RpcFrameworkError",
        ),
        (r#"[2,"m11","DataTransfer",{"vendorId":"v","data":"\ud800"}]"#, "-1", "RpcFrameworkError"),
        (r#"[2,"m12","NoSuchAction",{"x":"\ud800"}]"#, "-1", "RpcFrameworkError"),
    ];
    let mut frames: Vec<&str> = Vec::new();
    for (frame, _, _) in cases {
        frames.push(frame);
        frames.push(HEARTBEAT);
    }
    let (ok, lines) = py("probe.py", &[vec!["frames"], strs(&args), frames].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines.len(), cases.len() * 2, "{lines:#?}");
    for (i, (frame, id, code)) in cases.iter().enumerate() {
        let reply = &lines[2 * i]["reply"];
        assert_eq!(reply[0], 4, "{frame} -> {reply}");
        assert_eq!(reply[1], *id, "{frame} -> {reply}");
        assert_eq!(reply[2], *code, "{frame} -> {reply}");
        assert!(reply[3].as_str().is_some_and(|d| !d.is_empty() && d.chars().count() <= 255), "{reply}");
        // The session is still up: the next Heartbeat is answered.
        let hb = &lines[2 * i + 1]["reply"];
        assert_eq!(hb[0], 3, "after {frame}: {hb}");
        assert!(hb[2]["currentTime"].is_string());
    }
}

#[test]
fn ten_megabyte_frame_closes_only_that_connection() {
    let env = Env::new(Db::Sqlite);
    let big = env.add_station("CS-BIG", 3, None).unwrap();
    let other = env.add_station("CS-OTHER", 3, None).unwrap();
    let mut server = env.serve(&[]);
    for (id, creds) in [("CS-BIG", &big), ("CS-OTHER", &other)] {
        let args = tls_args(&server, &server.wss(), id, Some(creds));
        assert!(py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat()).0);
    }
    // The other station stays connected throughout, sending heartbeats from a
    // second process while the big frame is refused.
    let other_args = tls_args(&server, &server.wss(), "CS-OTHER", Some(&other));
    let python = crate::harness::python();
    let script = crate::harness::workspace().join("tests/interop/probe.py");
    let hb_frames = vec![HEARTBEAT; 20];
    let bystander = std::process::Command::new(&python)
        .arg(&script)
        .args([vec!["frames"], strs(&other_args), hb_frames].concat())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let big_args = tls_args(&server, &server.wss(), "CS-BIG", Some(&big));
    let (ok, lines) = py("probe.py", &[vec!["frames"], strs(&big_args), vec!["big:10485760"]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0]["closed"], 1009, "message too big: {lines:?}");

    let out = bystander.wait_with_output().unwrap();
    let replies: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(replies.len(), 20);
    assert!(replies.iter().all(|r| r["reply"][0] == 3), "{replies:?}");

    // The server is up and the station that sent the big frame can come back.
    assert!(server.is_running());
    let (ok, lines) = py("probe.py", &[vec!["frames"], strs(&big_args), vec![HEARTBEAT]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0]["reply"][0], 3);
    assert!(server.metric("anchorpoint_ocpp_frames_total", &["result=\"too_large\""]) >= 1.0);
}

#[test]
fn new_connection_replaces_the_old_one() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-R", 3, None).unwrap();
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-R", Some(&creds));
    assert!(py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat()).0);
    let python = crate::harness::python();
    let script = crate::harness::workspace().join("tests/interop/probe.py");
    // First connection: a heartbeat, then it waits for a reply to a frame that
    // has none (a CALLRESULT for an unknown id is dropped), and gets closed instead.
    let first = std::process::Command::new(&python)
        .arg(&script)
        .args([vec!["frames"], strs(&args), vec![HEARTBEAT, r#"[3,"nobody-asked",{}]"#]].concat())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (ok, lines) = py("probe.py", &[vec!["frames"], strs(&args), vec![HEARTBEAT]].concat());
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0]["reply"][0], 3);
    let out = first.wait_with_output().unwrap();
    let first_lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(first_lines[0]["reply"][0], 3);
    assert_eq!(first_lines[1]["closed"], 1008, "old session closed with policy violation: {first_lines:?}");
}

/// The payloads of the station's recorded `action` messages, oldest first, as
/// Python's sqlite3 reads them from the server's database.
fn stored_payloads(db: &str, station: &str, action: &str) -> Vec<String> {
    let script = "import json, sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10)\n\
                  rows = c.execute('SELECT payload FROM station_messages WHERE station_id = ? AND action = ? ORDER BY id', \
                  (sys.argv[2], sys.argv[3])).fetchall()\nprint(json.dumps([r[0] for r in rows]))\n";
    let out = std::process::Command::new(crate::harness::python())
        .args(["-c", script, db, station, action])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_payload_is_kept_as_sent_and_a_repeated_name_counts_once() {
    let env = Env::new(Db::Sqlite);
    let creds = env.add_station("CS-V", 3, None).unwrap();
    let server = env.serve(&[]);
    let args = tls_args(&server, &server.wss(), "CS-V", Some(&creds));
    let (ok, _) = py("charger.py", &[strs(&args), vec!["--steps", "boot"]].concat());
    assert!(ok);

    let sample = r#"[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":1.5}]}]"#;
    // As the station wrote it, spacing and order included.
    let as_sent = format!(r#"{{ "meterValue" : {sample},   "evseId": 1 }}"#);
    // JSON leaves a repeated name to the reader; like Python's json and every
    // reader of a parsed payload here, the last one counts, and it is checked.
    let last_counts = format!(r#"{{"evseId":"one","meterValue":{sample},"evseId":2}}"#);
    let both_conform = format!(r#"{{"evseId":5,"meterValue":{sample},"evseId":6}}"#);
    let last_is_wrong = format!(r#"{{"evseId":3,"meterValue":{sample},"evseId":"three"}}"#);
    let nested_last_is_wrong =
        r#"{"evseId":4,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":1,"value":"x"}]}]}"#;
    let frames = [
        format!(r#"[2,"v1","MeterValues",{as_sent}]"#),
        format!(r#"[2,"v2","MeterValues",{last_counts}]"#),
        format!(r#"[2,"v3","MeterValues",{last_is_wrong}]"#),
        format!(r#"[2,"v4","MeterValues",{nested_last_is_wrong}]"#),
        format!(r#"[2,"v5","MeterValues",{both_conform}]"#),
    ];
    let (ok, lines) =
        py("probe.py", &[vec!["frames"], strs(&args), frames.iter().map(String::as_str).collect()].concat());
    assert!(ok, "{lines:?}");
    let replies: Vec<&serde_json::Value> = lines.iter().map(|l| &l["reply"]).collect();
    assert_eq!(replies[0], &serde_json::json!([3, "v1", {}]));
    assert_eq!(replies[1], &serde_json::json!([3, "v2", {}]));
    assert_eq!((&replies[2][1], &replies[2][2]), (&"v3".into(), &"TypeConstraintViolation".into()), "{}", replies[2]);
    assert!(replies[2][3].as_str().unwrap().contains("evseId"), "{}", replies[2]);
    assert_eq!((&replies[3][1], &replies[3][2]), (&"v4".into(), &"TypeConstraintViolation".into()), "{}", replies[3]);
    assert_eq!(replies[4], &serde_json::json!([3, "v5", {}]));

    let db = env.db_url.strip_prefix("sqlite://").unwrap();
    let stored = stored_payloads(db, "CS-V", "MeterValues");
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(stored[0], as_sent);
    // A repeated name is stored once, with the value that counted, so no
    // reader of the stored text, whichever occurrence it takes, sees another.
    let meter: serde_json::Value = serde_json::from_str(sample).unwrap();
    for (text, evse) in [(&stored[1], 2), (&stored[2], 6)] {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value, serde_json::json!({"evseId": evse, "meterValue": meter}));
        assert_eq!(text.matches("evseId").count(), 1, "{text}");
    }
}
