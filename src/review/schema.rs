//! What the API server checks before any webhook sees an object: the CRD's structural schema
//! (types, required fields, enums, lengths, bounds, list keys, unknown fields as kubectl's
//! strict field validation refuses them) and its CEL rules (kube's client-side evaluator, the
//! schemas `roster crds` generates). Messages are worded as the API server words them, so a
//! reviewer reads the same sentence offline and from `kubectl apply`.

use std::collections::HashMap;

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

struct Kind {
    schema: Value,
    compiled: CompiledSchema,
}

/// The roster CRDs' schemas, compiled once.
pub struct Schemas {
    kinds: HashMap<String, Kind>,
    validator: Validator,
}

impl Default for Schemas {
    fn default() -> Self {
        Self::new()
    }
}

impl Schemas {
    pub fn new() -> Schemas {
        let kinds = crate::crdgen::definitions()
            .into_iter()
            .filter_map(|crd| {
                let v = crd.spec.versions.first()?;
                let schema =
                    serde_json::to_value(v.schema.as_ref()?.open_api_v3_schema.as_ref()?).ok()?;
                let compiled = compile_schema(&schema);
                Some((crd.spec.names.kind.clone(), Kind { schema, compiled }))
            })
            .collect();
        Schemas {
            kinds,
            validator: Validator::new(),
        }
    }

    /// Every schema and CEL violation of `object` (an UPDATE's transition rules with `old`).
    pub fn check(&self, kind: &str, object: &Value, old: Option<&Value>) -> Vec<String> {
        let Some(k) = self.kinds.get(kind) else {
            return vec![format!("no schema for kind {kind}")];
        };
        let mut errors = Vec::new();
        // What the API server validates: apiVersion, kind, name and spec (status goes through
        // its own subresource; other metadata is the API server's own business).
        let mut trimmed = serde_json::Map::new();
        for key in ["apiVersion", "kind", "spec"] {
            if let Some(v) = object.get(key) {
                trimmed.insert(key.into(), v.clone());
            }
        }
        let name = object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        trimmed.insert("metadata".into(), serde_json::json!({ "name": name }));
        if let Some(root) = object.as_object() {
            for key in root.keys() {
                if !matches!(
                    key.as_str(),
                    "apiVersion" | "kind" | "metadata" | "spec" | "status"
                ) {
                    errors.push(format!("strict decoding error: unknown field \"{key}\""));
                }
            }
        }
        if let (Some(props), Some(spec)) = (k.schema.get("properties"), trimmed.get("spec")) {
            if let Some(s) = props.get("spec") {
                structural(s, spec, "spec", &mut errors);
            }
        } else if k
            .schema
            .pointer("/required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|f| f == "spec"))
        {
            errors.push("spec: Required value".into());
        }
        if !errors.is_empty() {
            // The API server stops at the schema: CEL runs only on a well-typed object.
            return errors;
        }
        let object = Value::Object(trimmed);
        let old = old.map(|o| {
            let mut t = o.clone();
            if let Some(m) = t.as_object_mut() {
                m.remove("status");
            }
            t
        });
        if let Err(failures) = self
            .validator
            .validate_compiled(&k.compiled, &object, old.as_ref())
        {
            for f in failures.iter() {
                errors.push(cel_message(&object, &f.field_path, &f.message));
            }
        }
        errors
    }
}

/// `spec.email: Invalid value: "Bob@Example": must be …` for scalars, without the value for
/// objects and lists, as the API server prints them.
fn cel_message(object: &Value, path: &str, message: &str) -> String {
    let path = path.trim_start_matches('.');
    if path.is_empty() {
        return format!("Invalid value: \"object\": {message}");
    }
    match lookup(object, path) {
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
            format!("{path}: Invalid value: {v}: {message}")
        }
        _ => format!("{path}: Invalid value: {message}"),
    }
}

