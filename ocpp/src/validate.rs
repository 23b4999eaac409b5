//! A validator over static schema descriptors, equivalent to the OCA JSON
//! schemas (draft-06) for the keywords they use.
//!
//! The descriptors are generated from the official schemas by
//! `ocpp/codegen/generate.py` (see `v201/generated.rs`). The schemas are not
//! recursive, so the recursion here is bounded by the depth of the static
//! descriptors (the generator checks this), never by the depth of the input.
//!
//! Error codes (OCPP-J 2.0.1, section 4.3):
//!
//! | schema keyword                                   | [`ErrorCode`]                   |
//! |--------------------------------------------------|---------------------------------|
//! | `type` of the whole payload                      | `FormatViolation`               |
//! | `type` of a field                                | `TypeConstraintViolation`       |
//! | `required`, `minItems`, `maxItems`               | `OccurrenceConstraintViolation` |
//! | `enum`, `maxLength`, `minimum`, `maximum`, `format: date-time` | `PropertyConstraintViolation` |
//! | `additionalProperties: false`                    | `ProtocolError`                 |
//!
//! One deliberate extension: an `integer` outside the `i64` range is a
//! `PropertyConstraintViolation` (jsonschema has unbounded integers; the typed
//! messages use `i64`).
//!
//! Within one object, missing required properties are reported first, then
//! unknown properties, then the properties' own values in schema order.

use serde_json::{Map, Number, Value};

use crate::error::ErrorCode;
use crate::v201::{DateTime, Violation};

/// The schema of a JSON object.
#[derive(Debug)]
pub struct ObjectSchema {
    /// The schema's name (the definition name, or the message name for a root).
    pub name: &'static str,
    pub properties: &'static [Property],
    /// `false` when the schema says `additionalProperties: false`.
    pub additional_properties: bool,
}

/// One property of an [`ObjectSchema`].
#[derive(Debug)]
pub struct Property {
    /// The JSON (camelCase) name.
    pub name: &'static str,
    pub required: bool,
    pub node: Node,
}

/// The schema of one JSON value.
#[derive(Debug)]
pub enum Node {
    /// `type: string`, optionally with `maxLength` (in Unicode code points).
    String { max_length: Option<usize> },
    /// `type: string, format: date-time`.
    DateTime,
    /// `type: string` with an `enum`.
    Enum { name: &'static str, values: &'static [&'static str] },
    /// `type: integer`.
    Integer { minimum: Option<f64>, maximum: Option<f64> },
    /// `type: number`.
    Number { minimum: Option<f64>, maximum: Option<f64> },
    /// `type: boolean`.
    Boolean,
    /// `type: object`.
    Object(&'static ObjectSchema),
    /// `type: array`.
    Array { items: &'static Node, min_items: Option<usize>, max_items: Option<usize> },
    /// `{}`: any JSON value.
    Any,
}

/// Validates a whole message payload against its root schema.
pub fn validate_payload(schema: &'static ObjectSchema, payload: &Value) -> Result<(), Violation> {
    let mut path = Path::default();
    match payload {
        Value::Object(map) => check_object(schema, map, &mut path),
        other => Err(path.violation(
            ErrorCode::FormatViolation,
            format!("payload of {} must be a JSON object, got {}", schema.name, json_type(other)),
        )),
    }
}

/// Rewrites, in a payload that passed [`validate_payload`], every `integer`
/// written as a float with a zero fraction (`5.0`, accepted by the schema) as
/// a JSON integer, so that it deserialises into an `i64`.
pub fn normalize_payload(schema: &'static ObjectSchema, payload: &mut Value) {
    if let Value::Object(map) = payload {
        normalize_object(schema, map);
    }
}

/// One step of a JSON pointer: a property name or an array index.
#[derive(Clone, Copy)]
enum Segment<'v> {
    Name(&'v str),
    Index(usize),
}

/// The JSON pointer being visited, as segments borrowed from the schema and
/// the input: the walk allocates nothing until it reports a violation.
#[derive(Default)]
struct Path<'v>(Vec<Segment<'v>>);

impl Path<'_> {
    fn violation(&self, code: ErrorCode, message: String) -> Violation {
        let mut pointer = String::new();
        for segment in &self.0 {
            pointer.push('/');
            match segment {
                Segment::Name(name) => pointer.push_str(&name.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => pointer.push_str(&i.to_string()),
            }
        }
        Violation { code, path: pointer, message }
    }

    fn child_violation(&self, segment: &str, code: ErrorCode, message: String) -> Violation {
        let mut path = Path(self.0.clone());
        path.0.push(Segment::Name(segment));
        path.violation(code, message)
    }
}

fn check_object<'v>(
    schema: &'static ObjectSchema,
    map: &'v Map<String, Value>,
    path: &mut Path<'v>,
) -> Result<(), Violation> {
    for p in schema.properties {
        if p.required && !map.contains_key(p.name) {
            return Err(path.child_violation(
                p.name,
                ErrorCode::OccurrenceConstraintViolation,
                format!("required property {} of {} is missing", p.name, schema.name),
            ));
        }
    }
    if !schema.additional_properties {
        for key in map.keys() {
            if !schema.properties.iter().any(|p| p.name == key) {
                return Err(path.child_violation(
                    key,
                    ErrorCode::ProtocolError,
                    format!("{} has no property of this name", schema.name),
                ));
            }
        }
    }
    for p in schema.properties {
        if let Some(value) = map.get(p.name) {
            path.0.push(Segment::Name(p.name));
            let result = check_node(&p.node, value, path);
            path.0.pop();
            result?;
        }
    }
    Ok(())
}

fn check_node<'v>(node: &'static Node, value: &'v Value, path: &mut Path<'v>) -> Result<(), Violation> {
    let type_error = |path: &Path, expected: &str| {
        path.violation(ErrorCode::TypeConstraintViolation, format!("expected {expected}, got {}", json_type(value)))
    };
    match node {
        Node::Any => Ok(()),
        Node::String { max_length } => {
            let Value::String(s) = value else {
                return Err(type_error(path, "a string"));
            };
            if let Some(max) = *max_length {
                // Bytes bound characters from above: skip the count when short.
                if s.len() > max {
                    let len = s.chars().count();
                    if len > max {
                        return Err(path.violation(
                            ErrorCode::PropertyConstraintViolation,
                            format!("string of {len} characters exceeds maxLength {max}"),
                        ));
                    }
                }
            }
            Ok(())
        }
        Node::DateTime => {
            let Value::String(s) = value else {
                return Err(type_error(path, "a date-time string"));
            };
            DateTime::parse(s)
                .map(|_| ())
                .map_err(|e| path.violation(ErrorCode::PropertyConstraintViolation, e.to_string()))
        }
        Node::Enum { name, values } => {
            let Value::String(s) = value else {
                return Err(type_error(path, "a string"));
            };
            if values.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(path.violation(ErrorCode::PropertyConstraintViolation, format!("value is not one of {name}")))
            }
        }
        Node::Integer { minimum, maximum } => {
            let Value::Number(n) = value else {
                return Err(type_error(path, "an integer"));
            };
            match integer(n) {
                Integer::Fits(i) => {
                    // Bounds in the OCA schemas are small; i64 -> f64 is exact there.
                    #[allow(clippy::cast_precision_loss)]
                    check_range(i as f64, *minimum, *maximum, path)
                }
                Integer::OutOfRange => Err(path
                    .violation(ErrorCode::PropertyConstraintViolation, "integer outside the 64-bit range".to_owned())),
                Integer::Fractional => Err(type_error(path, "an integer")),
            }
        }
        Node::Number { minimum, maximum } => {
            let Value::Number(n) = value else {
                return Err(type_error(path, "a number"));
            };
            // Without serde_json's arbitrary_precision every number has an f64 view.
            let f = n.as_f64().unwrap_or(f64::NAN);
            check_range(f, *minimum, *maximum, path)
        }
        Node::Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(type_error(path, "a boolean")),
        },
        Node::Object(schema) => match value {
            Value::Object(map) => check_object(schema, map, path),
            _ => Err(type_error(path, "an object")),
        },
        Node::Array { items, min_items, max_items } => {
            let Value::Array(list) = value else {
                return Err(type_error(path, "an array"));
            };
            if let Some(min) = *min_items
                && list.len() < min
            {
                return Err(path.violation(
                    ErrorCode::OccurrenceConstraintViolation,
                    format!("{} items, fewer than minItems {min}", list.len()),
                ));
            }
            if let Some(max) = *max_items
                && list.len() > max
            {
                return Err(path.violation(
                    ErrorCode::OccurrenceConstraintViolation,
                    format!("{} items, more than maxItems {max}", list.len()),
                ));
            }
            for (i, item) in list.iter().enumerate() {
                path.0.push(Segment::Index(i));
                let result = check_node(items, item, path);
                path.0.pop();
                result?;
            }
            Ok(())
        }
    }
}

