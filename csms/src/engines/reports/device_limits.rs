//! B05/B06: how many items, and how many bytes, a station accepts in one
//! GetVariables or SetVariables call (`DeviceDataCtrlr.ItemsPerMessage` and
//! `DeviceDataCtrlr.BytesPerMessage`, instance `GetVariables` or
//! `SetVariables`). Learnt from the station's NotifyReport messages and from
//! its answers to GetVariables; forgotten when it connects again, since a new
//! connection may follow new firmware.
//!
//! Memory: at most four numbers per station, and entries are replaced, never
//! accumulated.

use dashmap::DashMap;
use serde_json::Value;

/// The device-model component that holds the limits.
pub const COMPONENT: &str = "DeviceDataCtrlr";
pub const ITEMS_PER_MESSAGE: &str = "ItemsPerMessage";
pub const BYTES_PER_MESSAGE: &str = "BytesPerMessage";

/// Which call the limits are for (the variable instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VariablesCall {
    Get,
    Set,
}

impl VariablesCall {
    /// The variable instance that names this call.
    pub fn instance(self) -> &'static str {
        match self {
            VariablesCall::Get => "GetVariables",
            VariablesCall::Set => "SetVariables",
        }
    }

    fn from_instance(instance: &str) -> Option<VariablesCall> {
        match instance {
            "GetVariables" => Some(VariablesCall::Get),
            "SetVariables" => Some(VariablesCall::Set),
            _ => None,
        }
    }
}

/// What a station accepts in one call; `None`: no limit (the station does not
/// have the variable, or did not give a usable value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageLimits {
    pub items: Option<usize>,
    pub bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    Items,
    Bytes,
}

/// One station's limits: ItemsPerMessage and BytesPerMessage of GetVariables,
/// then of SetVariables. `None`: not known yet; `Some(None)`: known to be none.
type Known = [Option<Option<usize>>; 4];

fn slot(call: VariablesCall, measure: Measure) -> usize {
    match (call, measure) {
        (VariablesCall::Get, Measure::Items) => 0,
        (VariablesCall::Get, Measure::Bytes) => 1,
        (VariablesCall::Set, Measure::Items) => 2,
        (VariablesCall::Set, Measure::Bytes) => 3,
    }
}

/// The limits of each station, as far as they are known.
#[derive(Debug, Default)]
pub struct DeviceLimits {
    /// By (tenant, station).
    known: DashMap<(String, String), Known>,
}

impl DeviceLimits {
    /// The limits of `call` when both are known.
    pub fn get(&self, tenant: &str, station: &str, call: VariablesCall) -> Option<MessageLimits> {
        let known = self.known.get(&(tenant.to_owned(), station.to_owned()))?;
        let items = known[slot(call, Measure::Items)]?;
        let bytes = known[slot(call, Measure::Bytes)]?;
        Some(MessageLimits { items, bytes })
    }

    /// Forgets what is known of a station (it connected again).
    pub fn forget(&self, tenant: &str, station: &str) {
        self.known.remove(&(tenant.to_owned(), station.to_owned()));
    }

    /// Learns from a NotifyReport payload (validated): every `reportData` of
    /// `DeviceDataCtrlr.ItemsPerMessage` / `BytesPerMessage` with its Actual value.
    pub fn learn_from_report(&self, tenant: &str, station: &str, payload: &Value) {
        let Some(data) = payload.get("reportData").and_then(Value::as_array) else { return };
        for d in data {
            let actual = d.get("variableAttribute").and_then(Value::as_array).and_then(|attrs| {
                attrs.iter().find(|a| a.get("type").and_then(Value::as_str).unwrap_or("Actual") == "Actual")
            });
            if let Some((call, measure)) = limit_variable(d) {
                let value = actual.and_then(|a| a.get("value")).and_then(Value::as_str).and_then(parse_limit);
                self.set(tenant, station, call, measure, value);
            }
        }
    }

    /// Learns from a GetVariablesResponse payload (validated): each result for a
    /// limit variable; a result other than Accepted means the station has no
    /// such limit.
    pub fn learn_from_results(&self, tenant: &str, station: &str, response: &Value) {
        let Some(results) = response.get("getVariableResult").and_then(Value::as_array) else { return };
        for r in results {
            let Some((call, measure)) = limit_variable(r) else { continue };
            if r.get("attributeType").and_then(Value::as_str).unwrap_or("Actual") != "Actual" {
                continue;
            }
            let accepted = r.get("attributeStatus").and_then(Value::as_str) == Some("Accepted");
            let value = r.get("attributeValue").and_then(Value::as_str).filter(|_| accepted).and_then(parse_limit);
            self.set(tenant, station, call, measure, value);
        }
    }

