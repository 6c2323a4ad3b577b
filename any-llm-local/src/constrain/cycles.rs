//! Schemas that refer to themselves without ever reaching a value.
//!
//! `{"$ref": "#"}` or two `$defs` that `$ref` each other describe no JSON at all: following
//! them never reaches a `type`, a property or an item. The grammar compiler would loop or
//! build a grammar that admits nothing, so such a schema is refused up front, naming the
//! chain of references. Recursion through a property or an array item (a tree whose
//! `children` are trees) consumes input on each turn and stays allowed.

use std::collections::HashMap;

use serde_json::Value;

/// The keywords that apply a subschema to the same value (no input consumed between them).
const IN_PLACE_ONE: &[&str] = &["not", "if", "then", "else"];
const IN_PLACE_MANY: &[&str] = &["allOf", "anyOf", "oneOf"];

/// The JSON pointers of the subschemas `node` (at `at`) applies to the same value.
fn in_place(root: &Value, at: &str, node: &Value) -> Vec<String> {
    let Value::Object(map) = node else {
        return Vec::new();
    };
    let mut next = Vec::new();
    if let Some(Value::String(r)) = map.get("$ref")
        && let Some(pointer) = r.strip_prefix('#')
        && root.pointer(pointer).is_some()
    {
        next.push(pointer.to_owned());
    }
    for key in IN_PLACE_ONE {
        if matches!(map.get(*key), Some(Value::Object(_))) {
            next.push(format!("{at}/{key}"));
        }
    }
    for key in IN_PLACE_MANY {
        if let Some(Value::Array(items)) = map.get(*key) {
            next.extend((0..items.len()).map(|i| format!("{at}/{key}/{i}")));
        }
    }
    next
}

/// Every object in `root` with its JSON pointer: each may be a schema.
fn objects(root: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root)];
    while let Some((at, v)) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    stack.push((format!("{at}/{k}"), child));
                }
                out.push(at);
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    stack.push((format!("{at}/{i}"), child));
                }
            }
            _ => {}
        }
    }
    out
}

/// The first cycle of in-place references in `schema`, as `#`-pointers from its start back
/// to it, if there is one.
pub(super) fn find(schema: &Value) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    let mut marks: HashMap<String, Mark> = HashMap::new();
    for start in objects(schema) {
        if marks.contains_key(&start) {
            continue;
        }
        // Depth-first, without recursion: chains of references can be long.
        let first = schema
            .pointer(&start)
            .map_or_else(Vec::new, |node| in_place(schema, &start, node));
        let mut path: Vec<(String, std::vec::IntoIter<String>)> =
            vec![(start.clone(), first.into_iter())];
        marks.insert(start, Mark::Open);
        while let Some((_, edges)) = path.last_mut() {
            match edges.next() {
                Some(next) => match marks.get(&next) {
                    Some(Mark::Done) => {}
                    Some(Mark::Open) => {
                        let from = path.iter().position(|(p, _)| *p == next).unwrap_or(0);
                        let mut chain: Vec<String> =
                            path[from..].iter().map(|(p, _)| format!("#{p}")).collect();
                        chain.push(format!("#{next}"));
                        return Some(chain);
                    }
                    None => {
                        let edges = schema
                            .pointer(&next)
                            .map_or_else(Vec::new, |node| in_place(schema, &next, node));
                        marks.insert(next.clone(), Mark::Open);
                        path.push((next, edges.into_iter()));
                    }
                },
                None => {
                    if let Some((done, _)) = path.pop() {
                        marks.insert(done, Mark::Done);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::find;

    #[test]
    fn unproductive_reference_cycles_are_found() {
        assert_eq!(
            find(&json!({"$ref": "#"})),
            Some(vec!["#".into(), "#".into()])
        );
        let defs = json!({"$ref": "#/$defs/a",
            "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}});
        let chain = find(&defs).expect("a cycle");
        assert_eq!(chain.first(), chain.last());
        assert!(chain.contains(&"#/$defs/b".to_owned()), "{chain:?}");
    }

    #[test]
    fn recursion_through_properties_and_items_is_allowed() {
        let tree = json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}}}});
        assert_eq!(find(&tree), None);
        let list = json!({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
            "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}}});
        assert_eq!(find(&list), None);
    }
}
