//! Proof that `ocpp::v201::validate` is equivalent to the official OCA schemas.
//!
//! `schema_corpus.py` builds valid payloads and single-fault mutations for all
//! 128 schemas and records jsonschema's verdict (Draft6Validator with
//! FormatChecker). This test checks, for every case, that our validator agrees
//! on valid/invalid and on the error (keyword mapped to an OCPP-J error code,
//! and the JSON pointer); that valid payloads decode into the typed structs and
//! re-encode to an equivalent payload that validates again.
//!
//! The Python interpreter is `$ANCHORPOINT_PYTHON`, else `<workspace>/.venv/bin/python`,
//! else `python3`. It needs the packages `ocpp`, `jsonschema` and
//! `rfc3339-validator`; when they are missing the test fails, it does not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ocpp::ErrorCode;
use ocpp::v201::{
    self, Action, DateTime, Direction, SCHEMA_NAMES, Violation, decode_request, decode_response, encode, validate,
};
use serde_json::Value;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ANCHORPOINT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

fn corpus() -> String {
    let interpreter = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema_corpus.py");
    let output = Command::new(&interpreter).arg(&script).output().unwrap_or_else(|e| {
        panic!(
            "cannot run the Python interpreter {}: {e}. Set ANCHORPOINT_PYTHON or create \
                 the workspace venv (.venv with the packages ocpp, jsonschema, rfc3339-validator)",
            interpreter.display()
        )
    });
    assert!(
        output.status.success(),
        "{} {} failed ({}); it needs the Python packages ocpp, jsonschema and \
         rfc3339-validator:\n{}",
        interpreter.display(),
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("corpus is UTF-8")
}

/// Decodes into the typed message and re-encodes it.
fn typed_round_trip(action: Action, direction: Direction, payload: Value) -> Result<Value, Violation> {
    macro_rules! dispatch {
        ($(($a:ident, $req:ident, $resp:ident)),* $(,)?) => {
            match (action, direction) {
                $(
                    (Action::$a, Direction::Request) => {
                        let m: v201::$req = decode_request::<v201::$req>(payload)?;
                        Ok(encode(&m))
                    }
                    (Action::$a, Direction::Response) => {
                        let m: v201::$resp = decode_response::<v201::$req>(payload)?;
                        Ok(encode(&m))
                    }
                )*
            }
        };
    }
    ocpp::for_each_v201_action!(dispatch)
}

fn typed_names() -> BTreeSet<String> {
    macro_rules! names {
        ($(($a:ident, $req:ident, $resp:ident)),* $(,)?) => {
            [$(stringify!($req), stringify!($resp)),*].iter().map(|s| s.to_string()).collect()
        };
    }
    ocpp::for_each_v201_action!(names)
}

fn expected_code(keyword: &str, path: &str) -> ErrorCode {
    match keyword {
        "type" if path.is_empty() => ErrorCode::FormatViolation,
        "type" => ErrorCode::TypeConstraintViolation,
        "required" | "minItems" | "maxItems" => ErrorCode::OccurrenceConstraintViolation,
        "enum" | "maxLength" | "minimum" | "maximum" | "format" => ErrorCode::PropertyConstraintViolation,
        "additionalProperties" => ErrorCode::ProtocolError,
        other => panic!("corpus produced an unexpected keyword {other}"),
    }
}

/// Equality after normalising what the typed round trip may legitimately
/// change: date-times (re-encoded in UTC, truncated to milliseconds) and
/// number spelling (`5.0` vs `5`).
fn equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((DateTime::parse(x), DateTime::parse(y)), (Ok(p), Ok(q)) if same_millisecond(p, q))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| equivalent(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equivalent(v, w)))
        }
        _ => a == b,
    }
}

fn same_millisecond(p: DateTime, q: DateTime) -> bool {
    let ms = |t: DateTime| t.into_inner().unix_timestamp_nanos().div_euclid(1_000_000);
    ms(p) == ms(q)
}

#[derive(Default)]
struct Counts {
    valid: usize,
    invalid: usize,
    by_code: BTreeMap<String, usize>,
}

