//! What a `registry` command shows: the registry's JSON answer (`--json`)
//! or a summary for people, and the small text helpers the summaries share.

use serde_json::Value;

/// A command's outcome: the answer as JSON, and the same for people.
#[derive(Debug)]
pub struct Shown {
    /// The registry's answer (`Null` for an answer without a body).
    pub json: Value,
    /// The summary printed without `--json`.
    pub text: String,
}

impl Shown {
    /// What to print: the JSON answer with `json`, else the summary.
    pub fn render(&self, json: bool) -> String {
        match (json, &self.json) {
            (true, Value::Null) => String::new(),
            (true, value) => format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default()),
            (false, _) => self.text.clone(),
        }
    }
}

/// A field of a JSON object as text: strings bare, other values as JSON,
/// absent ones as `-`.
pub fn field(value: &Value, name: &str) -> String {
    match &value[name] {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A list field (`capabilities`, `egress`) joined with `, `, or `(none)`.
pub fn list(value: &Value, name: &str) -> String {
    let items: Vec<String> = value[name]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .collect();
    match items.is_empty() {
        true => "(none)".to_string(),
        false => items.join(", "),
    }
}

/// The `items` of a list answer.
pub fn items(answer: &Value) -> &[Value] {
    answer["items"].as_array().map_or(&[], Vec::as_slice)
}

/// Rows as columns padded to their widest cell, one line each (the last
/// column unpadded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table_pads_columns_and_fields_show_absence() {
        let rows = vec![
            vec!["com.example.hello".to_string(), "1.0.0".to_string()],
            vec!["a".to_string(), "10.0.0".to_string()],
        ];
        assert_eq!(
            table(&["NAME", "VERSION"], &rows),
            "NAME               VERSION\ncom.example.hello  1.0.0\na                  10.0.0\n"
        );
        let value = json!({"s": "text", "n": 3, "caps": ["a", "b"], "none": []});
        assert_eq!(
            [field(&value, "s"), field(&value, "n"), field(&value, "absent")],
            ["text", "3", "-"]
        );
        assert_eq!([list(&value, "caps"), list(&value, "none")], ["a, b", "(none)"]);
        let shown = Shown {
            json: Value::Null,
            text: "done\n".into(),
        };
        assert_eq!([shown.render(true), shown.render(false)], ["", "done\n"]);
    }
}