/// Whether `value` is within the bounds, as [`check_range`] decides it.
pub(crate) fn in_range(value: f64, minimum: Option<f64>, maximum: Option<f64>) -> bool {
    !minimum.is_some_and(|min| value < min) && !maximum.is_some_and(|max| value > max)
}

fn check_range(value: f64, minimum: Option<f64>, maximum: Option<f64>, path: &Path) -> Result<(), Violation> {
    if let Some(min) = minimum
        && value < min
    {
        return Err(
            path.violation(ErrorCode::PropertyConstraintViolation, format!("{value} is below the minimum {min}"))
        );
    }
    if let Some(max) = maximum
        && value > max
    {
        return Err(
            path.violation(ErrorCode::PropertyConstraintViolation, format!("{value} is above the maximum {max}"))
        );
    }
    Ok(())
}

pub(crate) enum Integer {
    Fits(i64),
    OutOfRange,
    Fractional,
}

/// Classifies a JSON number as jsonschema's draft-6 `integer` does: a float
/// with a zero fraction counts.
pub(crate) fn integer(n: &Number) -> Integer {
    if let Some(i) = n.as_i64() {
        return Integer::Fits(i);
    }
    if n.is_u64() {
        return Integer::OutOfRange;
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 => {
            // 2^63 is exactly representable; the range check is exact.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if (-LIMIT..LIMIT).contains(&f) {
                #[allow(clippy::cast_possible_truncation)]
                Integer::Fits(f as i64)
            } else {
                Integer::OutOfRange
            }
        }
        _ => Integer::Fractional,
    }
}

fn normalize_object(schema: &'static ObjectSchema, map: &mut Map<String, Value>) {
    for p in schema.properties {
        if let Some(value) = map.get_mut(p.name) {
            normalize_node(&p.node, value);
        }
    }
}

fn normalize_node(node: &'static Node, value: &mut Value) {
    match (node, value) {
        (Node::Integer { .. }, Value::Number(n)) if n.is_f64() => {
            if let Integer::Fits(i) = integer(n) {
                *n = Number::from(i);
            }
        }
        (Node::Object(schema), Value::Object(map)) => normalize_object(schema, map),
        (Node::Array { items, .. }, Value::Array(list)) => {
            for item in list {
                normalize_node(items, item);
            }
        }
        _ => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
