//! any-eval's metrics against the reference implementations, the dataset reader on good and
//! bad files, and the runner over real and scripted services.

mod text {
    use any_eval::text::{corpus_bleu, rouge_l, rouge_n, sentence_bleu};
    use serde_json::Value;

    fn load() -> (Vec<(String, Vec<String>)>, Value) {
        let pairs = include_str!("../data/text_pairs.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let refs = v["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect();
                (v["prediction"].as_str().unwrap().to_owned(), refs)
            })
            .collect();
        let reference =
            serde_json::from_str(include_str!("../data/reference_scores.json")).unwrap();
        (pairs, reference)
    }

    /// ROUGE-1/2/L F1 and sentence BLEU of every committed pair, and corpus BLEU over them,
    /// equal `rouge-score`'s and `sacrebleu`'s (data/reference_scores.py wrote them).
    #[test]
    fn rouge_and_bleu_agree_with_the_reference_implementations() {
        let (pairs, reference) = load();
        let want = reference["pairs"].as_array().unwrap();
        assert_eq!(want.len(), pairs.len());
        for ((prediction, refs), want) in pairs.iter().zip(want) {
            let close = |name: &str, got: f64| {
                let w = want[name].as_f64().unwrap();
                assert!(
                    (got - w).abs() < 1e-9,
                    "{name} of {prediction:?}: {got} vs {w}"
                );
            };
            close("rouge1", rouge_n(prediction, refs, 1).f1);
            close("rouge2", rouge_n(prediction, refs, 2).f1);
            close("rougeL", rouge_l(prediction, refs).f1);
            close("bleu", sentence_bleu(prediction, refs));
        }
        let corpus = corpus_bleu(pairs.iter().map(|(p, r)| (p.as_str(), r.as_slice())));
        let w = reference["corpus_bleu"].as_f64().unwrap();
        assert!((corpus - w).abs() < 1e-9, "corpus BLEU {corpus} vs {w}");
    }
}

mod dataset {
    use any_eval::{Dataset, EvalError, Input};

    fn error(text: &str) -> String {
        let e = Dataset::from_jsonl(text, "cases.jsonl").unwrap_err();
        assert!(matches!(e, EvalError::Dataset { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn jsonl_cases_with_every_field() {
        let d = Dataset::from_jsonl(
            concat!(
                r#"{"id": "q1", "input": "Capital of France?", "expected": ["Paris", "paris"], "context": "France's capital is Paris.", "metadata": {"topic": "geo"}}"#,
                "\n\n",
                r#"{"input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "expected": 4}"#,
                "\n",
                r#"{"input": "Pick one", "choices": ["red", "blue"], "expected": "blue"}"#,
            ),
            "cases.jsonl",
        )
        .unwrap();
        assert_eq!(d.cases.len(), 3);
        let q1 = &d.cases[0];
        assert_eq!((q1.id.as_str(), q1.expected.len()), ("q1", 2));
        assert_eq!(q1.messages().len(), 2, "context becomes a system message");
        assert_eq!(q1.metadata["topic"], "geo");
        assert_eq!(d.cases[1].id, "3", "the line number when there is no id");
        assert!(matches!(&d.cases[1].input, Input::Messages(m) if m.len() == 2));
        assert_eq!(d.cases[1].expected, ["4"]);
        assert_eq!(d.cases[2].choices, ["red", "blue"]);
    }

    #[test]
    fn malformed_lines_name_the_file_line_and_field() {
        let e = error("{\"input\": \"ok\"}\n{\"input\": \"x\", \"expected\": {\"a\": 1}}");
        assert!(e.starts_with("cases.jsonl:2: field `expected`:"), "{e}");
        assert!(error("{\"expected\": \"x\"}").contains(":1: field `input`: missing"));
        assert!(error("{\"input\": 5}").contains("field `input`"));
        assert!(error("[1, 2]").contains(":1: expected a JSON object"));
        assert!(error("{\"input\": \"a\"}\nnot json").contains(":2: not JSON"));
        assert!(
            error("{\"input\": \"a\", \"expect\": \"typo\"}")
                .contains("field `expect`: unknown field")
        );
        assert!(
            error("{\"id\": 1, \"input\": \"a\"}\n{\"id\": \"1\", \"input\": \"b\"}")
                .contains(":2: field `id`")
        );
        assert!(
            error("{\"input\": [{\"role\": \"wizard\", \"content\": \"x\"}]}")
                .contains("field `input`")
        );
        assert!(
            error("{\"input\": \"a\", \"choices\": [\"x\", \"y\"], \"expected\": \"z\"}")
                .contains("one of `choices`")
        );
    }

    #[test]
    fn csv_with_quotes_several_answers_and_metadata() {
        let text = "id,input,expected,expected_2,choice_a,choice_b,topic\n\
                    a,\"Say \"\"hi\"\", please\",hi,hello,,,greeting\n\
                    b,\"two\nlines\",x,,,,misc\n";
        let d = Dataset::from_csv(text, "cases.csv").unwrap();
        assert_eq!(d.cases.len(), 2);
        assert!(matches!(&d.cases[0].input, Input::Text(t) if t == "Say \"hi\", please"));
        assert_eq!(d.cases[0].expected, ["hi", "hello"]);
        assert_eq!(d.cases[0].metadata["topic"], "greeting");
        assert!(matches!(&d.cases[1].input, Input::Text(t) if t == "two\nlines"));
        let e = Dataset::from_csv("input,expected\na,b\nc\n", "cases.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cases.csv:3: 1 fields, the header has 2"),
            "{e}"
        );
        let e = Dataset::from_csv("question\nx\n", "cases.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `input` column"), "{e}");
        let e = Dataset::from_csv("input\n\"open\n", "cases.csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cases.csv:2: a quoted field is not closed"),
            "{e}"
        );
    }

    #[test]
    fn a_file_names_the_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capitals.jsonl");
        std::fs::write(&path, "{\"input\": \"x\"}\n").unwrap();
        assert_eq!(Dataset::open(&path).unwrap().name, "capitals");
        let e = Dataset::open(dir.path().join("missing.jsonl")).unwrap_err();
        assert!(matches!(e, EvalError::Io { .. }) && e.to_string().contains("missing.jsonl"));
    }
}

