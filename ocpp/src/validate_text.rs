//! The schema check of [`crate::validate`] run over a payload's JSON text as
//! it is read, without building a `serde_json::Value` tree.
//!
//! It answers only whether the text conforms: every refusal, whatever its
//! cause, sends the caller to the `Value` walk ([`crate::validate`]), which
//! names the violation precisely. So the two must agree on what conforms, and
//! this one must never accept what the walk refuses: it uses the walk's own
//! leaf checks on the values serde_json hands to both (the same numbers, the
//! same strings), and reads even the values no schema describes (customData's
//! other names, free-form `data`) as strictly as serde_json reads a `Value`
//! (escapes, number range, nesting depth). It is stricter in one way: a
//! property name repeated in any object is refused here (the `Value` walk sees
//! only the last of them), so a text accepted here can be kept verbatim: it
//! means the same to every reader, whichever occurrence of a repeated name
//! that reader would take. The unit tests compare the two on mutations of
//! valid payloads, and on texts that are not JSON a `Value` can hold.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::v201::DateTime;
use crate::validate::{Integer, Node, ObjectSchema, in_range, integer};

/// The deepest nesting of arrays and objects a payload may have, the payload
/// object itself counted as 1: what [`crate::Frame::parse`] reads inside the
/// frame's own array (serde_json's recursion limit). A deeper payload is not
/// JSON as a frame is read, and is left to `Frame::parse` to refuse.
pub(crate) const MAX_PAYLOAD_DEPTH: usize = 126;

/// Whether `text` is one JSON object that conforms to `schema`, no deeper
/// than [`MAX_PAYLOAD_DEPTH`], with no property named twice in any object.
pub(crate) fn conforms(schema: &'static ObjectSchema, text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    ObjectSeed(schema, 1).deserialize(&mut de).is_ok() && de.end().is_ok()
}

/// Whether `text` is one JSON object as [`crate::Frame::parse`] reads a
/// payload: strings and numbers that serde_json reads into a `Value`, no
/// deeper than [`MAX_PAYLOAD_DEPTH`]. (Repeated names are JSON.)
pub(crate) fn is_json_object(text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    text.trim_start().starts_with('{')
        && AnySeed { depth: 1, repeats: Repeats::Allowed }.deserialize(&mut de).is_ok()
        && de.end().is_ok()
}

/// The nesting depth of `value` (a scalar is 0, `{}` and `[]` are 1).
pub(crate) fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn refuse<E: serde::de::Error>() -> E {
    // The message is never shown: a refusal sends the caller to the Value walk.
    E::custom("does not conform")
}

/// An object or array at `depth`, refused beyond the payload's limit.
fn deeper<E: serde::de::Error>(depth: usize) -> Result<(), E> {
    if depth > MAX_PAYLOAD_DEPTH { Err(refuse()) } else { Ok(()) }
}

/// An object of `schema` at nesting depth `.1`.
struct ObjectSeed(&'static ObjectSchema, usize);

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(ObjectVisitor(self.0, self.1))
    }
}

struct ObjectVisitor(&'static ObjectSchema, usize);

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (schema, depth) = (self.0, self.1);
        deeper(depth)?;
        if schema.properties.len() > 64 {
            return Err(refuse());
        }
        let mut seen: u64 = 0;
        let mut others: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed(schema))? {
            match key {
                Key::Known(i) => {
                    let bit = 1u64 << i;
                    if seen & bit != 0 {
                        return Err(refuse());
                    }
                    seen |= bit;
                    map.next_value_seed(NodeSeed(&schema.properties[i].node, depth + 1))?;
                }
                Key::Other(name) => {
                    // Only where the schema allows other properties (KeySeed).
                    if !others.insert(name) {
                        return Err(refuse());
                    }
                    map.next_value_seed(AnySeed { depth: depth + 1, repeats: Repeats::Refused })?;
                }
            }
        }
        let missing = schema.properties.iter().enumerate().any(|(i, p)| p.required && seen & (1u64 << i) == 0);
        if missing { Err(refuse()) } else { Ok(()) }
    }
}

enum Key {
    /// The index of the property in the schema.
    Known(usize),
    /// A name the schema does not list, in an object that allows others.
    Other(String),
}

struct KeySeed(&'static ObjectSchema);

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Key, E> {
        match self.0.properties.iter().position(|p| p.name == name) {
            Some(i) => Ok(Key::Known(i)),
            None if self.0.additional_properties => Ok(Key::Other(name.to_owned())),
            None => Err(refuse()),
        }
    }
}

/// Whether an object may name a property twice.
#[derive(Clone, Copy)]
enum Repeats {
    Allowed,
    Refused,
}

