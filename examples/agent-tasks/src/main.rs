//! Run with `cargo run --release -p example-agent-tasks -- [--model ID] [--require-tool] [--json]`
//!
//! Small tool tasks (`data/tasks.jsonl`: arithmetic, unit conversion, look-ups in a small
//! table, choosing between tools, two-step tasks), each run by an agent with the same six
//! typed tools over any model — the local default model unless `--model` names another
//! (`openai:NAME` with `OPENAI_BASE_URL` pointing at `any serve`, say). Prints one line per task
//! and a summary: success rate, malformed tool calls (arguments that did not match the schema,
//! or an unknown tool), model calls per task and time.
//!
//! `--tool-rounds N` lets the model call tools in at most N turns, then asks it to answer.
//! `--limit N` runs the first N tasks only; `--json` prints every outcome with its trace.
//! `--require-tool` makes each task's first model call a tool call (small models seldom call a
//! tool by themselves); later calls choose freely.

use std::time::{Duration, Instant};

use any_agent::{Agent, AgentError, AgentTrace, ToolError, TraceStep, tool_fn};
use any_core::{BoxChatService, ChatRequest, ChatServiceExt, ToolChoice};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const TASKS: &str = include_str!("../data/tasks.jsonl");

/// Two numbers.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Pair {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

/// A unit the converter knows.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Km,
    Miles,
    Kg,
    Pounds,
    Celsius,
    Fahrenheit,
    Metres,
    Feet,
}

/// A value to convert between units.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Conversion {
    /// The value.
    value: f64,
    /// Its unit.
    from: Unit,
    /// The unit wanted.
    to: Unit,
}

/// A country to look up.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Country {
    /// The country's English name, e.g. "France".
    country: String,
}

/// What the table knows of a country.
#[derive(Serialize)]
struct Facts {
    capital: &'static str,
    currency: &'static str,
    population_millions: f64,
}

const COUNTRIES: &[(&str, Facts)] = &[
    (
        "france",
        Facts {
            capital: "Paris",
            currency: "euro",
            population_millions: 68.0,
        },
    ),
    (
        "japan",
        Facts {
            capital: "Tokyo",
            currency: "yen",
            population_millions: 124.0,
        },
    ),
    (
        "canada",
        Facts {
            capital: "Ottawa",
            currency: "Canadian dollar",
            population_millions: 40.0,
        },
    ),
    (
        "switzerland",
        Facts {
            capital: "Bern",
            currency: "Swiss franc",
            population_millions: 9.0,
        },
    ),
    (
        "australia",
        Facts {
            capital: "Canberra",
            currency: "Australian dollar",
            population_millions: 27.0,
        },
    ),
    (
        "brazil",
        Facts {
            capital: "Brasília",
            currency: "Brazilian real",
            population_millions: 212.0,
        },
    ),
];