mod metrics {
    use any_eval::{Builtin, Case, Metric, Output};
    use std::time::Duration;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn score(metric: &str, expected: &[&str], text: &str) -> f64 {
        let mut case = Case::new("c", "q", "");
        case.expected = expected.iter().map(|s| s.to_string()).collect();
        let out = Output {
            text: text.into(),
            latency: Duration::from_millis(500),
            ttft: Some(Duration::from_millis(100)),
            usage: Some(any_core::Usage {
                prompt_tokens: 10,
                completion_tokens: 20,
                cached_prompt_tokens: None,
            }),
            ..Output::default()
        };
        let m = Builtin::from_name(metric).unwrap();
        block_on(m.score(&case, &out)).unwrap().value
    }

    #[test]
    fn known_cases() {
        assert_eq!(score("exact", &["The Paris"], "paris."), 1.0);
        assert_eq!(score("exact", &["Paris"], "Paris, France"), 0.0);
        assert_eq!(score("contains", &["x", "PARIS"], "It is Paris."), 1.0);
        assert_eq!(score("contains_all", &["x", "paris"], "It is Paris."), 0.0);
        assert_eq!(score("regex:^\\d+$", &[], "1234"), 1.0);
        assert_eq!(score("regex:^\\d+$", &[], "12a"), 0.0);
        assert!((score("f1", &["a cat sat down"], "the cat sat") - 0.8).abs() < 1e-9);
        assert_eq!(score("json", &[], " {\"a\": [1, 2]} "), 1.0);
        assert_eq!(score("json", &[], "{\"a\": "), 0.0);
        assert!((score("levenshtein", &["kitten"], "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-9);
        assert_eq!(score("latency", &[], ""), 0.5);
        assert_eq!(score("ttft", &[], ""), 0.1);
        assert_eq!(score("tokens", &[], ""), 30.0);
        assert_eq!(score("tokens_per_second", &[], ""), 40.0);
        let bleu = score(
            "bleu",
            &["the cat sat on the mat"],
            "the cat sat on the mat",
        );
        assert!((bleu - 100.0).abs() < 1e-9, "{bleu}");
    }

    #[test]
    fn json_schema_conformance_and_metrics_from_functions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("person.json");
        std::fs::write(
            &path,
            r#"{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}, "required": ["name"]}"#,
        )
        .unwrap();
        let name = format!("schema:{}", path.display());
        assert_eq!(score(&name, &[], r#" {"name": "Ada", "age": 36} "#), 1.0);
        assert_eq!(score(&name, &[], r#"{"age": -1}"#), 0.0);
        assert_eq!(score(&name, &[], "not json"), 0.0);
        let m = Builtin::from_name(&name).unwrap();
        assert_eq!(m.name(), name);
        let out = Output {
            text: r#"{"age": -1}"#.into(),
            ..Output::default()
        };
        let s = block_on(m.score(&Case::new("c", "q", ""), &out)).unwrap();
        assert!(
            s.reason.as_deref().is_some_and(|r| r.contains("name")),
            "{s:?}"
        );
        let e = Builtin::from_name("schema:/nonexistent.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent.json"), "{e}");
        std::fs::write(&path, r#"{"type": 12}"#).unwrap();
        assert!(Builtin::from_name(&name).is_err());

        let short = any_eval::metric_fn("short", |_c, o| any_eval::Score::pass(o.text.len() < 5));
        let out = Output {
            text: "hello world".into(),
            ..Output::default()
        };
        assert_eq!(
            block_on(short.score(&Case::new("c", "q", ""), &out))
                .unwrap()
                .pass,
            Some(false)
        );
    }

    #[test]
    fn bad_names_and_missing_answers_are_errors() {
        let e = Builtin::from_name("rouge3").unwrap_err().to_string();
        assert!(
            e.contains("unknown metric `rouge3`") && e.contains("rougeL"),
            "{e}"
        );
        assert!(
            Builtin::from_name("regex:(")
                .unwrap_err()
                .to_string()
                .contains("does not compile")
        );
        let case = Case {
            expected: vec![],
            ..Case::new("c", "q", "")
        };
        let m = Builtin::from_name("exact").unwrap();
        let e = block_on(m.score(&case, &Output::default())).unwrap_err();
        assert!(e.to_string().contains("no `expected`"), "{e}");
    }
}

mod runner {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use any_core::{ChatChunk, ChatRequest, ChatStream, Error, FinishReason, Usage};
    use any_eval::{Builtin, Case, Dataset, Metric, Report, Runner};

    fn dataset(n: usize) -> Dataset {
        Dataset {
            name: "echo".into(),
            cases: (0..n)
                .map(|i| {
                    let text = format!("say {i} back to me");
                    Case::new(format!("c{i}"), text.clone(), text)
                })
                .collect(),
        }
    }

    fn metrics() -> Vec<Arc<dyn Metric>> {
        ["exact", "bleu", "latency"]
            .iter()
            .map(|m| Arc::new(Builtin::from_name(m).unwrap()) as Arc<dyn Metric>)
            .collect()
    }

    /// Echoes the last message, after `delay`; counts calls and the most in flight at once.
    #[derive(Clone)]
    struct Echo {
        delay: Duration,
        calls: Arc<AtomicUsize>,
        in_flight: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        /// Case ids that fail with a rate limit this many times first.
        flaky: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    }

    impl Echo {
        fn new(delay_ms: u64) -> Self {
            Echo {
                delay: Duration::from_millis(delay_ms),
                calls: Arc::default(),
                in_flight: Arc::default(),
                most: Arc::default(),
                flaky: Arc::default(),
            }
        }
    }

    impl tower::Service<ChatRequest> for Echo {
        type Response = ChatStream;
        type Error = Error;
        type Future =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<ChatStream, Error>> + Send>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: ChatRequest) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                me.calls.fetch_add(1, Ordering::SeqCst);
                let now = me.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                me.most.fetch_max(now, Ordering::SeqCst);
                // Counted out when the call ends or is dropped.
                struct Out(Arc<AtomicUsize>);
                impl Drop for Out {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let out = Out(Arc::clone(&me.in_flight));
                tokio::time::sleep(me.delay).await;
                drop(out);
                let text = req
                    .messages
                    .last()
                    .map(|m| m.text().into_owned())
                    .unwrap_or_default();
                if text.starts_with("say 3 ") {
                    return Err(Error::InvalidRequest("case 3 is refused".into()));
                }
                if let Some(left) = me.flaky.lock().unwrap().get_mut(&text)
                    && *left > 0
                {
                    *left -= 1;
                    return Err(Error::RateLimited {
                        message: "slow down".into(),
                        retry_after: Some(Duration::from_millis(5)),
                    });
                }
                Ok(ChatStream::from_chunks(vec![
                    ChatChunk::text(text),
                    ChatChunk::finish(
                        FinishReason::Stop,
                        Some(Usage {
                            prompt_tokens: 3,
                            completion_tokens: 2,
                            cached_prompt_tokens: None,
                        }),
                    ),
                ]))
            })
        }
    }

    #[tokio::test]
    async fn scores_every_case_within_the_concurrency_and_records_errors() {
        let echo = Echo::new(20);
        echo.flaky
            .lock()
            .unwrap()
            .insert("say 5 back to me".into(), 2);
        let data = dataset(12);
        let run = Runner::new()
            .concurrency(3)
            .progress(false)
            .run("echo", echo.clone(), &data, &metrics())
            .await;
        assert_eq!(echo.most.load(Ordering::SeqCst), 3, "at most 3 in flight");
        assert_eq!(run.cases.len(), 12);
        assert_eq!(
            run.cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>()[..3],
            ["c0", "c1", "c2"]
        );
        assert_eq!(run.errors, 1);
        assert!(
            run.cases[3]
                .output
                .error
                .as_deref()
                .is_some_and(|e| e.contains("refused"))
        );
        assert!(run.cases[3].scores.is_empty());
        // Case 5 was rate-limited twice, then answered (12 cases + 2 retries = 14 calls).
        assert_eq!(echo.calls.load(Ordering::SeqCst), 14);
        assert_eq!(run.cases[5].scores["exact"].value, 1.0);
        let exact = &run.aggregates["exact"];
        assert_eq!(
            (exact.value, exact.n, exact.ci95),
            (1.0, 11, Some((1.0, 1.0)))
        );
        assert!((run.aggregates["bleu"].value - 100.0).abs() < 1e-9);
        assert!(run.aggregates["latency"].value >= 0.02);
        let report = Report {
            dataset: data.name.clone(),
            metrics: vec!["exact".into(), "bleu".into()],
            services: vec![run],
            definitions: Default::default(),
        };
        let md = report.to_markdown();
        assert!(
            md.contains("| echo | 12 | 1 | 1.000 [1.000, 1.000] | 100.0 |"),
            "{md}"
        );
        assert!(md.contains("| c3 | say 3 back to me | error: "), "{md}");
        let back: Report = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(back.services[0].cases[5].scores["exact"].value, 1.0);
    }

    #[tokio::test]
    async fn no_retries_means_the_rate_limit_is_the_answer() {
        let echo = Echo::new(1);
        echo.flaky
            .lock()
            .unwrap()
            .insert("say 0 back to me".into(), 1);
        let run = Runner::new()
            .retries(0)
            .progress(false)
            .run("echo", echo.clone(), &dataset(1), &metrics())
            .await;
        assert!(
            run.cases[0]
                .output
                .error
                .as_deref()
                .is_some_and(|e| e.contains("slow down"))
        );
    }

    #[tokio::test]
    async fn a_cache_answers_a_rerun_without_calling() {
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner::new().cache_dir(dir.path()).seed(7).progress(false);
        let echo = Echo::new(1);
        let first = runner
            .run("echo", echo.clone(), &dataset(4), &metrics())
            .await;
        assert_eq!(echo.calls.load(Ordering::SeqCst), 4);
        let second = runner
            .run("echo", echo.clone(), &dataset(4), &metrics())
            .await;
        // The refused case 3 is not cached, so it is called again; the rest are not.
        assert_eq!(echo.calls.load(Ordering::SeqCst), 5);
        assert!(second.cases[0].output.cached && !first.cases[0].output.cached);
        assert_eq!(second.cases[1].output.text, "say 1 back to me");
        // Another label, another seed: other keys.
        runner
            .run("other", echo.clone(), &dataset(4), &metrics())
            .await;
        assert_eq!(echo.calls.load(Ordering::SeqCst), 9);
        Runner::new()
            .cache_dir(dir.path())
            .seed(8)
            .progress(false)
            .run("echo", echo.clone(), &dataset(4), &metrics())
            .await;
        assert_eq!(echo.calls.load(Ordering::SeqCst), 13);
        assert_eq!(runner.request(&dataset(1).cases[0]).sampling.seed, Some(7));
    }

    #[tokio::test]
    async fn a_stop_keeps_what_finished() {
        let echo = Echo::new(100);
        let stop = tokio::time::sleep(Duration::from_millis(250));
        let run = Runner::new()
            .concurrency(1)
            .progress(false)
            .run_until("echo", echo.clone(), &dataset(20), &metrics(), stop)
            .await;
        assert!(run.stopped);
        assert!(
            (1..=3).contains(&run.cases.len()),
            "{} finished",
            run.cases.len()
        );
        assert!(run.cases.iter().all(|c| c.scores.contains_key("exact")));
        // In-flight work was dropped: nothing is still running.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(echo.in_flight.load(Ordering::SeqCst), 0);
        assert!(echo.calls.load(Ordering::SeqCst) <= run.cases.len() + 1);
    }
}

/// The HTML report in a real browser: headless Chromium (the distribution's package, which
/// `.ci/run` installs) renders it; the test fails when the page is blank or a chart is
/// missing or empty, and leaves the screenshot for a person to look at.
mod html {
    use std::process::Command;
    use std::sync::Arc;

    use any_core::{ChatChunk, ChatRequest, ChatStream};
    use any_eval::{Builtin, Case, Dataset, Metric, Report, Runner};

    fn chromium() -> String {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            if Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return name.to_owned();
            }
        }
        panic!("no Chromium on PATH: install the distribution's `chromium` package (.ci/run does)");
    }

    async fn report() -> Report {
        let cases = vec![
            Case::new("a", "Capital of France?", "Paris"),
            Case::new("b", "2 + 2 = ?", "4"),
            Case::new("c", "Colour of the sky?", "blue <b>not bold</b>"),
        ];
        let data = Dataset {
            name: "capitals & sums".into(),
            cases,
        };
        let metrics: Vec<Arc<dyn Metric>> = ["contains", "f1", "latency"]
            .iter()
            .map(|m| Arc::new(Builtin::from_name(m).unwrap()) as Arc<dyn Metric>)
            .collect();
        let answer = |text: &'static str| {
            tower::service_fn(move |_req: ChatRequest| async move {
                Ok::<_, any_core::Error>(ChatStream::from_chunks(vec![ChatChunk::text(text)]))
            })
        };
        let runner = Runner::new().progress(false);
        let a = runner
            .run("always Paris", answer("Paris"), &data, &metrics)
            .await;
        let b = runner
            .run(
                "says 4 and blue",
                answer("It is 4, or blue."),
                &data,
                &metrics,
            )
            .await;
        Report {
            dataset: data.name,
            metrics: vec!["contains".into(), "f1".into(), "latency".into()],
            services: vec![a, b],
            definitions: Default::default(),
        }
    }

