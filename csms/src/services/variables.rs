//! B05/B06: GetVariables and SetVariables within the station's limits.
//!
//! A station may refuse a call with more items than its
//! `DeviceDataCtrlr.ItemsPerMessage` or more bytes than its
//! `DeviceDataCtrlr.BytesPerMessage` (instance `GetVariables` /
//! `SetVariables`). The operator's request is split so that every call the
//! station sees respects both, the calls go one after the other, and the
//! answers are joined in the order of the request. The limits come from the
//! station's NotifyReport, or else are asked for once per connection.
//!
//! When some calls got an answer and others did not, the answer still has one
//! result per item: those without an answer say `Rejected` with
//! `attributeStatusInfo.reasonCode` [`NO_ANSWER`] (the call was sent and its
//! outcome is unknown, or the station refused the whole call) or [`NOT_SENT`]
//! (the CSMS stopped before sending it), and `additionalInfo` says why.

use std::ops::Range;

use ocpp::v201::{Action, ComponentType, Direction, GetVariableDataType, GetVariablesRequest, VariableType};
use serde_json::{Value, json};

use super::Services;
use super::stations::call_failure;
use crate::engines::reports::device_limits::{
    BYTES_PER_MESSAGE, COMPONENT, ITEMS_PER_MESSAGE, MessageLimits, VariablesCall,
};
use crate::error::{Error, Result};
use crate::link::CallFailure;

/// reasonCode of an item whose call was sent but got no usable answer.
pub const NO_ANSWER: &str = "NoAnswer";
/// reasonCode of an item whose call was never sent.
pub const NOT_SENT: &str = "NotSent";

/// Longest message id this CSMS sends (OCPP-J allows 36 characters); frames
/// are sized with it so that a limit holds whatever id the call gets.
const MAX_MESSAGE_ID: usize = 36;

/// The request and answer arrays of each call.
fn keys(call: VariablesCall) -> (&'static str, &'static str) {
    match call {
        VariablesCall::Get => ("getVariableData", "getVariableResult"),
        VariablesCall::Set => ("setVariableData", "setVariableResult"),
    }
}

/// Splits `items` of `payload[list]` into consecutive ranges, each within
/// `limits`: at most `items` entries, and at most `bytes` bytes for the whole
/// OCPP-J CALL frame `[2,"<id>","<action>",{...}]` as the station receives it
/// (the other fields of `payload` repeat in every call). An item too large for
/// the byte limit alone goes in a call of its own.
pub fn split(action: &str, payload: &Value, list: &str, limits: MessageLimits) -> Vec<Range<usize>> {
    let items = payload.get(list).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let max_items = limits.items.unwrap_or(usize::MAX).max(1);
    // The frame with an empty list: `[2,"` id `","` action `",` payload `]`.
    let mut empty = payload.clone();
    if let Some(o) = empty.as_object_mut() {
        o.insert(list.to_owned(), Value::Array(Vec::new()));
    }
    let base = 4 + MAX_MESSAGE_ID + 3 + action.len() + 2 + empty.to_string().len() + 1;
    let mut ranges = Vec::new();
    let (mut start, mut size) = (0, base);
    for (i, item) in items.iter().enumerate() {
        let len = item.to_string().len();
        let count = i - start;
        let grown = size + len + usize::from(count > 0);
        let over_bytes = limits.bytes.is_some_and(|b| grown > b);
        if count > 0 && (count >= max_items || over_bytes) {
            ranges.push(start..i);
            start = i;
            size = base + len;
        } else {
            size = grown;
        }
    }
    if start < items.len() {
        ranges.push(start..items.len());
    }
    ranges
}

