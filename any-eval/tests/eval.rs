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