    #[tokio::test]
    async fn the_report_renders_its_charts_in_chromium() {
        let browser = chromium();
        let html = report().await.to_html();
        assert!(
            html.contains("capitals &amp; sums")
                && html.contains("blue &lt;b&gt;not bold&lt;/b&gt;")
        );
        assert!(
            !html.contains("<script") && !html.contains("src=\"http"),
            "self-contained, no scripts"
        );
        let dir = tempfile::tempdir().unwrap();
        // The page itself has no script; the test adds one that measures what was drawn.
        let probe = "<script>addEventListener('load',()=>{const c=[...document.querySelectorAll('svg.metric-chart')];\
            document.body.dataset.charts=c.length;\
            document.body.dataset.drawn=c.filter(s=>{const r=s.getBoundingClientRect();\
            const bars=[...s.querySelectorAll('rect.bar')].filter(b=>b.getBoundingClientRect().width>0);\
            return r.width>100&&r.height>50&&bars.length>0}).length;\
            document.body.dataset.text=document.body.innerText.length})</script>";
        let page = dir.path().join("report.html");
        std::fs::write(&page, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
        let url = format!("file://{}", page.display());
        let common = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1400",
        ];
        let dom = Command::new(&browser)
            .args(common)
            .args(["--virtual-time-budget=2000", "--dump-dom", &url])
            .output()
            .unwrap();
        assert!(
            dom.status.success(),
            "{}",
            String::from_utf8_lossy(&dom.stderr)
        );
        let dom = String::from_utf8_lossy(&dom.stdout);
        assert!(
            dom.contains("data-charts=\"3\""),
            "not three charts:\n{}",
            &dom[..dom.len().min(600)]
        );
        assert!(
            dom.contains("data-drawn=\"3\""),
            "a chart was not drawn:\n{}",
            &dom[..dom.len().min(600)]
        );
        let shot = std::env::var_os("ANY_EVAL_SCREENSHOT")
            .map_or_else(|| dir.path().join("report.png"), Into::into);
        let out = Command::new(&browser)
            .args(common)
            .arg(format!(
                "--screenshot={}",
                std::path::Path::new(&shot).display()
            ))
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read(&shot).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // A blank 1200×1400 page compresses to a few kilobytes; text and charts do not.
        assert!(
            png.len() > 20_000,
            "the screenshot is {} bytes: a blank page?",
            png.len()
        );
    }
}

