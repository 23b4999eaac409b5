//! What the CSMS does with every text frame a station sends, before any engine
//! sees it: parse the OCPP-J frame into a `Value`, then validate
//! the payload against its action's schema, per action, with payloads shaped as
//! chargers send them (the MeterValues one is the load tool's: 11 sampled
//! values of a 3-phase AC charger). `raw_call_validate_text` is the path the
//! session takes for a CALL: `RawCall::parse` keeps the payload as text and
//! `check_request_text` checks it as it reads it; `frame_parse_and_validate`
//! is the fallback through a `Value` (a text that names a property twice, or
//! one that does not conform, where the walk names the violation). A third
//! figure adds the typed decode the engines of Heartbeat and StatusNotification do.
//!
//! `cargo bench -p ocpp --bench frames`; read "time" (per frame) or "elem/s".

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failure is a panic

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ocpp::v201::{Action, Direction, Payload, TextCheck};
use ocpp::{Frame, RawCall};

/// MeterValues as the load tool sends them: 11 sampled values of a 3-phase AC charger.
const METER_VALUES: &str = include_str!("meter_values.json");

const TS: &str = "2026-12-02T10:00:00Z";

/// (action, payload) as a charger sends them.
fn samples() -> Vec<(Action, String)> {
    vec![
        (Action::Heartbeat, "{}".to_owned()),
        (
            Action::StatusNotification,
            format!(r#"{{"timestamp":"{TS}","connectorStatus":"Available","evseId":1,"connectorId":1}}"#),
        ),
        (Action::MeterValues, METER_VALUES.trim().to_owned()),
        (
            Action::BootNotification,
            r#"{"reason":"PowerUp","chargingStation":{"model":"AC-22","vendorName":"Anchorpoint Bench","serialNumber":"SN-000123","firmwareVersion":"1.4.2","modem":{"iccid":"8931000000000000001","imsi":"204040000000001"}}}"#.to_owned(),
        ),
        (
            Action::TransactionEvent,
            format!(
                r#"{{"eventType":"Updated","timestamp":"{TS}","triggerReason":"MeterValuePeriodic","seqNo":17,"transactionInfo":{{"transactionId":"tx-0001","chargingState":"Charging"}},"evse":{{"id":1,"connectorId":1}},"meterValue":[{{"timestamp":"{TS}","sampledValue":[{{"value":12345.6,"measurand":"Energy.Active.Import.Register","unitOfMeasure":{{"unit":"Wh"}}}},{{"value":11040.5,"measurand":"Power.Active.Import"}}]}}]}}"#
            ),
        ),
        (
            Action::SecurityEventNotification,
            format!(r#"{{"type":"StartupOfTheDevice","timestamp":"{TS}","techInfo":"bench"}}"#),
        ),
    ]
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_parse_and_validate");
    group.throughput(Throughput::Elements(1));
    for (action, payload) in samples() {
        let text = format!(r#"[2,"19223201","{}",{payload}]"#, action.as_str());
        // The sample must be one the CSMS accepts, or the figure measures a refusal.
        let Frame::Call(call) = Frame::parse(&text).unwrap() else { panic!("not a call") };
        ocpp::v201::validate(action, Direction::Request, &call.payload).expect("valid sample");
        group.bench_function(action.as_str(), |b| {
            b.iter(|| {
                let Frame::Call(call) = Frame::parse(std::hint::black_box(&text)).unwrap() else { unreachable!() };
                let name = Action::from_name(&call.action).unwrap();
                ocpp::v201::validate(name, Direction::Request, &call.payload).unwrap();
                std::hint::black_box(call)
            });
        });
    }
    group.finish();

    // The path the CSMS takes for a CALL: the frame read with its payload
    // left as text, the text checked as it is read (no Value built).
    let mut group = c.benchmark_group("raw_call_validate_text");
    group.throughput(Throughput::Elements(1));
    for (action, payload) in samples() {
        let text = format!(r#"[2,"19223201","{}",{payload}]"#, action.as_str());
        let raw = RawCall::parse(&text).expect("a call");
        // Kept as text, or the figure measures the fallback.
        assert!(matches!(ocpp::v201::check_request_text(action, raw.payload), TextCheck::Conforms(Payload::Text(_))));
        group.bench_function(action.as_str(), |b| {
            b.iter(|| {
                let raw = RawCall::parse(std::hint::black_box(&text)).unwrap();
                let name = Action::from_name(raw.action).unwrap();
                std::hint::black_box(ocpp::v201::check_request_text(name, raw.payload));
            });
        });
    }
    group.finish();

    // The two halves apart, for the largest payload.
    let meter = format!(r#"[2,"19223201","MeterValues",{}]"#, METER_VALUES.trim());
    let mut group = c.benchmark_group("frame_parse_only");
    group.throughput(Throughput::Elements(1));
    group.bench_function("MeterValues", |b| b.iter(|| Frame::parse(std::hint::black_box(&meter)).unwrap()));
    group.finish();
    let Frame::Call(parsed) = Frame::parse(&meter).unwrap() else { panic!("not a call") };
    let mut group = c.benchmark_group("validate_only");
    group.throughput(Throughput::Elements(1));
    group.bench_function("MeterValues", |b| {
        b.iter(|| ocpp::v201::validate(Action::MeterValues, Direction::Request, std::hint::black_box(&parsed.payload)))
    });
    group.finish();

    let mut group = c.benchmark_group("frame_parse_validate_decode");
    group.throughput(Throughput::Elements(1));
    let status = format!(
        r#"[2,"19223201","StatusNotification",{{"timestamp":"{TS}","connectorStatus":"Available","evseId":1,"connectorId":1}}]"#
    );
    group.bench_function("StatusNotification", |b| {
        b.iter(|| {
            let Frame::Call(call) = Frame::parse(std::hint::black_box(&status)).unwrap() else { unreachable!() };
            ocpp::v201::validate(Action::StatusNotification, Direction::Request, &call.payload).unwrap();
            let req: ocpp::v201::StatusNotificationRequest =
                ocpp::v201::decode_validated_request(call.payload).unwrap();
            std::hint::black_box(req)
        });
    });
    group.bench_function("StatusNotification as text", |b| {
        b.iter(|| {
            let raw = RawCall::parse(std::hint::black_box(&status)).unwrap();
            let TextCheck::Conforms(payload) = ocpp::v201::check_request_text(Action::StatusNotification, raw.payload)
            else {
                unreachable!()
            };
            let req: ocpp::v201::StatusNotificationRequest = payload.decode().unwrap();
            std::hint::black_box(req)
        });
    });
    group.finish();

    // The answer the CSMS writes back, for comparison with the parse.
    let mut group = c.benchmark_group("frame_encode_answer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("HeartbeatResponse", |b| {
        b.iter(|| {
            let payload = serde_json::json!({"currentTime": TS});
            let frame = Frame::CallResult(ocpp::CallResult::new(ocpp::MessageId::new("19223201").unwrap(), payload));
            std::hint::black_box(frame.to_json())
        });
    });
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