impl Services {
    /// GetVariables or SetVariables from the API, split to the station's limits.
    pub(super) async fn variables_call(
        &self,
        tenant: &str,
        station: &str,
        action: Action,
        payload: Value,
    ) -> Result<Value> {
        let call = if action == Action::GetVariables { VariablesCall::Get } else { VariablesCall::Set };
        let (list, results_key) = keys(call);
        let count = payload.get(list).and_then(Value::as_array).map_or(0, Vec::len);
        // One item (or an invalid request, refused by the link) cannot be split.
        if count <= 1 || ocpp::v201::validate(action, Direction::Request, &payload).is_err() {
            return self.send_variables(tenant, station, action, payload).await;
        }
        let limits = match self.limits.get(tenant, station, call) {
            Some(l) => l,
            None => self.ask_limits(tenant, station, call).await?,
        };
        let ranges = split(action.as_str(), &payload, list, limits);
        if ranges.len() == 1 {
            return self.send_variables(tenant, station, action, payload).await;
        }
        tracing::info!(
            station, tenant, action = action.as_str(), items = count, calls = ranges.len(),
            items_per_message = ?limits.items, bytes_per_message = ?limits.bytes,
            "splitting to the station's limits"
        );
        let items = payload.get(list).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut results: Vec<Value> = Vec::with_capacity(count);
        let mut answered = false;
        let mut first_failure: Option<CallFailure> = None;
        let mut stopped: Option<String> = None;
        for (n, range) in ranges.iter().enumerate() {
            let chunk = &items[range.clone()];
            if let Some(why) = &stopped {
                results.extend(chunk.iter().map(|i| unanswered(i, NOT_SENT, why)));
                continue;
            }
            let mut part = payload.clone();
            if let Some(o) = part.as_object_mut() {
                o.insert(list.to_owned(), Value::Array(chunk.to_vec()));
            }
            match self.ctx.link.send(tenant, station, action, part).await {
                Ok(answer) => {
                    answered = true;
                    let got = answer.get(results_key).and_then(Value::as_array).cloned().unwrap_or_default();
                    let missing = chunk.len().saturating_sub(got.len());
                    results.extend(got);
                    // A station that answered fewer results than items: the rest say so.
                    let why = format!(
                        "the station answered {} of {} items of call {}",
                        chunk.len() - missing,
                        chunk.len(),
                        n + 1
                    );
                    results.extend(chunk[chunk.len() - missing..].iter().map(|i| unanswered(i, NO_ANSWER, &why)));
                }
                Err(f) => {
                    let why = format!("call {} of {} failed: {f}", n + 1, ranges.len());
                    tracing::warn!(station, tenant, action = action.as_str(), error = %f, "part of a split call failed");
                    results.extend(chunk.iter().map(|i| unanswered(i, NO_ANSWER, &why)));
                    // A CALLERROR refuses that call only; anything else (closed,
                    // timed out, busy) stops here.
                    if !matches!(f, CallFailure::Rejected { .. }) {
                        stopped = Some(format!("not sent after call {} of {} failed: {f}", n + 1, ranges.len()));
                    }
                    first_failure.get_or_insert(f);
                }
            }
        }
        if !answered && let Some(f) = first_failure {
            return Err(call_failure(station, action.as_str(), f));
        }
        let joined = json!({ results_key: results });
        ocpp::v201::validate(action, Direction::Response, &joined)
            .map_err(|v| Error::internal(format!("joined {} answer is invalid: {v}", action.as_str())))?;
        Ok(joined)
    }

    async fn send_variables(&self, tenant: &str, station: &str, action: Action, payload: Value) -> Result<Value> {
        let answer = self
            .ctx
            .link
            .send(tenant, station, action, payload)
            .await
            .map_err(|f| call_failure(station, action.as_str(), f))?;
        if action == Action::GetVariables {
            self.limits.learn_from_results(tenant, station, &answer);
        }
        Ok(answer)
    }

    /// B06: asks the station for its ItemsPerMessage and BytesPerMessage of
    /// `call` (one call with both; one at a time if it refuses two items).
    async fn ask_limits(&self, tenant: &str, station: &str, call: VariablesCall) -> Result<MessageLimits> {
        let item = |name: &str| GetVariableDataType {
            custom_data: None,
            attribute_type: None,
            component: ComponentType { custom_data: None, evse: None, instance: None, name: COMPONENT.into() },
            variable: VariableType { custom_data: None, instance: Some(call.instance().into()), name: name.into() },
        };
        let both = vec![item(ITEMS_PER_MESSAGE), item(BYTES_PER_MESSAGE)];
        let request = |data| ocpp::v201::encode(&GetVariablesRequest { custom_data: None, get_variable_data: data });
        let failed = |f| call_failure(station, "GetVariables (DeviceDataCtrlr limits)", f);
        // The station answered, but not with the limits: a CALLERROR (perhaps
        // it takes one item at a time) or an unusable answer.
        let no_limits = |f: &CallFailure| {
            matches!(
                f,
                CallFailure::Rejected { .. } | CallFailure::InvalidResponse(_) | CallFailure::MalformedResponse(_)
            )
        };
        match self.ctx.link.send(tenant, station, Action::GetVariables, request(both.clone())).await {
            Ok(answer) => self.limits.learn_from_results(tenant, station, &answer),
            Err(f) if no_limits(&f) => {
                for one in both {
                    match self.ctx.link.send(tenant, station, Action::GetVariables, request(vec![one])).await {
                        Ok(answer) => self.limits.learn_from_results(tenant, station, &answer),
                        Err(f) if no_limits(&f) => {}
                        Err(f) => return Err(failed(f)),
                    }
                }
            }
            Err(f) => return Err(failed(f)),
        }
        // What the station would not say is no limit (until it connects again):
        // the request goes as it is.
        self.limits.settle(tenant, station, call);
        Ok(self.limits.get(tenant, station, call).unwrap_or_default())
    }
}