mod judge {
    use any_core::{ChatChunk, ChatRequest, ChatStream, ResponseFormat, TokenLogprob, TopLogprob};
    use any_eval::{Case, Judge, Metric, Output};

    fn replying(text: &'static str) -> impl any_core::ChatService + Sync {
        tower::service_fn(move |_req: ChatRequest| async move {
            Ok::<_, any_core::Error>(ChatStream::from_chunks(vec![ChatChunk::text(text)]))
        })
    }

    fn case_and_answer() -> (Case, Output) {
        let out = Output {
            text: "Lyon".into(),
            ..Output::default()
        };
        (Case::new("q", "Capital of France?", "Paris"), out)
    }

    #[tokio::test]
    async fn verdicts_reasons_and_broken_replies() {
        let (case, out) = case_and_answer();
        let fail = Judge::new(replying(
            r#"{"reasoning": "Lyon is not Paris.", "pass": false}"#,
        ))
        .named("strict");
        let s = fail.score(&case, &out).await.unwrap();
        assert_eq!(
            (s.value, s.pass, s.reason.as_deref()),
            (0.0, Some(false), Some("Lyon is not Paris."))
        );
        assert_eq!(fail.name(), "strict");
        let e = Judge::new(replying("I think it passes"))
            .score(&case, &out)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not JSON") && e.to_string().contains("case `q`"),
            "{e}"
        );
        let e = Judge::new(replying(r#"{"reasoning": "ok"}"#))
            .score(&case, &out)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no boolean `pass`"), "{e}");
    }

    #[test]
    fn the_request_carries_the_rubric_the_case_and_a_schema() {
        let (case, out) = case_and_answer();
        let judge = Judge::new(replying("{}")).rubric("Answers must name a city.");
        let req = judge.request(&case, &out);
        let prompt = req.messages.last().unwrap().text().into_owned();
        for part in [
            "Answers must name a city.",
            "Capital of France?",
            "Paris",
            "Lyon",
        ] {
            assert!(prompt.contains(part), "{part} missing from {prompt}");
        }
        assert_eq!(req.sampling.temperature, Some(0.0));
        assert!(
            matches!(&req.response_format, ResponseFormat::JsonSchema { schema, .. } if schema["required"] == serde_json::json!(["reasoning", "pass"]))
        );
    }

    /// A scoring judge's reply, `{"reasoning": …, "score": 4}` in three tokens, the score's
    /// with the alternatives and log-probabilities given (or none, as a provider without them).
    fn scoring(with_logprobs: bool) -> impl any_core::ChatService + Sync {
        tower::service_fn(move |_req: ChatRequest| async move {
            let token = |text: &str, p: f32, top: Vec<TopLogprob>| TokenLogprob {
                token: text.into(),
                id: None,
                logprob: p.ln(),
                top,
            };
            let alt = |text: &str, p: f32| TopLogprob {
                token: text.into(),
                id: None,
                logprob: p.ln(),
            };
            let pieces = [
                token(
                    r#"{"reasoning": "It gets 2 of 3 facts right.", "score":"#,
                    0.9,
                    vec![],
                ),
                token(" 4", 0.5, TOP.iter().map(|&(t, p)| alt(t, p)).collect()),
                token("}", 0.99, vec![]),
            ];
            let chunks = pieces
                .into_iter()
                .map(|t| ChatChunk {
                    text: t.token.clone(),
                    logprobs: if with_logprobs { vec![t] } else { Vec::new() },
                    ..ChatChunk::default()
                })
                .collect();
            Ok::<_, any_core::Error>(ChatStream::from_chunks(chunks))
        })
    }

    /// The alternatives at the score's position: " 4" (sampled), " 3", " 5" and " 2" are the
    /// scale's; " 7" is off the scale, "4" and " four" are other tokens.
    const TOP: [(&str, f32); 7] = [
        (" 4", 0.5),
        (" 3", 0.2),
        (" 5", 0.1),
        (" 7", 0.05),
        ("4", 0.05),
        (" four", 0.02),
        (" 2", 0.01),
    ];

    #[tokio::test]
    async fn a_scale_score_is_the_expectation_over_the_scales_tokens() {
        let (case, out) = case_and_answer();
        let judge = Judge::new(scoring(true)).scale(1, 5).unwrap();
        let s = judge.score(&case, &out).await.unwrap();
        // Renormalised over " 2", " 3", " 4", " 5", from the f32 log-probabilities given.
        let p = |score: &str| f64::from(TOP.iter().find(|t| t.0 == score).unwrap().1.ln()).exp();
        let mass = p(" 2") + p(" 3") + p(" 4") + p(" 5");
        let expected = (2.0 * p(" 2") + 3.0 * p(" 3") + 4.0 * p(" 4") + 5.0 * p(" 5")) / mass;
        assert!((s.value - (expected - 1.0) / 4.0).abs() < 1e-12, "{s:?}");
        let detail = s.detail.clone().unwrap();
        assert_eq!(detail["from"], "logprobs");
        assert_eq!(detail["sampled"], 4);
        assert!((detail["expected"].as_f64().unwrap() - expected).abs() < 1e-12);
        assert!((detail["probabilities"]["3"].as_f64().unwrap() - p(" 3") / mass).abs() < 1e-12);
        assert!(
            detail["probabilities"].get("1").is_none()
                && detail["probabilities"].get("7").is_none()
        );
        assert!(
            s.reason
                .as_deref()
                .unwrap()
                .ends_with("It gets 2 of 3 facts right."),
            "{s:?}"
        );
        assert_eq!(s.pass, None);
    }

    #[tokio::test]
    async fn without_logprobs_the_sampled_score_is_used_and_says_so() {
        let (case, out) = case_and_answer();
        let judge = Judge::new(scoring(false)).scale(1, 5).unwrap();
        let s = judge.score(&case, &out).await.unwrap();
        assert_eq!(s.value, 0.75);
        let detail = s.detail.clone().unwrap();
        assert_eq!(detail["from"], "sampled");
        assert_eq!(detail["why"], "the judge returned no log-probabilities");
        assert!(
            s.reason
                .as_deref()
                .unwrap()
                .starts_with("sampled score 4 on 1–5"),
            "{s:?}"
        );
        // A score off the scale is an error, not a guess.
        let e = Judge::new(replying(r#"{"reasoning": "fine", "score": 7}"#))
            .scale(1, 5)
            .unwrap()
            .score(&case, &out)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("no integer `score` from 1 to 5"),
            "{e}"
        );
    }

    /// A provider that refuses log-probabilities (as the Anthropic one does) is asked again
    /// without them, and the result says so.
    #[tokio::test]
    async fn a_judge_that_refuses_logprobs_is_asked_again_without() {
        let (case, out) = case_and_answer();
        let refusing = tower::service_fn(|req: ChatRequest| async move {
            if req.logprobs.is_some() {
                return Err(any_core::Error::Unsupported(
                    "no log-probabilities here".into(),
                ));
            }
            Ok(ChatStream::from_chunks(vec![ChatChunk::text(
                r#"{"reasoning": "Wrong city.", "score": 2}"#,
            )]))
        });
        let s = Judge::new(refusing)
            .scale(1, 5)
            .unwrap()
            .score(&case, &out)
            .await
            .unwrap();
        assert_eq!(s.value, 0.25);
        let detail = s.detail.unwrap();
        assert_eq!(detail["from"], "sampled");
        assert_eq!(
            detail["why"],
            "the judge gives no log-probabilities: no log-probabilities here"
        );
    }

    #[test]
    fn a_scale_asks_for_a_score_and_logprobs() {
        let (case, out) = case_and_answer();
        let req = Judge::new(replying("{}"))
            .scale(1, 5)
            .unwrap()
            .request(&case, &out);
        assert_eq!(req.logprobs, Some(20));
        assert!(
            matches!(&req.response_format, ResponseFormat::JsonSchema { schema, .. }
                if schema["required"] == serde_json::json!(["reasoning", "score"])
                && schema["properties"]["score"]["enum"] == serde_json::json!([1, 2, 3, 4, 5]))
        );
        assert!(
            req.messages
                .last()
                .unwrap()
                .text()
                .contains("a score from 1")
        );
        for (lo, hi) in [(3, 3), (5, 1), (1, 10)] {
            let e = Judge::new(replying("{}")).scale(lo, hi).unwrap_err();
            assert!(e.to_string().contains(&format!("not {lo}-{hi}")), "{e}");
        }
        // Pass/fail asks for no logprobs.
        assert_eq!(
            Judge::new(replying("{}")).request(&case, &out).logprobs,
            None
        );
    }
}

mod likelihood {
    use any_eval::{BoxFuture, Case, Dataset, LogLikelihood, multiple_choice};

    /// Log-likelihood -1 per character, except that "long right answer" is likelier per
    /// character than its length suggests: acc prefers short choices, acc_norm the right one.
    struct ByLength;

    impl LogLikelihood for ByLength {
        fn log_likelihood<'a>(
            &'a self,
            _context: &'a str,
            continuation: &'a str,
        ) -> BoxFuture<'a, any_eval::Result<f64>> {
            let ll = if continuation == " long right answer" {
                -9.0
            } else {
                -(continuation.len() as f64)
            };
            Box::pin(async move { Ok(ll) })
        }
    }