/// Any JSON value at `depth`, read as strictly as into a `Value` (strings
/// with their escapes, numbers within range, the depth limit), with
/// repeated names refused unless allowed. serde's `IgnoredAny` would not
/// do: serde_json skips it without reading its strings and numbers, and
/// without the depth limit.
#[derive(Clone, Copy)]
struct AnySeed {
    depth: usize,
    repeats: Repeats,
}

impl<'de> DeserializeSeed<'de> for AnySeed {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnySeed {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // As serde_json's Value does: a float without a Number is null.
        if v.is_finite() { Ok(()) } else { Err(refuse()) }
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        deeper(self.depth)?;
        let item = AnySeed { depth: self.depth + 1, ..self };
        while seq.next_element_seed(item)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        deeper(self.depth)?;
        let item = AnySeed { depth: self.depth + 1, ..self };
        let mut names: HashSet<String> = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if matches!(self.repeats, Repeats::Refused) && !names.insert(name) {
                return Err(refuse());
            }
            map.next_value_seed(item)?;
        }
        Ok(())
    }
}

/// A value of `node` at nesting depth `.1`.
struct NodeSeed(&'static Node, usize);

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0 {
            Node::Any => AnySeed { depth: self.1, repeats: Repeats::Refused }.deserialize(d),
            Node::Object(schema) => ObjectSeed(schema, self.1).deserialize(d),
            node => d.deserialize_any(NodeVisitor(node, self.1)),
        }
    }
}