/// The value at `spec.projects[1].name`.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get(n)?;
        }
    }
    Some(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn structural(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
    if v.is_null() {
        if !nullable {
            // The API server drops nulls of non-nullable fields before validating (pruning):
            // a `field: ~` means "unset", and a required one is then missing.
        }
        return;
    }
    let want = schema.get("type").and_then(Value::as_str);
    let have = type_name(v);
    let type_ok = match want {
        None => true,
        Some("number") => matches!(v, Value::Number(_)),
        Some(t) => t == have,
    };
    if !type_ok {
        let t = want.unwrap_or("?");
        errors.push(format!(
            "{path}: Invalid value: \"{have}\": {path} in body must be of type {t}: \"{have}\""
        ));
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        let supported: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(Value::to_string)
            .collect();
        errors.push(format!(
            "{path}: Unsupported value: {v}: supported values: {}",
            supported.join(", ")
        ));
        return;
    }
    match v {
        Value::String(s) => string(schema, s, path, errors),
        Value::Number(n) => number(schema, n, v, path, errors),
        Value::Array(items) => array(schema, items, path, errors),
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            for field in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if map.get(field).is_none_or(Value::is_null) {
                    errors.push(format!("{path}.{field}: Required value"));
                }
            }
            for (key, value) in map {
                let child = format!("{path}.{key}");
                match props.and_then(|p| p.get(key)) {
                    Some(s) => structural(s, value, &child, errors),
                    None => match schema.get("additionalProperties") {
                        Some(s) if s.is_object() => structural(s, value, &child, errors),
                        _ if preserve => {}
                        _ => {
                            errors.push(format!("strict decoding error: unknown field \"{child}\""))
                        }
                    },
                }
            }
        }
        _ => {}
    }
}

fn string(schema: &Value, s: &str, path: &str, errors: &mut Vec<String>) {
    let len = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        errors.push(format!(
            "{path}: Too long: may not be more than {max} bytes"
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body should be at least {min} chars long",
            Value::String(s.into())
        ));
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && s.parse::<k8s_openapi::jiff::Timestamp>().is_err()
    {
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body must be of type date-time: {}",
            Value::String(s.into()),
            Value::String(s.into())
        ));
    }
}