    fn mc(id: &str, choices: &[&str], answer: &str) -> Case {
        Case {
            choices: choices.iter().map(|c| c.to_string()).collect(),
            ..Case::new(id, "Question?", answer)
        }
    }

    #[tokio::test]
    async fn acc_and_acc_norm_as_the_harness_defines_them() {
        let data = Dataset {
            name: "mc".into(),
            cases: vec![
                mc("a", &["no", "long right answer"], "long right answer"),
                mc("b", &["yes", "nope"], "yes"),
            ],
        };
        let run = multiple_choice("by length", &ByLength, &data)
            .await
            .unwrap();
        // a: lls [-3, -9] → acc picks "no"; per character [-1, -0.5] → acc_norm picks right.
        assert_eq!(run.cases[0].scores["acc"].value, 0.0);
        assert_eq!(run.cases[0].scores["acc_norm"].value, 1.0);
        assert_eq!(run.cases[0].output.text, "no");
        assert!(
            run.cases[0].scores["acc"]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("-9"))
        );
        // b: " yes" (-4) beats " nope" (-5) both ways.
        assert_eq!(
            (
                run.aggregates["acc"].value,
                run.aggregates["acc_norm"].value
            ),
            (0.5, 1.0)
        );
    }

    #[tokio::test]
    async fn cases_that_are_not_multiple_choice_are_errors() {
        for (case, msg) in [
            (Case::new("x", "Q?", "a"), "at least two `choices`"),
            (mc("y", &["a", "b"], "c"), "not one of the choices"),
            (
                Case {
                    expected: vec![],
                    ..mc("z", &["a", "b"], "a")
                },
                "exactly one `expected`",
            ),
        ] {
            let data = Dataset {
                name: "bad".into(),
                cases: vec![case],
            };
            let e = multiple_choice("m", &ByLength, &data)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(msg), "{e}");
        }
    }
}

