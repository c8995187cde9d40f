//! Tables of custom resources, driven by a CRD version's `additionalPrinterColumns`.
//!
//! Mirrors upstream's custom-resource table convertor: a `Name` column, then one column per
//! printer column; without printer columns a single `Age` column of type `date`. Cells are
//! typed by the column type; `date` cells carry the human-readable age, `string` cells the
//! JSONPath printer's text, and anything missing or mistyped is `null`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::Column;
use super::PrinterError;
use super::columns::{creation_timestamp_doc, name_column};
use super::jsonpath::JsonPath;
use super::util::{go_print, human_duration, name, zero_time};

/// The table layout of one served version of a CRD.
#[derive(Debug, Clone)]
pub struct CrdTable {
    columns: Vec<Column>,
    paths: Vec<JsonPath>,
    error: Option<PrinterError>,
}

impl CrdTable {
    /// Builds the layout from an `additionalPrinterColumns` JSON array (`null`, absent or
    /// `[]` give the default `Age` column).
    ///
    /// Like upstream, an invalid column stops the list there: the columns before it are
    /// kept and the problem is reported by [`CrdTable::error`] (upstream logs it).
    pub fn new(additional_printer_columns: &Value) -> CrdTable {
        let mut table = CrdTable {
            columns: vec![name_column()],
            paths: Vec::new(),
            error: None,
        };
        let specs: Vec<Value> = match additional_printer_columns {
            Value::Null => Vec::new(),
            Value::Array(list) => list.clone(),
            _ => {
                table.error = Some(PrinterError::NotAnArray);
                return table;
            }
        };
        let specs = if specs.is_empty() {
            vec![json!({
                "name": "Age",
                "type": "date",
                "description": creation_timestamp_doc(),
                "jsonPath": ".metadata.creationTimestamp",
            })]
        } else {
            specs
        };
        for (index, spec) in specs.iter().enumerate() {
            match Self::column(index, spec) {
                Ok((column, path)) => {
                    table.columns.push(column);
                    table.paths.push(path);
                }
                Err(e) => {
                    table.error = Some(e);
                    break;
                }
            }
        }
        table
    }

    /// The layout for served version `version` of the CRD object `crd`
    /// (`spec.versions[].additionalPrinterColumns`).
    pub fn for_version(crd: &Value, version: &str) -> Result<CrdTable, PrinterError> {
        crd["spec"]["versions"]
            .as_array()
            .and_then(|versions| {
                versions
                    .iter()
                    .find(|v| v["name"].as_str() == Some(version))
            })
            .map(|v| CrdTable::new(&v["additionalPrinterColumns"]))
            .ok_or_else(|| PrinterError::VersionNotFound(version.to_string()))
    }

    fn column(index: usize, spec: &Value) -> Result<(Column, JsonPath), PrinterError> {
        let text = |field: &str| spec[field].as_str().unwrap_or("").to_string();
        let name = text("name");
        let json_path = text("jsonPath");
        if name.is_empty() || json_path.is_empty() {
            return Err(PrinterError::IncompleteColumn(index));
        }
        let path = JsonPath::parse(&json_path).map_err(|e| PrinterError::InvalidColumn {
            json_path: json_path.clone(),
            reason: e.to_string(),
        })?;
        let description = match text("description") {
            d if d.is_empty() => {
                format!("Custom resource definition column (in JSONPath format): {json_path}")
            }
            d => d,
        };
        let priority = spec["priority"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0);
        let column = Column {
            name,
            type_: text("type"),
            format: text("format"),
            priority,
            description,
        };
        Ok((column, path))
    }

    /// Column definitions: `Name` first, then the printer columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The problem with the printer columns, if one was found.
    pub fn error(&self) -> Option<&PrinterError> {
        self.error.as_ref()
    }

    /// One cell per column for the custom resource `obj`.
    pub fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut cells = vec![Value::String(name(obj).to_string())];
        for (column, path) in self.columns[1..].iter().zip(&self.paths) {
            let value = match path.find(obj) {
                Ok(found) => found.first().copied(),
                Err(()) => None,
            };
            cells.push(match value {
                None => Value::Null,
                Some(v) => cell_for(&column.type_, v, now),
            });
        }
        cells
    }
}

/// The typed cell for a value found by a column's path.
fn cell_for(type_: &str, value: &Value, now: DateTime<Utc>) -> Value {
    if type_ == "string" {
        return Value::String(go_print(value));
    }
    match (type_, value) {
        (_, Value::Null) => Value::Null,
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            // Go's int64(float64) truncates toward zero (and saturates here).
            None => json!(n.as_f64().unwrap_or(0.0) as i64),
        },
        ("number", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => number_cell(n.as_f64().unwrap_or(0.0)),
        },
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(text)) => json!(date_cell(text, now)),
        _ => Value::Null,
    }
}

