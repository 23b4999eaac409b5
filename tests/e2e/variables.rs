//! B05/B06: GetVariables and SetVariables from the API reach a strict PyPI
//! `ocpp` station within its ItemsPerMessage and BytesPerMessage, and the
//! answers are joined for the caller.

use serde_json::{Value, json};

use crate::harness::{BackgroundCharger, Db, Env, strs, tls_args, wait_for};

const ITEMS: usize = 2;
const BYTES: usize = 280;

fn item(component: &str, variable: &str) -> Value {
    json!({"component": {"name": component}, "variable": {"name": variable}})
}

fn set_item(variable: &str, value: &str) -> Value {
    json!({"component": {"name": "TestCtrlr"}, "variable": {"name": variable}, "attributeValue": value})
}

#[test]
fn get_and_set_variables_respect_the_station_limits() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let creds = env.add_station("CS-LIM-1", 3, None).unwrap();
    let token = env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned();
    // The station refuses more than 2 items or 280 bytes a call; it reports its
    // SetVariables limits in a NotifyReport and answers the GetVariables ones when asked.
    let args = tls_args(&server, &server.wss(), "CS-LIM-1", Some(&creds));
    let limits =
        ["--items-per-message", &ITEMS.to_string(), "--bytes-per-message", &BYTES.to_string(), "--fail-variable", "V4"]
            .map(str::to_owned);
    let station = BackgroundCharger::spawn(
        &[strs(&args), strs(&limits), vec!["--steps", "boot,report-set-limits,serve", "--serve-seconds", "40"]]
            .concat(),
    );
    wait_for("the station to connect and report", 20, || {
        let (_, s) = server.api("GET", "/api/v1/stations/CS-LIM-1", &token, None);
        s["connected"] == true && s["boot"]["status"] == "Accepted"
    });
    std::thread::sleep(std::time::Duration::from_millis(500));

    // Five items, one with a long name: split by count and by bytes, answered in order.
    let long = json!({"component": {"name": "SampledDataCtrlr", "instance": "a-long-instance-name-0123456789"},
                      "variable": {"name": "A-long-variable-name-so-that-bytes-decide-012345"}});
    let wanted = [
        item("OCPPCommCtrlr", "HeartbeatInterval"),
        item("Nowhere", "Nothing"),
        long,
        item("AuthCtrlr", "Enabled"),
        item("ClockCtrlr", "DateTime"),
    ];
    let (status, answer) = server.api(
        "POST",
        "/api/v1/stations/CS-LIM-1/get-variables",
        &token,
        Some(&json!({"getVariableData": wanted})),
    );
    assert_eq!(status, 200, "{answer}");
    let results = answer["getVariableResult"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{answer}");
    for (r, w) in results.iter().zip(&wanted) {
        assert_eq!(r["variable"], w["variable"], "in the order asked: {answer}");
    }
    assert_eq!(results[0]["attributeValue"], "300");
    assert_eq!(results[1]["attributeStatus"], "UnknownVariable");

    // SetVariables of five: the call holding V4 is refused by the station; the
    // others are set, and the answer says which items have no answer.
    let set: Vec<Value> = (1..=5).map(|i| set_item(&format!("V{i}"), &format!("value-{i}"))).collect();
    let (status, answer) =
        server.api("POST", "/api/v1/stations/CS-LIM-1/set-variables", &token, Some(&json!({"setVariableData": set})));
    assert_eq!(status, 200, "{answer}");
    let results = answer["setVariableResult"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = results
        .iter()
        .map(|r| {
            (
                r["variable"]["name"].as_str().unwrap().to_owned(),
                r["attributeStatus"].as_str().unwrap().to_owned(),
                r["attributeStatusInfo"]["reasonCode"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        summary,
        [
            s("V1", "Accepted", ""),
            s("V2", "Accepted", ""),
            s("V3", "Rejected", "NoAnswer"),
            s("V4", "Rejected", "NoAnswer"),
            s("V5", "Accepted", ""),
        ],
        "{answer}"
    );
    assert!(results[2]["attributeStatusInfo"]["additionalInfo"].as_str().unwrap().contains("GenericError"), "{answer}");

    // What was set stays set.
    let check = [item("TestCtrlr", "V1"), item("TestCtrlr", "V2"), item("TestCtrlr", "V5")];
    let (status, answer) = server.api(
        "POST",
        "/api/v1/stations/CS-LIM-1/ocpp/GetVariables",
        &token,
        Some(&json!({"getVariableData": check})),
    );
    assert_eq!(status, 200, "{answer}");
    let values: Vec<&str> =
        answer["getVariableResult"].as_array().unwrap().iter().map(|r| r["attributeValue"].as_str().unwrap()).collect();
    assert_eq!(values, ["value-1", "value-2", "value-5"], "{answer}");

    let lines = station.finish();
    // Every call the station got was within its limits, except the one it was told to fail.
    let refused: Vec<&Value> = lines.iter().filter(|l| l["step"] == "refused").collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["code"], "GenericError");
    let frames: Vec<&Value> = lines.iter().filter(|l| l["step"] == "frame").collect();
    // Limits query 1; five items in 3 calls ([2], [1: the long one, by bytes], [2]);
    // five settings in 3; the check of three in 2.
    assert_eq!(frames.len(), 9, "{frames:?}");
    for f in &frames {
        assert!(f["items"].as_u64().unwrap() <= ITEMS as u64, "{f}");
        assert!(f["bytes"].as_u64().unwrap() <= BYTES as u64, "{f}");
    }
    // The GetVariables limits were asked for once; the SetVariables ones came from the report.
    let asked: Vec<&Value> = lines
        .iter()
        .filter(|l| l["step"] == "received" && l["data"][0]["component"]["name"] == "DeviceDataCtrlr")
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["data"][0]["variable"]["instance"], "GetVariables");
}

/// A station that takes one item a call refuses even the two-item question
/// for its limits; the CSMS asks one variable at a time, then sends one item a call.
#[test]
fn a_station_taking_one_item_a_call_is_asked_one_limit_at_a_time() {
    let env = Env::new(Db::Sqlite);
    let server = env.serve(&[]);
    let creds = env.add_station("CS-LIM-2", 3, None).unwrap();
    let token = env.cli(&["token", "--tenant", "default", "--role", "operator"]).trim().to_owned();
    let args = tls_args(&server, &server.wss(), "CS-LIM-2", Some(&creds));
    let station = BackgroundCharger::spawn(
        &[strs(&args), vec!["--items-per-message", "1", "--steps", "boot,serve", "--serve-seconds", "30"]].concat(),
    );
    wait_for("the station to connect", 20, || {
        let (_, s) = server.api("GET", "/api/v1/stations/CS-LIM-2", &token, None);
        s["connected"] == true && s["boot"]["status"] == "Accepted"
    });
    let wanted = [item("OCPPCommCtrlr", "HeartbeatInterval"), item("Nowhere", "Nothing"), item("AuthCtrlr", "Enabled")];
    let (status, answer) = server.api(
        "POST",
        "/api/v1/stations/CS-LIM-2/get-variables",
        &token,
        Some(&json!({"getVariableData": wanted})),
    );
    assert_eq!(status, 200, "{answer}");
    let statuses: Vec<&str> = answer["getVariableResult"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attributeStatus"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Accepted", "UnknownVariable", "UnknownVariable"], "{answer}");
    let lines = station.finish();
    let items: Vec<u64> = lines.iter().filter(|l| l["step"] == "frame").map(|l| l["items"].as_u64().unwrap()).collect();
    // The two-item question (refused), each limit alone, then the three items one by one.
    assert_eq!(items, [2, 1, 1, 1, 1, 1], "{lines:?}");
}