mod perplexity {
    use any_eval::{
        BoxFuture, Case, Dataset, PERPLEXITY_METRICS, Report, RollingLogLikelihood,
        TextLogLikelihood, Window, perplexity, rolling_windows, word_count,
    };

    /// lm-evaluation-harness's own test of its rolling windows (34 tokens, a prefix token,
    /// `max_seq_len` 10, one token of context), as (input, predicted) pairs: here the
    /// sequence is the prefix (-100) followed by the tokens 0..34.
    #[test]
    fn windows_are_the_harnesses() {
        let seq: Vec<i64> = std::iter::once(-100).chain(0..34).collect();
        let gold: [(Vec<i64>, Vec<i64>); 4] = [
            (
                std::iter::once(-100).chain(0..9).collect(),
                (0..10).collect(),
            ),
            ((9..19).collect(), (10..20).collect()),
            ((19..29).collect(), (20..30).collect()),
            ((23..33).collect(), (30..34).collect()),
        ];
        let windows = rolling_windows(seq.len(), 10).expect("windows");
        assert_eq!(windows.len(), gold.len());
        for (w, (input, predicted)) in windows.iter().zip(&gold) {
            // The model reads all but the window's last token and predicts the last `scored`.
            assert_eq!(&seq[w.start..w.end - 1], input.as_slice(), "{w:?}");
            assert_eq!(&seq[w.end - w.scored..w.end], predicted.as_slice(), "{w:?}");
        }
        // Every token but the first scored once, whatever the window.
        for (len, max) in [
            (2, 1),
            (5, 1),
            (7, 3),
            (11, 10),
            (12, 10),
            (40, 7),
            (3, 100),
        ] {
            let windows = rolling_windows(len, max).expect("windows");
            let mut scored = vec![0; len];
            for w in &windows {
                assert!(w.end - w.start <= max + 1 && w.scored <= max, "{w:?}");
                for n in &mut scored[w.end - w.scored..w.end] {
                    *n += 1;
                }
            }
            assert_eq!(scored[0], 0);
            assert!(
                scored[1..].iter().all(|&n| n == 1),
                "{len}/{max}: {scored:?}"
            );
        }
        assert_eq!(
            rolling_windows(1, 4).expect("windows"),
            Vec::<Window>::new()
        );
        assert!(rolling_windows(9, 0).is_err());
    }