/// The result of an item no answer covers, in the shape of the call's answer.
fn unanswered(item: &Value, reason: &str, why: &str) -> Value {
    let mut r = json!({
        "attributeStatus": "Rejected",
        "attributeStatusInfo": { "reasonCode": reason, "additionalInfo": truncate(why, 512) },
        "component": item.get("component").cloned().unwrap_or(Value::Null),
        "variable": item.get("variable").cloned().unwrap_or(Value::Null),
    });
    if let (Some(t), Some(o)) = (item.get("attributeType"), r.as_object_mut()) {
        o.insert("attributeType".into(), t.clone());
    }
    r
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocpp::{Call, Frame, MessageId};

    fn get_item(name: &str) -> Value {
        json!({"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": name}})
    }

    /// The frame the station receives for `range`, with the longest message id.
    fn frame(payload: &Value, list: &str, range: Range<usize>) -> String {
        let mut part = payload.clone();
        let items = payload[list].as_array().unwrap()[range].to_vec();
        part[list] = Value::Array(items);
        let id = MessageId::new("f".repeat(MAX_MESSAGE_ID)).unwrap();
        Frame::Call(Call::new(id, "GetVariables", part)).to_json()
    }

    #[test]
    fn splits_by_item_count() {
        let payload = json!({"getVariableData": (0..5).map(|i| get_item(&format!("V{i}"))).collect::<Vec<_>>()});
        let limits = MessageLimits { items: Some(2), bytes: None };
        assert_eq!(split("GetVariables", &payload, "getVariableData", limits), [0..2, 2..4, 4..5]);
        let none = MessageLimits::default();
        assert_eq!(split("GetVariables", &payload, "getVariableData", none), vec![0..5]);
    }

    #[test]
    fn byte_limit_counts_the_whole_frame_the_station_receives() {
        let names = ["A", "HeartbeatInterval", "B", "A-much-longer-variable-name-than-the-others", "C", "D"];
        let payload = json!({
            "customData": {"vendorId": "com.example"},
            "getVariableData": names.iter().map(|n| get_item(n)).collect::<Vec<_>>(),
        });
        let list = "getVariableData";
        // The byte limit at the exact size of a two-item frame fits those two and no more.
        let two = frame(&payload, list, 0..2).len();
        let limits = MessageLimits { items: Some(10), bytes: Some(two) };
        let ranges = split("GetVariables", &payload, list, limits);
        assert_eq!(ranges[0], 0..2, "{ranges:?}");
        let mut next = 0;
        for r in &ranges {
            assert_eq!(r.start, next, "consecutive, in order");
            next = r.end;
            let f = frame(&payload, list, r.clone());
            assert!(f.len() <= two || r.len() == 1, "{r:?}: {} > {two}", f.len());
            // Adding the next item would have gone over.
            if r.end < names.len() {
                assert!(frame(&payload, list, r.start..r.end + 1).len() > two, "{r:?} could have held one more");
            }
        }
        assert_eq!(next, names.len());
        // Both limits at once: the stricter wins.
        let limits = MessageLimits { items: Some(1), bytes: Some(two) };
        assert_eq!(split("GetVariables", &payload, list, limits).len(), names.len());
    }

    #[test]
    fn an_item_larger_than_the_byte_limit_goes_alone() {
        let payload = json!({"getVariableData": [get_item("A"), get_item(&"X".repeat(200)), get_item("B")]});
        let limits = MessageLimits { items: None, bytes: Some(120) };
        assert_eq!(split("GetVariables", &payload, "getVariableData", limits), [0..1, 1..2, 2..3]);
    }

    #[test]
    fn unanswered_items_are_valid_results_that_say_why() {
        for (action, key) in [(Action::GetVariables, "getVariableResult"), (Action::SetVariables, "setVariableResult")]
        {
            let item = json!({"attributeType": "Target", "component": {"name": "C"}, "variable": {"name": "V"}, "attributeValue": "1"});
            let r = unanswered(&item, NO_ANSWER, &"x".repeat(600));
            assert_eq!(r["attributeStatusInfo"]["reasonCode"], NO_ANSWER);
            assert_eq!(r["attributeType"], "Target");
            let answer = json!({ key: [r] });
            assert!(ocpp::v201::validate(action, Direction::Response, &answer).is_ok(), "{answer}");
        }
    }
}