fn convert(c: &Conversion) -> Result<f64, ToolError> {
    use Unit::*;
    let v = c.value;
    Ok(match (c.from, c.to) {
        (a, b) if a == b => v,
        (Km, Miles) => v / 1.609_344,
        (Miles, Km) => v * 1.609_344,
        (Kg, Pounds) => v / 0.453_592_37,
        (Pounds, Kg) => v * 0.453_592_37,
        (Celsius, Fahrenheit) => v * 9.0 / 5.0 + 32.0,
        (Fahrenheit, Celsius) => (v - 32.0) * 5.0 / 9.0,
        (Metres, Feet) => v / 0.3048,
        (Feet, Metres) => v * 0.3048,
        _ => return Err(ToolError::failed("those units measure different things")),
    })
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn agent(
    model: BoxChatService,
    tool_rounds: Option<u32>,
) -> any_core::Result<Agent<BoxChatService>> {
    let mut builder = Agent::builder(model);
    if let Some(n) = tool_rounds {
        builder = builder.max_tool_rounds(n);
    }
    builder
        .name("tasks")
        .instructions(
            "Answer the question. Use a tool to compute or look things up, then state the result.",
        )
        .tool(tool_fn("add", "Adds a and b.", |p: Pair| async move {
            Ok::<_, ToolError>(round(p.a + p.b))
        }))
        .tool(tool_fn(
            "subtract",
            "Subtracts b from a.",
            |p: Pair| async move { Ok::<_, ToolError>(round(p.a - p.b)) },
        ))
        .tool(tool_fn(
            "multiply",
            "Multiplies a by b.",
            |p: Pair| async move { Ok::<_, ToolError>(round(p.a * p.b)) },
        ))
        .tool(tool_fn("divide", "Divides a by b.", |p: Pair| async move {
            if p.b == 0.0 {
                return Err(ToolError::failed("division by zero"));
            }
            Ok(round(p.a / p.b))
        }))
        .tool(tool_fn(
            "convert_units",
            "Converts a value between units of length, mass or temperature.",
            |c: Conversion| async move { convert(&c).map(round) },
        ))
        .tool(tool_fn(
            "country_facts",
            "The capital, currency and population (millions) of a country.",
            |c: Country| async move {
                let key = c.country.trim().to_lowercase();
                COUNTRIES
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map(|(_, facts)| serde_json::json!(facts))
                    .ok_or_else(|| ToolError::failed(format!("no facts about {:?}", c.country)))
            },
        ))
        .max_steps(4)
        .build()
}

/// Whether `answer` states `expected`: a number within 0.05% (or 0.01) of it, or the text,
/// ignoring case. An answer that is a tool call written out as text states nothing.
fn states(answer: &str, expected: &str) -> bool {
    if answer.trim_start().starts_with("{\"name\"") {
        return false;
    }
    match expected.parse::<f64>() {
        Ok(want) => numbers(answer)
            .into_iter()
            .any(|n| (n - want).abs() <= (want.abs() * 0.0005).max(0.01)),
        Err(_) => answer.to_lowercase().contains(&expected.to_lowercase()),
    }
}

fn numbers(text: &str) -> Vec<f64> {
    let cleaned = text.replace(',', "");
    cleaned
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter_map(|w| w.trim_matches('.').parse().ok())
        .collect()
}

#[derive(Deserialize)]
struct Task {
    task: String,
    expected: String,
}

#[derive(Serialize)]
struct Outcome {
    task: String,
    expected: String,
    answer: String,
    success: bool,
    model_calls: usize,
    tool_calls: usize,
    malformed_calls: usize,
    seconds: f64,
    error: Option<String>,
    trace: AgentTrace,
}

fn outcome(
    task: &Task,
    trace: &AgentTrace,
    answer: String,
    error: Option<String>,
    took: Duration,
) -> Outcome {
    let tools: Vec<&TraceStep> = trace.tool_calls().collect();
    let malformed = tools
        .iter()
        .filter(|s| matches!(s, TraceStep::Tool { output, .. }
            if output.starts_with("error: invalid arguments") || output.starts_with("error: there is no tool")))
        .count();
    Outcome {
        success: error.is_none() && states(&answer, &task.expected),
        task: task.task.clone(),
        expected: task.expected.clone(),
        answer,
        model_calls: trace.model_calls(),
        tool_calls: tools.len(),
        malformed_calls: malformed,
        seconds: took.as_secs_f64(),
        error,
        trace: trace.clone(),
    }
}

#[tokio::main]
async fn main() -> any_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model_id = args
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "local".into());
    let require_tool = args.iter().any(|a| a == "--require-tool");
    let json = args.iter().any(|a| a == "--json");
    let limit = args
        .iter()
        .position(|a| a == "--limit")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(usize::MAX);
    let tool_rounds = args
        .iter()
        .position(|a| a == "--tool-rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    let agent = agent(any_llm::model(&model_id)?, tool_rounds)?;

    let mut outcomes = Vec::new();
    for line in TASKS.lines().filter(|l| !l.trim().is_empty()).take(limit) {
        let task: Task = serde_json::from_str(line)?;
        let mut request = ChatRequest::builder()
            .user(task.task.clone())
            .temperature(0.0)
            .max_tokens(96);
        if require_tool {
            request = request.tool_choice(ToolChoice::Required);
        }
        let started = Instant::now();
        let o = match agent.chat(request.build()).await {
            Ok(r) => {
                let trace = r
                    .extensions
                    .get::<AgentTrace>()
                    .cloned()
                    .unwrap_or_default();
                outcome(&task, &trace, r.text().to_owned(), None, started.elapsed())
            }
            Err(e) => {
                let trace = AgentError::find(&e)
                    .map(|a| a.trace().clone())
                    .unwrap_or_default();
                outcome(
                    &task,
                    &trace,
                    String::new(),
                    Some(e.to_string()),
                    started.elapsed(),
                )
            }
        };
        eprintln!(
            "{} {:<70} -> {:?}{}",
            if o.success { "ok  " } else { "FAIL" },
            o.task,
            o.answer.chars().take(80).collect::<String>(),
            o.error
                .as_deref()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        );
        outcomes.push(o);
    }

    let n = outcomes.len() as f64;
    let sum = |f: &dyn Fn(&Outcome) -> f64| outcomes.iter().map(f).sum::<f64>();
    let summary = serde_json::json!({
        "model": model_id,
        "require_tool": require_tool,
        "tool_rounds": tool_rounds,
        "tasks": outcomes.len(),
        "succeeded": outcomes.iter().filter(|o| o.success).count(),
        "success_rate": sum(&|o| o.success as u8 as f64) / n,
        "tool_calls": sum(&|o| o.tool_calls as f64),
        "malformed_calls": sum(&|o| o.malformed_calls as f64),
        "mean_model_calls": sum(&|o| o.model_calls as f64) / n,
        "mean_seconds": sum(&|o| o.seconds) / n,
        "errors": outcomes.iter().filter(|o| o.error.is_some()).count(),
    });
    if json {
        println!(
            "{}",
            serde_json::json!({"summary": summary, "outcomes": outcomes})
        );
    } else {
        println!(
            "| model | first call | tool rounds | tasks | succeeded | tool calls | malformed calls | model calls per task | seconds per task |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| `{}` | {} | {} | {} | {} ({:.0}%) | {} | {} | {:.2} | {:.2} |",
            model_id,
            if require_tool { "required" } else { "auto" },
            tool_rounds.map_or("any".to_string(), |n: u32| n.to_string()),
            summary["tasks"],
            summary["succeeded"],
            summary["success_rate"].as_f64().unwrap_or(0.0) * 100.0,
            summary["tool_calls"],
            summary["malformed_calls"],
            summary["mean_model_calls"].as_f64().unwrap_or(0.0),
            summary["mean_seconds"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_number_or_text() {
        assert!(states("The sum is 5,555.", "5555"));
        assert!(states("about 6.2137 miles", "6.21"));
        assert!(!states("It is 4342.", "5555"));
        assert!(!states("It is 1001.", "1000"));
        assert!(!states(
            r#"{"name":"error","arguments":{"error":"Tokyo"}}"#,
            "Tokyo"
        ));
        assert!(states("The capital is TOKYO.", "Tokyo"));
        assert!(states("0 degrees", "0"));
    }

    #[test]
    fn every_task_parses_and_the_table_answers_the_look_ups() {
        let tasks: Vec<Task> = TASKS
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(tasks.len() >= 30);
        let c = Conversion {
            value: 100.0,
            from: Unit::Celsius,
            to: Unit::Fahrenheit,
        };
        assert_eq!(convert(&c).unwrap(), 212.0);
    }
}