fn number(schema: &Value, n: &serde_json::Number, v: &Value, path: &str, errors: &mut Vec<String>) {
    let x = n.as_f64().unwrap_or(0.0);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && x < min
    {
        errors.push(format!(
            "{path}: Invalid value: {v}: {path} in body should be greater than or equal to {min}"
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && x > max
    {
        errors.push(format!(
            "{path}: Invalid value: {v}: {path} in body should be less than or equal to {max}"
        ));
    }
    let (lo, hi) = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => (i32::MIN as f64, i32::MAX as f64),
        _ => (i64::MIN as f64, i64::MAX as f64),
    };
    if x < lo || x > hi {
        errors.push(format!("{path}: Invalid value: {v}: out of range"));
    }
}

fn array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<String>) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        errors.push(format!(
            "{path}: Too many: {}: must have at most {max} items",
            items.len()
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            structural(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
    // A list of maps keyed by some fields holds each key once.
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut seen = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key: serde_json::Map<String, Value> = keys
                .iter()
                .map(|k| {
                    (
                        (*k).to_string(),
                        item.get(*k).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            if seen.contains(&key) {
                errors.push(format!(
                    "{path}[{i}]: Duplicate value: {}",
                    Value::Object(key)
                ));
            } else {
                seen.push(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: &str, spec: Value) -> Vec<String> {
        Schemas::new().check(
            kind,
            &json!({"apiVersion": "roster.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec}),
            None,
        )
    }

    #[test]
    fn schema_violations_are_worded_as_the_api_server_words_them() {
        let cases: &[(&str, Value, &str)] = &[
            ("Organization", json!({}), "spec.owner: Required value"),
            (
                "Organization",
                json!({"owner": "alice@acme.example", "security": {"passwordMinLength": 6}}),
                "spec.security.passwordMinLength: Invalid value: 6: spec.security.passwordMinLength in body should be greater than or equal to 8",
            ),
            (
                "Organization",
                json!({"owner": "alice@acme.example", "security": {"mfa": {"gracePeriod": "3d"}}}),
                "spec.security.mfa.gracePeriod: Invalid value: \"3d\": must be a duration such as 90s, 15m, 72h or 1h30m",
            ),
            (
                "Membership",
                json!({"email": "ivan@acme.example", "disabled": "yes"}),
                "spec.disabled: Invalid value: \"string\": spec.disabled in body must be of type boolean: \"string\"",
            ),
            (
                "Membership",
                json!({"email": "Bob@Example"}),
                "spec.email: Invalid value: \"Bob@Example\": must be a lower-case e-mail address such as bob@example.com",
            ),
            (
                "Membership",
                json!({"email": "m@acme.example", "role": "Owner"}),
                "spec.role: Unsupported value: \"Owner\": supported values: \"Admin\", \"Member\"",
            ),
            (
                "Membership",
                json!({"email": "e@acme.example", "projects": [{"name": "payments", "role": "Developer"}, {"name": "payments", "role": "Admin"}]}),
                "spec.projects[1]: Duplicate value: {\"name\":\"payments\"}",
            ),
            (
                "Membership",
                json!({"email": "j@acme.example", "mfa": {"exempt": true}}),
                "spec.mfa: Invalid value: an MFA exemption needs a reason (mfa.reason), so that it can be reviewed",
            ),
            (
                "Membership",
                json!({"email": "j@acme.example", "colour": "blue"}),
                "strict decoding error: unknown field \"spec.colour\"",
            ),
            (
                "Membership",
                json!({"email": "j@acme.example", "expiresAt": "tomorrow"}),
                "spec.expiresAt: Invalid value: \"tomorrow\": spec.expiresAt in body must be of type date-time: \"tomorrow\"",
            ),
            (
                "Project",
                json!({"namespaceDeletion": "Orphan"}),
                "spec.namespaceDeletion: Unsupported value: \"Orphan\": supported values: \"Retain\", \"Delete\"",
            ),
        ];
        for (kind, spec, want) in cases {
            let got = check(kind, spec.clone());
            assert!(
                got.iter().any(|g| g == want),
                "{kind} {spec}:\n want {want}\n got  {got:?}"
            );
        }
        for (kind, spec) in [
            ("Organization", json!({"owner": "alice@acme.example"})),
            (
                "Membership",
                json!({"email": "bob@acme.example", "projects": [{"name": "web", "role": "Viewer"}]}),
            ),
            ("Project", json!({})),
        ] {
            assert_eq!(
                check(kind, spec.clone()),
                Vec::<String>::new(),
                "{kind} {spec}"
            );
        }
    }

    #[test]
    fn transition_rules_need_the_old_object() {
        let s = Schemas::new();
        let m = |email: &str| json!({"apiVersion": "roster.dev/v1alpha1", "kind": "Membership", "metadata": {"name": "b"}, "spec": {"email": email}});
        assert!(
            s.check("Membership", &m("new@acme.example"), None)
                .is_empty()
        );
        let got = s.check(
            "Membership",
            &m("new@acme.example"),
            Some(&m("old@acme.example")),
        );
        assert!(
            got.iter().any(|e| e.contains("spec.email is immutable")),
            "{got:?}"
        );
    }

    #[test]
    fn a_project_name_that_is_no_dns_label_is_refused() {
        let got = Schemas::new().check(
            "Project",
            &json!({"apiVersion": "roster.dev/v1alpha1", "kind": "Project", "metadata": {"name": "x.y"}, "spec": {}}),
            None,
        );
        assert!(
            got.iter().any(|e| e.contains("must be a DNS label")),
            "{got:?}"
        );
    }
}