#[test]
fn validator_agrees_with_jsonschema_on_the_corpus() {
    let text = corpus();
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().expect("header line")).unwrap();
    let schema_files: BTreeSet<String> =
        header["schemas"].as_array().expect("schemas list").iter().map(|v| v.as_str().unwrap().to_owned()).collect();

    // Every schema file has a generated struct, and vice versa.
    assert_eq!(schema_files.len(), 128, "expected the 128 OCPP 2.0.1 schemas");
    let generated: BTreeSet<String> = SCHEMA_NAMES.iter().map(|s| s.to_string()).collect();
    assert_eq!(schema_files, generated, "schema files vs SCHEMA_NAMES");
    assert_eq!(schema_files, typed_names(), "schema files vs typed structs");
    assert_eq!(Action::ALL.len(), 64);
    for action in Action::ALL {
        assert_eq!(action.request_schema().name, format!("{action}Request"));
        assert_eq!(action.response_schema().name, format!("{action}Response"));
        assert_eq!(Action::from_name(action.as_str()), Some(*action));
    }

    let mut counts = Counts::default();
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for line in lines {
        let case: Value = serde_json::from_str(line).expect("corpus line is JSON");
        let action_name = case["action"].as_str().unwrap();
        let action = Action::from_name(action_name).unwrap_or_else(|| panic!("unknown action {action_name}"));
        let direction = match case["direction"].as_str().unwrap() {
            "Request" => Direction::Request,
            "Response" => Direction::Response,
            other => panic!("bad direction {other}"),
        };
        covered.insert((action_name.to_owned(), direction == Direction::Request));
        let label = format!("{action_name}{:?} / {}", direction, case["case"].as_str().unwrap());
        let payload = &case["payload"];
        let ours = validate(action, direction, payload);

        if case["valid"].as_bool().unwrap() {
            counts.valid += 1;
            if let Err(v) = ours {
                failures.push(format!("{label}: jsonschema accepts, we reject: {v}"));
                continue;
            }
            match typed_round_trip(action, direction, payload.clone()) {
                Err(v) => failures.push(format!("{label}: typed decode failed: {v}")),
                Ok(encoded) => {
                    if let Err(v) = validate(action, direction, &encoded) {
                        failures.push(format!("{label}: re-encoded payload is invalid: {v}"));
                    } else if !equivalent(payload, &encoded) {
                        failures.push(format!(
                            "{label}: round trip changed the payload:\n  in:  {payload}\n  out: {encoded}"
                        ));
                    }
                }
            }
        } else {
            counts.invalid += 1;
            let keyword = case["keyword"].as_str().unwrap();
            let path = case["path"].as_str().unwrap();
            let want = expected_code(keyword, path);
            *counts.by_code.entry(want.to_string()).or_default() += 1;
            let Err(v) = ours else {
                failures.push(format!("{label}: jsonschema rejects ({keyword} at {path}), we accept"));
                continue;
            };
            if v.code != want {
                failures.push(format!("{label}: jsonschema says {keyword} at {path:?} => {want}, we say {v}"));
            }
            // For required/additionalProperties jsonschema points at the object,
            // we point at the member.
            let path_ok = if matches!(keyword, "required" | "additionalProperties") {
                v.path
                    .strip_prefix(path)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|member| !member.contains('/'))
            } else {
                v.path == path
            };
            if !path_ok {
                failures.push(format!("{label}: jsonschema path {path:?} ({keyword}), ours {:?}", v.path));
            }
            // The typed entry points reject with the same violation.
            match typed_round_trip(action, direction, payload.clone()) {
                Ok(_) => failures.push(format!("{label}: typed decode accepted an invalid payload")),
                Err(t) if t != v => failures.push(format!("{label}: typed decode says {t}, validate says {v}")),
                Err(_) => {}
            }
        }
    }

    let expected: BTreeSet<(String, bool)> =
        Action::ALL.iter().flat_map(|a| [(a.as_str().to_owned(), true), (a.as_str().to_owned(), false)]).collect();
    assert_eq!(covered, expected, "corpus must cover 64 actions x 2 directions");

    eprintln!(
        "schema corpus: {} cases over {} schemas ({} valid, {} invalid); invalid by code: {:?}",
        counts.valid + counts.invalid,
        covered.len(),
        counts.valid,
        counts.invalid,
        counts.by_code
    );
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases disagree with jsonschema; first 30:\n{}",
        failures.len(),
        counts.valid + counts.invalid,
        failures.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(counts.valid > 1000 && counts.invalid > 5000, "corpus unexpectedly small");
}

#[test]
fn generated_code_is_up_to_date() {
    let interpreter = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("codegen/generate.py");
    let output = Command::new(&interpreter)
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", interpreter.display()));
    assert!(
        output.status.success(),
        "src/v201/generated.rs differs from what codegen/generate.py produces (needs the \
         Python package ocpp and rustfmt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