/// A float64 cell. Go's encoding writes integral floats without a fraction, so those are
/// sent as JSON integers to keep the wire text identical.
fn number_cell(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

/// Upstream parses the timestamp (`""`/`"null"` are the zero time) and prints its age.
fn date_cell(text: &str, now: DateTime<Utc>) -> String {
    if text.is_empty() || text == "null" {
        return "<unknown>".to_string();
    }
    match DateTime::parse_from_rfc3339(text) {
        Err(_) => "<invalid>".to_string(),
        Ok(t) if t.with_timezone(&Utc) == zero_time() => "<unknown>".to_string(),
        Ok(t) => human_duration(now.signed_duration_since(t.with_timezone(&Utc))),
    }
}

/// Column definitions and the row of one custom resource, from the CRD version's
/// `additionalPrinterColumns`. Shorthand for [`CrdTable::new`] + [`CrdTable::row`]; build a
/// [`CrdTable`] once when printing many objects.
pub fn crd_columns_and_row(
    additional_printer_columns: &Value,
    obj: &Value,
    now: DateTime<Utc>,
) -> (Vec<Column>, Vec<Value>) {
    let table = CrdTable::new(additional_printer_columns);
    let row = table.row(obj, now);
    (table.columns, row)
}

/// Column definitions and the rows of many custom resources of one CRD version, from its
/// `additionalPrinterColumns` (`null` gives the default `Age` column).
pub fn custom_table(
    additional_printer_columns: &Value,
    objs: &[Value],
    now: DateTime<Utc>,
) -> (Vec<Column>, Vec<Vec<Value>>) {
    let table = CrdTable::new(additional_printer_columns);
    let rows = objs.iter().map(|o| table.row(o, now)).collect();
    (table.columns, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn widget() -> Value {
        json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": {"replicas": 3, "size": 2.5, "whole": 4.0, "enabled": true, "owner": "ann",
                     "labels": {"b": "2", "a": "<1>"}, "since": "2024-04-30T12:00:00Z", "bad": "yesterday"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    #[test]
    fn typed_cells() {
        let columns = json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Size", "type": "number", "jsonPath": ".spec.size"},
            {"name": "Whole", "type": "number", "jsonPath": ".spec.whole"},
            {"name": "Trunc", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled"},
            {"name": "Owner", "type": "string", "jsonPath": ".spec.owner", "priority": 1, "format": "byte"},
            {"name": "Count As Text", "type": "string", "jsonPath": ".spec.replicas"},
            {"name": "Labels", "type": "string", "jsonPath": ".spec.labels"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
            {"name": "Wrong Type", "type": "boolean", "jsonPath": ".spec.owner"},
            {"name": "Since", "type": "date", "jsonPath": ".spec.since"},
            {"name": "Bad Date", "type": "date", "jsonPath": ".spec.bad"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ]);
        let (cols, row) = crd_columns_and_row(&columns, &widget(), now());
        assert_eq!(cols.len(), row.len());
        assert_eq!(
            (cols[0].name.as_str(), cols[0].format.as_str()),
            ("Name", "name")
        );
        assert_eq!(
            (
                cols[6].name.as_str(),
                cols[6].priority,
                cols[6].format.as_str()
            ),
            ("Owner", 1, "byte")
        );
        assert_eq!(
            cols[1].description,
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(
            row,
            vec![
                json!("w1"),
                json!(3),
                json!(2.5),
                json!(4),
                json!(2),
                json!(true),
                json!("ann"),
                json!("3"),
                json!(r#"{"a":"\u003c1\u003e","b":"2"}"#),
                json!("True"),
                Value::Null,
                Value::Null,
                json!("24h"),
                json!("<invalid>"),
                json!("5m"),
            ]
        );
    }

    #[test]
    fn default_age_column() {
        for spec in [Value::Null, json!([])] {
            let table = CrdTable::new(&spec);
            let names: Vec<&str> = table.columns().iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["Name", "Age"]);
            assert_eq!(table.columns()[1].type_, "date");
            assert_eq!(table.row(&widget(), now()), vec![json!("w1"), json!("5m")]);
            assert!(table.error().is_none());
        }
    }

    #[test]
    fn invalid_column_keeps_earlier_ones() {
        let table = CrdTable::new(&json!([
            {"name": "Owner", "type": "string", "jsonPath": ".spec.owner"},
            {"name": "Broken", "type": "string", "jsonPath": "spec["},
            {"name": "Later", "type": "string", "jsonPath": ".spec.owner"},
        ]));
        assert_eq!(table.columns().len(), 2);
        assert!(matches!(
            table.error(),
            Some(PrinterError::InvalidColumn { .. })
        ));
        assert_eq!(table.row(&widget(), now()), vec![json!("w1"), json!("ann")]);
        assert_eq!(
            CrdTable::new(&json!({"not": "a list"})).error(),
            Some(&PrinterError::NotAnArray)
        );
        assert_eq!(
            CrdTable::new(&json!([{"name": "NoPath", "type": "string"}])).error(),
            Some(&PrinterError::IncompleteColumn(0))
        );
    }

    #[test]
    fn columns_per_version() {
        let crd = json!({"spec": {"versions": [
            {"name": "v1", "additionalPrinterColumns": [{"name": "Owner", "type": "string", "jsonPath": ".spec.owner"}]},
            {"name": "v2"}
        ]}});
        let v1 = CrdTable::for_version(&crd, "v1").map(|t| t.columns().len());
        assert_eq!(v1, Ok(2));
        let v2 = CrdTable::for_version(&crd, "v2").map(|t| t.columns()[1].name.clone());
        assert_eq!(v2, Ok("Age".to_string()));
        assert_eq!(
            CrdTable::for_version(&crd, "v3").err(),
            Some(PrinterError::VersionNotFound("v3".into()))
        );
    }

    #[test]
    fn many_objects() {
        let columns = json!([{"name": "Owner", "type": "string", "jsonPath": ".spec.owner"}]);
        let other = json!({"metadata": {"name": "w2"}, "spec": {}});
        let (cols, rows) = custom_table(&columns, &[widget(), other], now());
        assert_eq!(cols.len(), 2);
        assert_eq!(
            rows,
            vec![
                vec![json!("w1"), json!("ann")],
                vec![json!("w2"), Value::Null]
            ]
        );
    }
}