    /// Takes what is still unknown of `call`'s limits as no limit: the station
    /// was asked and did not say.
    pub fn settle(&self, tenant: &str, station: &str, call: VariablesCall) {
        let mut known = self.known.entry((tenant.to_owned(), station.to_owned())).or_default();
        for measure in [Measure::Items, Measure::Bytes] {
            known[slot(call, measure)].get_or_insert(None);
        }
    }

    fn set(&self, tenant: &str, station: &str, call: VariablesCall, measure: Measure, value: Option<usize>) {
        self.known.entry((tenant.to_owned(), station.to_owned())).or_default()[slot(call, measure)] = Some(value);
    }
}

/// The call and measure a `{component, variable}` item names, if it is a limit.
fn limit_variable(item: &Value) -> Option<(VariablesCall, Measure)> {
    let component = item.get("component")?;
    if component.get("name")?.as_str()? != COMPONENT || component.get("evse").is_some() {
        return None;
    }
    let variable = item.get("variable")?;
    let measure = match variable.get("name")?.as_str()? {
        ITEMS_PER_MESSAGE => Measure::Items,
        BYTES_PER_MESSAGE => Measure::Bytes,
        _ => return None,
    };
    Some((VariablesCall::from_instance(variable.get("instance")?.as_str()?)?, measure))
}

/// A positive integer; anything else is no usable limit.
fn parse_limit(v: &str) -> Option<usize> {
    v.trim().parse::<usize>().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(variable: &str, instance: &str, value: &str) -> Value {
        json!({"component": {"name": COMPONENT}, "variable": {"name": variable, "instance": instance},
               "variableAttribute": [{"type": "Target", "value": "999"}, {"value": value}]})
    }

    #[test]
    fn limits_are_learnt_from_a_report_and_forgotten_on_reconnect() {
        let limits = DeviceLimits::default();
        let report = json!({"requestId": 1, "generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0, "reportData": [
            item(ITEMS_PER_MESSAGE, "GetVariables", "2"),
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "ItemsPerMessage", "instance": "GetVariables"},
             "variableAttribute": [{"value": "7"}]},
        ]});
        limits.learn_from_report("t", "CS1", &report);
        assert_eq!(limits.get("t", "CS1", VariablesCall::Get), None, "bytes still unknown");
        let report = json!({"reportData": [item(BYTES_PER_MESSAGE, "GetVariables", "not a number"),
                                           item(ITEMS_PER_MESSAGE, "SetVariables", "3")]});
        limits.learn_from_report("t", "CS1", &report);
        assert_eq!(limits.get("t", "CS1", VariablesCall::Get), Some(MessageLimits { items: Some(2), bytes: None }));
        assert_eq!(limits.get("t", "CS1", VariablesCall::Set), None);
        assert_eq!(limits.get("other", "CS1", VariablesCall::Get), None, "per tenant");
        limits.forget("t", "CS1");
        assert_eq!(limits.get("t", "CS1", VariablesCall::Get), None);
    }

    #[test]
    fn limits_are_learnt_from_get_variables_results() {
        let limits = DeviceLimits::default();
        let answer = json!({"getVariableResult": [
            {"attributeStatus": "Accepted", "attributeValue": "4",
             "component": {"name": COMPONENT}, "variable": {"name": ITEMS_PER_MESSAGE, "instance": "SetVariables"}},
            {"attributeStatus": "UnknownVariable",
             "component": {"name": COMPONENT}, "variable": {"name": BYTES_PER_MESSAGE, "instance": "SetVariables"}},
        ]});
        limits.learn_from_results("t", "CS1", &answer);
        assert_eq!(limits.get("t", "CS1", VariablesCall::Set), Some(MessageLimits { items: Some(4), bytes: None }));
        // A station that did not say: no limit, and what it said stays.
        limits.learn_from_results("t", "CS2", &json!({"getVariableResult": []}));
        assert_eq!(limits.get("t", "CS2", VariablesCall::Get), None);
        limits.settle("t", "CS2", VariablesCall::Get);
        assert_eq!(limits.get("t", "CS2", VariablesCall::Get), Some(MessageLimits::default()));
        limits.settle("t", "CS1", VariablesCall::Set);
        assert_eq!(limits.get("t", "CS1", VariablesCall::Set), Some(MessageLimits { items: Some(4), bytes: None }));
    }
}
