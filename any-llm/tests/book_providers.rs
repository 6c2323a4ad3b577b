//! The provider table of the book's "Models and providers" chapter is generated from the
//! rows of `any_llm::providers()`: this test fails when they differ, printing the table the
//! rows give, so the chapter cannot go stale.

use any_llm::{Protocol, ProviderInfo};

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "—" }
}

fn row(p: &ProviderInfo) -> String {
    let protocol = match p.protocol {
        Protocol::Local => "in-process",
        Protocol::OpenAi => "Chat Completions",
        Protocol::Anthropic => "Messages",
        _ => "other",
    };
    let base = if p.base_url.is_empty() {
        "—".to_owned()
    } else {
        format!("`{}`", p.base_url)
    };
    let key = match (p.api_key_env, p.api_key_required) {
        (Some(v), true) => format!("`{v}`"),
        (Some(v), false) => format!("`{v}` (optional)"),
        (None, _) => "—".to_owned(),
    };
    let base_env = p.base_url_env.map_or("—".to_owned(), |v| format!("`{v}`"));
    let c = p.capabilities;
    format!(
        "| `{}` | {} | {protocol} | {base} | {key} | {base_env} | {} | {} | {} | {} | {} | {} |",
        p.name,
        p.description,
        yes(c.streaming),
        yes(c.tools),
        yes(c.json_mode),
        yes(c.json_schema),
        yes(c.embeddings),
        yes(c.vision),
    )
}

fn table() -> String {
    let mut out = String::from(
        "| provider | what | protocol | base URL | key variable | base URL variable | streaming | tools | JSON mode | JSON Schema | embeddings | vision |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in any_llm::providers() {
        out.push_str(&row(p));
        out.push('\n');
    }
    out
}

#[test]
fn the_books_provider_table_matches_the_rows() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../book/src/providers.md");
    let chapter = std::fs::read_to_string(path).expect("the chapter exists");
    let (start, end) = (
        "<!-- providers-table:start -->\n",
        "<!-- providers-table:end -->",
    );
    let from = chapter
        .find(start)
        .expect("the chapter has the start marker")
        + start.len();
    let to = chapter.find(end).expect("the chapter has the end marker");
    let expected = table();
    assert!(
        chapter[from..to] == expected,
        "book/src/providers.md's table is stale; it should read:\n\n{expected}"
    );
}

/// The book's example of a provider configured in code builds a service without touching the
/// network (the address is only dialled on the first request).
#[cfg(feature = "http")]
#[test]
fn the_books_provider_builder_example_builds() -> any_core::Result<()> {
    // ANCHOR: builder
    use any_llm::Provider;
    use std::time::Duration;

    let model = Provider::openai() // any OpenAI-compatible server
        .base_url("http://inference.internal:8000/v1")
        .api_key("token-abc")
        .header("x-team", "search")
        .timeout(Duration::from_secs(60))
        .model("qwen2.5-7b-instruct")?;
    // ANCHOR_END: builder
    drop(model);
    Ok(())
}