struct NodeVisitor(&'static Node, usize);

impl NodeVisitor {
    fn number<E: serde::de::Error>(&self, n: Number) -> Result<(), E> {
        let ok = match self.0 {
            Node::Integer { minimum, maximum } => match integer(&n) {
                // Bounds in the OCA schemas are small; i64 -> f64 is exact there.
                #[allow(clippy::cast_precision_loss)]
                Integer::Fits(i) => in_range(i as f64, *minimum, *maximum),
                Integer::OutOfRange | Integer::Fractional => false,
            },
            Node::Number { minimum, maximum } => in_range(n.as_f64().unwrap_or(f64::NAN), *minimum, *maximum),
            _ => false,
        };
        if ok { Ok(()) } else { Err(refuse()) }
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value of the schema")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        if matches!(self.0, Node::Boolean) { Ok(()) } else { Err(refuse()) }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.number(Number::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.number(Number::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        // As serde_json's Value does: a float without a Number is null.
        match Number::from_f64(v) {
            Some(n) => self.number(n),
            None => Err(refuse()),
        }
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        let ok = match self.0 {
            Node::String { max_length } => max_length.is_none_or(|max| s.len() <= max || s.chars().count() <= max),
            Node::DateTime => DateTime::parse(s).is_ok(),
            Node::Enum { values, .. } => values.contains(&s),
            _ => false,
        };
        if ok { Ok(()) } else { Err(refuse()) }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Node::Array { items, min_items, max_items } = self.0 else {
            return Err(refuse());
        };
        deeper(self.1)?;
        let mut count = 0usize;
        while seq.next_element_seed(NodeSeed(items, self.1 + 1))?.is_some() {
            count += 1;
            if max_items.is_some_and(|max| count > max) {
                return Err(refuse());
            }
        }
        if min_items.is_some_and(|min| count < min) { Err(refuse()) } else { Ok(()) }
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // Objects are read by ObjectSeed; an object where the schema wants
        // something else does not conform.
        Err(refuse())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::v201::{Action, Direction};
    use crate::validate::validate_payload;

    /// The Value walk's verdict (the mutations never repeat a name).
    fn walk(schema: &'static ObjectSchema, text: &str) -> bool {
        serde_json::from_str::<Value>(text).is_ok_and(|v| validate_payload(schema, &v).is_ok())
    }

    fn meter_values() -> Value {
        json!({"evseId": 1, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
            {"value": 1234, "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
             "location": "Outlet", "unitOfMeasure": {"unit": "Wh", "multiplier": 0}},
            {"value": 16.1, "measurand": "Current.Import", "phase": "L2"},
            {"value": 230.4, "customData": {"vendorId": "v", "x": [1, {"y": null}]}}
        ]}]})
    }

    fn samples() -> Vec<(Action, Value)> {
        vec![
            (Action::MeterValues, meter_values()),
            (Action::Heartbeat, json!({})),
            (
                Action::StatusNotification,
                json!({"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1}),
            ),
            (
                Action::BootNotification,
                json!({"reason": "PowerUp", "chargingStation": {"model": "AP-1", "vendorName": "Anchorpoint",
                       "firmwareVersion": "1.0", "modem": {"iccid": "8931", "imsi": "2620"}}}),
            ),
            (
                Action::Authorize,
                json!({"idToken": {"idToken": "04A2", "type": "ISO14443"}, "iso15118CertificateHashData": [
                    {"hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "01",
                     "responderURL": "http://ocsp.example"}]}),
            ),
            (
                Action::DataTransfer,
                json!({"vendorId": "com.example", "messageId": "m", "data": {"a": [1, 2, {"b": "c"}]}}),
            ),
            (
                Action::SecurityEventNotification,
                json!({"type": "FirmwareUpdated", "timestamp": "2026-01-01T00:00:00Z", "techInfo": "x"}),
            ),
        ]
    }

    /// Replacement values tried at every position of a sample.
    fn replacements() -> Vec<Value> {
        vec![
            Value::Null,
            json!(true),
            json!(0),
            json!(-1),
            json!(5.0),
            json!(5.5),
            json!(1e300),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(""),
            json!("x".repeat(2000)),
            json!("é".repeat(40)),
            json!("2026-13-01T00:00:00Z"),
            json!("2026-01-01T00:00:00Z"),
            json!("Available"),
            json!("Occupied"),
            json!([]),
            json!([{}]),
            json!({}),
            json!({"vendorId": "v"}),
        ]
    }

    /// Every value of `v` replaced in turn by each replacement, every
    /// property removed in turn, and an unknown property added to every object.
    fn mutations(v: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        mutate(v, &mut Vec::new(), v, &mut out);
        out
    }

    fn at<'a>(root: &'a mut Value, path: &[PathStep]) -> &'a mut Value {
        path.iter().fold(root, |v, s| match s {
            PathStep::Key(k) => &mut v[k.as_str()],
            PathStep::Index(i) => &mut v[*i],
        })
    }

    #[derive(Clone)]
    enum PathStep {
        Key(String),
        Index(usize),
    }

    fn mutate(root: &Value, path: &mut Vec<PathStep>, v: &Value, out: &mut Vec<Value>) {
        for r in replacements() {
            let mut m = root.clone();
            *at(&mut m, path) = r;
            out.push(m);
        }
        match v {
            Value::Object(map) => {
                for k in map.keys() {
                    let mut m = root.clone();
                    if let Value::Object(o) = at(&mut m, path) {
                        o.remove(k);
                    }
                    out.push(m);
                }
                let mut m = root.clone();
                if let Value::Object(o) = at(&mut m, path) {
                    o.insert("unknownProperty".into(), json!(1));
                }
                out.push(m);
                for (k, child) in map {
                    path.push(PathStep::Key(k.clone()));
                    mutate(root, path, child, out);
                    path.pop();
                }
            }
            Value::Array(list) => {
                let mut m = root.clone();
                if let Value::Array(l) = at(&mut m, path)
                    && let Some(first) = l.first().cloned()
                {
                    l.extend(std::iter::repeat_n(first, 300));
                }
                out.push(m);
                for (i, child) in list.iter().enumerate() {
                    path.push(PathStep::Index(i));
                    mutate(root, path, child, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_text_check_agrees_with_the_value_walk_on_mutations_of_valid_payloads() {
        let mut accepted = 0;
        let mut refused = 0;
        for (action, sample) in samples() {
            let schema = action.schema(Direction::Request);
            assert!(conforms(schema, &sample.to_string()), "{action}: the sample itself");
            for m in mutations(&sample) {
                let text = m.to_string();
                let (fast, slow) = (conforms(schema, &text), walk(schema, &text));
                assert_eq!(fast, slow, "{action}: {text}");
                if fast {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Both outcomes are exercised in numbers, not just one of them.
        assert!(accepted > 100 && refused > 500, "accepted {accepted}, refused {refused}");
    }

    #[test]
    fn text_that_is_not_one_conforming_object_is_refused() {
        let schema = Action::StatusNotification.schema(Direction::Request);
        let ok = r#"{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":1,"connectorId":1}"#;
        assert!(conforms(schema, ok));
        assert!(conforms(schema, &format!("  {ok}\n")), "whitespace around the object is JSON");
        for bad in [
            "",
            "[]",
            "null",
            &format!("{ok} {{}}"),
            &ok[..ok.len() - 1],
            // A repeated name, even with the same value: the walk keeps only the last.
            r#"{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":1,"evseId":1,"connectorId":1}"#,
            // Not an integer.
            r#"{"timestamp":"2026-01-01T00:00:00Z","connectorStatus":"Available","evseId":1.5,"connectorId":1}"#,
        ] {
            assert!(!conforms(schema, bad), "{bad}");
        }
        let escaped = r#"{"timestamp":"2026-01-01T00:00:00Z","connector\u0053tatus":"Av\u0061ilable","evseId":1,"connectorId":1}"#;
        assert!(conforms(schema, escaped), "escaped names and values are read as the walk reads them");
        let other = Action::DataTransfer.schema(Direction::Request);
        assert!(conforms(other, r#"{"vendorId":"v","customData":{"vendorId":"w","a":1,"b":2}}"#));
        assert!(
            !conforms(other, r#"{"vendorId":"v","customData":{"vendorId":"w","a":1,"a":2}}"#),
            "repeated other name"
        );
    }

    /// The verdict a frame gets: `None` when [`crate::Frame::parse`] is to
    /// refuse it, else whether it conforms and was kept as text.
    fn verdict(action: Action, payload: &str) -> Option<Result<bool, crate::ErrorCode>> {
        match crate::v201::check_request_text(action, payload) {
            crate::v201::TextCheck::Conforms(p) => Some(Ok(matches!(p, crate::v201::Payload::Text(_)))),
            crate::v201::TextCheck::Violates(v) => Some(Err(v.code)),
            crate::v201::TextCheck::NotJson => None,
        }
    }

    #[test]
    fn a_payload_that_does_not_read_as_json_is_left_to_the_frame_parser() {
        let mv = |extra: &str| {
            format!(
                r#"{{"evseId":1,"meterValue":[{{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{{"value":1}}]}}],"customData":{{"vendorId":"v","x":{extra}}}}}"#
            )
        };
        // What serde_json skips over without reading (so RawCall::parse takes
        // the frame) but does not read into a Value: each in a free-form
        // place (customData), in a typed place, and in a frame refused
        // before its payload is looked at.
        for bad in ["1e400", "-1e400", r#""\ud800""#, r#""\udc00x""#, r#"{"a":"\ud800"}"#, "[1e999]"] {
            let payload = mv(bad);
            let frame = format!(r#"[2,"m1","MeterValues",{payload}]"#);
            let raw = crate::RawCall::parse(&frame).expect("serde_json skips it");
            assert!(crate::Frame::parse(&frame).is_err(), "{frame}");
            assert!(!raw.payload_is_json(), "{frame}");
            assert!(!conforms(Action::MeterValues.schema(Direction::Request), &payload), "{payload}");
            assert_eq!(verdict(Action::MeterValues, &payload), None, "{payload}");
            let typed = format!(r#"{{"evseId":{bad},"meterValue":[]}}"#);
            assert_eq!(verdict(Action::MeterValues, &typed), None, "{typed}");
            let data = format!(r#"{{"vendorId":"v","data":{bad}}}"#);
            assert_eq!(verdict(Action::DataTransfer, &data), None, "{data}");
        }
    }

    #[test]
    fn the_depth_a_payload_may_have_is_the_depth_a_frame_allows() {
        let mut both = (false, false);
        for depth in 120..=132 {
            // The payload object is level 1, `data` holds the other levels.
            let payload = format!(r#"{{"vendorId":"v","data":{}{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1));
            let frame = format!(r#"[2,"m1","DataTransfer",{payload}]"#);
            let framed = crate::Frame::parse(&frame).is_ok();
            let raw = crate::RawCall::parse(&frame).expect("serde_json skips it");
            assert_eq!(raw.payload_is_json(), framed, "depth {depth}");
            assert_eq!(verdict(Action::DataTransfer, &payload).is_some(), framed, "depth {depth}");
            if framed {
                assert_eq!(verdict(Action::DataTransfer, &payload), Some(Ok(true)), "depth {depth}");
            }
            both = (both.0 || framed, both.1 || !framed);
        }
        assert_eq!(both, (true, true), "the limit lies within the depths tried");
    }

    #[test]
    fn a_name_repeated_anywhere_keeps_the_payload_parsed() {
        let dup = [
            // In customData, among the names the schema does not list.
            (Action::DataTransfer, r#"{"vendorId":"v","customData":{"vendorId":"w","a":1,"a":2}}"#),
            // Inside a free-form value.
            (Action::DataTransfer, r#"{"vendorId":"v","data":{"a":1,"a":2}}"#),
            (Action::DataTransfer, r#"{"vendorId":"v","data":[{"b":{"a":1,"a":1}}]}"#),
            (Action::DataTransfer, r#"{"vendorId":"v","customData":{"vendorId":"w","x":{"a":1,"\u0061":2}}}"#),
        ];
        for (action, text) in dup {
            assert!(!conforms(action.schema(Direction::Request), text), "{text}");
            assert_eq!(verdict(action, text), Some(Ok(false)), "{text}");
            assert!(is_json_object(text), "{text}");
        }
        // Many names, each once.
        let names: Vec<String> = (0..9000).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let many = format!(r#"{{"vendorId":"v","customData":{{"vendorId":"w",{}}}}}"#, names.join(","));
        assert_eq!(verdict(Action::DataTransfer, &many), Some(Ok(true)));
        let data = format!(r#"{{"vendorId":"v","data":{{{}}}}}"#, names.join(","));
        assert_eq!(verdict(Action::DataTransfer, &data), Some(Ok(true)));
    }
}