    /// Python's `len(re.split(r"\s+", text))`, the values Python 3.11 gives.
    #[test]
    fn words_are_counted_as_the_harness_counts_them() {
        for (text, words) in [
            ("The cat sat.", 3),
            (" two  words\n", 4),
            ("", 1),
            ("a\tb\u{a0}c\u{2003}d", 4),
            ("x\u{1c}y", 2),
            ("one\u{200b}two", 1),
            ("end \n\n", 2),
        ] {
            assert_eq!(word_count(text), words, "{text:?}");
        }
    }

    /// A stand-in model: log-likelihood −0.5 per byte over one token per four bytes, and
    /// an error for a document that says "fail".
    struct PerByte;

    impl RollingLogLikelihood for PerByte {
        fn rolling_log_likelihood<'a>(
            &'a self,
            text: &'a str,
        ) -> BoxFuture<'a, any_eval::Result<TextLogLikelihood>> {
            Box::pin(async move {
                if text == "fail" {
                    return Err(any_eval::EvalError::InvalidInput("cannot score".into()));
                }
                Ok(TextLogLikelihood {
                    logprob: -0.5 * text.len() as f64,
                    tokens: text.len().div_ceil(4),
                })
            })
        }
    }

    fn doc(id: &str, text: &str) -> Case {
        Case {
            expected: Vec::new(),
            ..Case::new(id, text, "")
        }
    }

    #[tokio::test]
    async fn aggregates_are_weighted_over_the_set() {
        let texts = [
            "one two three four",
            "a much longer document of seven words",
        ];
        let data = Dataset {
            name: "docs".into(),
            cases: vec![doc("a", texts[0]), doc("b", texts[1]), doc("c", "fail")],
        };
        let run = perplexity("per byte", &PerByte, &data).await.expect("runs");
        assert_eq!(run.errors, 1);
        assert_eq!(
            run.cases[2].output.error.as_deref(),
            Some("cannot score"),
            "a failed document is recorded, not dropped"
        );
        let ll: Vec<f64> = texts.iter().map(|t| -0.5 * t.len() as f64).collect();
        let words = [4.0, 7.0];
        let bytes: Vec<f64> = texts.iter().map(|t| t.len() as f64).collect();
        let tokens: Vec<f64> = texts.iter().map(|t| t.len().div_ceil(4) as f64).collect();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        // Per document: its own numbers.
        for (i, case) in run.cases[..2].iter().enumerate() {
            let s = |m: &str| case.scores[m].value;
            assert!(close(s("token_perplexity"), (-ll[i] / tokens[i]).exp()));
            assert!(close(s("word_perplexity"), (-ll[i] / words[i]).exp()));
            assert!(close(s("byte_perplexity"), 0.5f64.exp()));
            assert!(close(s("bits_per_byte"), 0.5 / std::f64::consts::LN_2));
            let detail = case.scores["word_perplexity"]
                .detail
                .clone()
                .expect("detail");
            assert_eq!(detail["words"], words[i] as u64);
            assert_eq!(detail["bytes"], bytes[i] as u64);
        }
        // Over the set: sums of log-likelihoods over sums of words, bytes, tokens — not a
        // mean of the documents' perplexities.
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        let agg = |m: &str| run.aggregates[m].value;
        let word = (-sum(&ll) / sum(&words)).exp();
        assert!(close(agg("word_perplexity"), word));
        let mean_of_docs = ((-ll[0] / 4.0).exp() + (-ll[1] / 7.0).exp()) / 2.0;
        assert!((word - mean_of_docs).abs() > 0.1);
        assert!(close(
            agg("token_perplexity"),
            (-sum(&ll) / sum(&tokens)).exp()
        ));
        assert!(close(
            agg("byte_perplexity"),
            (-sum(&ll) / sum(&bytes)).exp()
        ));
        assert!(close(
            agg("bits_per_byte"),
            -sum(&ll) / sum(&bytes) / std::f64::consts::LN_2
        ));
        assert_eq!(run.aggregates["word_perplexity"].n, 2);
        let (lo, hi) = run.aggregates["word_perplexity"].ci95.expect("an interval");
        assert!(lo <= word && word <= hi, "{lo} {word} {hi}");
        // The reports state the definitions.
        let report = Report {
            dataset: data.name.clone(),
            metrics: PERPLEXITY_METRICS
                .iter()
                .map(|(m, _)| m.to_string())
                .collect(),
            services: vec![run],
            definitions: PERPLEXITY_METRICS
                .iter()
                .map(|(m, d)| (m.to_string(), d.to_string()))
                .collect(),
        };
        let md = report.to_markdown();
        assert!(
            md.contains("- `word_perplexity`: exp(−ΣLL / Σwords)"),
            "{md}"
        );
        assert!(report.to_html().contains("<dt>bits_per_byte</dt>"));
    }

    #[tokio::test]
    async fn documents_must_be_text() {
        let chat = Dataset::from_jsonl(
            r#"{"input": [{"role": "user", "content": "hi"}]}"#,
            "chat.jsonl",
        )
        .expect("parses");
        let e = perplexity("m", &PerByte, &chat)
            .await
            .expect_err("a conversation is not a document")
            .to_string();
        assert!(e.contains("not a conversation"), "{e}");
        let docs = Dataset::from_jsonl(r#"{"text": "a document"}"#, "docs.jsonl").expect("parses");
        assert_eq!(
            docs.cases[0].input,
            any_eval::Input::Text("a document".into())
        );
        let both = Dataset::from_jsonl(r#"{"input": "a", "text": "b"}"#, "both.jsonl")
            .expect_err("input and text")
            .to_string();
        assert!(both.contains("both.jsonl:1: field `text`"), "{both}");
    }
}
