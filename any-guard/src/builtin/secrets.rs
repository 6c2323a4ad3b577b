//! Credentials: cloud and service tokens, private keys, JWTs, and random-looking values
//! assigned to a credential's name.

use std::borrow::Cow;
use std::sync::LazyLock;

use any_core::Span;
use regex::Regex;

use super::{Findings, from_findings, standalone};
use crate::{Check, Guardrail, Policy, StreamScope, Subject};

/// Known token shapes, most specific first, with their labels.
static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        (
            "PRIVATE_KEY",
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\z)",
        ),
        ("AWS_ACCESS_KEY", r"\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA)[0-9A-Z]{16}\b"),
        (
            "AWS_SECRET_KEY",
            r"(?i)aws_?secret_?(?:access_?)?key\s*[:=]\s*['\x22]?[A-Za-z0-9/+]{40}",
        ),
        ("GITHUB_TOKEN", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"),
        ("GITLAB_TOKEN", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
        ("SLACK_TOKEN", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
        (
            "SLACK_WEBHOOK",
            r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,}",
        ),
        ("STRIPE_KEY", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("ANTHROPIC_KEY", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
        ("OPENAI_KEY", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
        ("GOOGLE_API_KEY", r"\bAIza[0-9A-Za-z_\-]{35}"),
        (
            "JWT",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        ),
    ]
    .into_iter()
    .map(|(label, re)| (label, Regex::new(re).expect("valid secret pattern")))
    .collect()
});

/// A value assigned to a credential's name (the capture): after a name ending in a credential
/// word and `=`, `:`, `:=` or `=>` (`api_key = "`, `"client_secret": "`, `X-Api-Key: `,
/// `DB_PASSWORD=`), or after an authorization scheme (`Bearer `, `Basic `, `token `).
static ASSIGNED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:(?:\b|_)(?:api[_\-]?key|apikey|secret|token|passw(?:or)?d|passwd|pwd|credentials?|access[_\-]?key|private[_\-]?key|signing[_\-]?key|auth[_\-]?key)(?:[_\-]?(?:key|id|value))?['"]?[ \t]*(?:=>|:=|[:=])[ \t]*['"]?|\b(?:bearer|basic|token)[ \t]+)([A-Za-z0-9+/=_\-.~]{16,})"#,
    )
    .expect("valid")
});

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// Finds credentials and redacts them (`[AWS_ACCESS_KEY]`, `[GITHUB_TOKEN]`, ...).
///
/// Known shapes: AWS access keys and secret-key assignments, GitHub, GitLab, Slack (tokens
/// and webhooks), Stripe, OpenAI, Anthropic and Google API keys, PEM private key blocks and
/// JWTs. A value of unknown shape is reported as `HIGH_ENTROPY` only where it is assigned to
/// a credential's name (`api_key = "…"`, `"client_secret": "…"`, `Authorization: Bearer …`)
/// and looks random: 16+ characters mixing letters and digits, with high entropy (off with
/// [`Secrets::without_entropy`]). Random-looking text elsewhere — hashes, UUIDs, git
/// commits, base64 images, ids in URLs — is ordinary in documents and code, and is left
/// alone.
///
/// Its [default policy](Guardrail::default_policy) is [`Policy::Redact`]: a guard given a
/// bare `Secrets` cuts the credential out and lets the rest of the text through.
///
/// ```
/// use any_guard::{Guardrail, Secrets, Subject};
/// let v = Secrets::default().check_now(&Subject::text("token=ghp_16C7e42F292c6912E7710c838347Ae178B4a"));
/// assert_eq!(v.redacted.as_deref(), Some("token=[GITHUB_TOKEN]"));
/// ```
#[derive(Debug, Clone)]
pub struct Secrets {
    entropy_threshold: Option<f32>,
}

impl Default for Secrets {
    fn default() -> Self {
        Secrets {
            entropy_threshold: Some(3.5),
        }
    }
}

impl Secrets {
    /// Only the known token shapes, no entropy heuristic (fewer false positives on hashes
    /// and identifiers).
    pub fn without_entropy() -> Self {
        Secrets {
            entropy_threshold: None,
        }
    }

    /// Reports random-looking values assigned to a credential's name when their entropy
    /// reaches `bits` per character (default 3.5; a random 32-character base64 string scores
    /// about 4.5, a random 32-digit hex one about 3.8, English words under 3.5).
    pub fn entropy_threshold(bits: f32) -> Self {
        Secrets {
            entropy_threshold: Some(bits),
        }
    }

    /// The findings in `text`, in text order. Full-width characters and invisible ones
    /// inside a token do not hide it; spans cover the original characters.
    pub fn scan(&self, text: &str) -> Vec<Span> {
        crate::normalize::scan_folded(text, |t| self.scan_plain(t))
    }

    fn scan_plain(&self, text: &str) -> Vec<Span> {
        let mut found = Findings::default();
        for (label, re) in PATTERNS.iter() {
            for m in re.find_iter(text) {
                // `sk-` alone also starts ordinary hyphenated names (`sk-learn-...`); a key
                // without a typed prefix has digits.
                if *label == "OPENAI_KEY"
                    && !m.as_str().starts_with("sk-proj-")
                    && !m.as_str().starts_with("sk-svcacct-")
                    && !m.as_str().starts_with("sk-admin-")
                    && !m.as_str().bytes().any(|b| b.is_ascii_digit())
                {
                    continue;
                }
                found.push(m.start(), m.end(), label);
            }
        }
        if let Some(threshold) = self.entropy_threshold {
            for value in ASSIGNED.captures_iter(text).filter_map(|c| c.get(1)) {
                let v = value.as_str().trim_end_matches('.');
                let end = value.start() + v.len();
                let mixed = v.bytes().any(|b| b.is_ascii_digit())
                    && v.bytes().any(|b| b.is_ascii_alphabetic());
                if mixed && entropy(v) >= threshold && standalone(text, value.start(), end, b"") {
                    found.push(value.start(), end, "HIGH_ENTROPY");
                }
            }
        }
        found.into_spans()
    }
}

impl Guardrail for Secrets {
    fn name(&self) -> &str {
        "secrets"
    }

    fn check<'a>(&'a self, subject: &'a Subject<'a>) -> Check<'a> {
        let text = subject.content();
        let spans = self.scan(&text);
        let score = if spans.iter().all(|s| s.label == "HIGH_ENTROPY") {
            0.7
        } else {
            1.0
        };
        Check::ready(from_findings(
            "secrets",
            "secret",
            score,
            &text,
            spans,
            |s| Cow::Owned(format!("[{}]", s.label)),
        ))
    }

    fn default_policy(&self) -> Policy {
        Policy::Redact
    }

    fn stream_scope(&self) -> StreamScope {
        // Long enough for any token shape; a PEM block is caught by its header, and
        // everything after the header to the window's end is redacted with it.
        StreamScope::Window(512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Vec<String> {
        Secrets::default()
            .scan(text)
            .into_iter()
            .map(|s| s.label)
            .collect()
    }

    #[test]
    fn finds_known_shapes() {
        let cases = [
            ("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY"),
            (
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "AWS_SECRET_KEY",
            ),
            ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "GITHUB_TOKEN"),
            ("glpat-xxxxxxxxxxxxxxxxxxxx", "GITLAB_TOKEN"),
            ("xoxb-123456789012-abcdefghij", "SLACK_TOKEN"),
            ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_KEY"),
            ("sk-proj-abcdefghijklmnopqrstuvwx", "OPENAI_KEY"),
            ("sk-ant-api03-abcdefghijklmnopqrstu", "ANTHROPIC_KEY"),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                "JWT",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
                "PRIVATE_KEY",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt",
                "PRIVATE_KEY",
            ),
            ("secret: Zx9Qm2Lr8Tb4Wk7Yp3Nc6Hd1", "HIGH_ENTROPY"),
        ];
        for (text, label) in cases {
            assert_eq!(labels(text), vec![label.to_owned()], "{text}");
        }
    }

    #[test]
    fn finds_random_values_assigned_to_credential_names() {
        for (text, value) in [
            (
                "API_KEY=Zx9Qm2Lr8Tb4Wk7Yp3Nc6Hd1",
                "Zx9Qm2Lr8Tb4Wk7Yp3Nc6Hd1",
            ),
            (
                r#"{"client_secret": "9f86d081884c7d659a2feaa0c55ad015"}"#,
                "9f86d081884c7d659a2feaa0c55ad015",
            ),
            (
                "curl -H 'X-Api-Key: q8Fz2LmR7vKx0PjW4nTb' https://api.example.com",
                "q8Fz2LmR7vKx0PjW4nTb",
            ),
            (
                "Authorization: Bearer mF_9.B5f-4.1JqM2xZ7pLk0",
                "mF_9.B5f-4.1JqM2xZ7pLk0",
            ),
            ("DB_PASSWORD: 'n7Rk2pQx9LmZ4vTw'", "n7Rk2pQx9LmZ4vTw"),
            (
                "export SESSION_TOKEN=c2Vzc2lvbjoxMjM0NTY3OA",
                "c2Vzc2lvbjoxMjM0NTY3OA",
            ),
        ] {
            let spans = Secrets::default().scan(text);
            let found: Vec<&str> = spans.iter().map(|s| &text[s.start..s.end]).collect();
            assert_eq!(found, [value], "{text}");
            assert_eq!(spans[0].label, "HIGH_ENTROPY", "{text}");
        }
    }

    /// Random-looking strings that are ordinary in documents and code: each was reported as
    /// a secret before values needed a credential's name.
    #[test]
    fn leaves_random_looking_text_without_a_credential_name_alone() {
        for text in [
            "Here is the logo inline: data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
            "Attachment preview (base64): UXVhcnRlcmx5IHNhbGVzIGdyZXcgMTIgcGVyY2VudCBpbiB0aGUgbm9ydGggcmVnaW9uLg==",
            "[Open in Colab](https://colab.research.google.com/drive/1PPxYEBa6eu__LquGoFFJZkhYgWVYE6kh)",
            "https://www.sss.gov.ph/DLForms/providentrelated/PFF039_MembersDataForm_V07.pdf",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
            "integrity sha512-Q1bX3nGw9fJ2kLmP7rT5vY8zA4cD6eH0iK2oN4qS6uW8xZ1bC3dF5gH7jL9mN0pQ",
            "id: 550e8400-e29b-41d4-a716-446655440000",
            "color: #1A2b3C; background: url(img/Hx7Kq2Lm9Np4Rs6Tv8Wy0Za.png)",
            "Run pip install scikit-learn; see sk-learn-compatible-estimators-guide",
            "the tokenizer: bert-base-multilingual-cased-v2Qx7",
        ] {
            assert_eq!(labels(text), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn secrets_are_redacted_by_default() {
        assert_eq!(Secrets::default().default_policy(), Policy::Redact);
    }

    #[test]
    fn sees_through_invisible_characters() {
        let text = "AKIA\u{200B}IOSFODNN7EXAMPLE";
        let v = Secrets::default().check_now(&Subject::text(text));
        assert_eq!(v.spans[0].end - v.spans[0].start, text.len());
        assert_eq!(v.redacted.as_deref(), Some("[AWS_ACCESS_KEY]"));
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for text in [
            "The quick brown fox jumps over the lazy dog.",
            "see https://docs.rs/any-core/latest/any_core/struct.ChatRequest.html",
            "a_very_long_snake_case_identifier_name",
            "sha 0123456789abcdef0123456789abcdef",
            "AKIA is a prefix",
        ] {
            assert_eq!(labels(text), Vec::<String>::new(), "{text}");
        }
    }

    #[test]
    fn key_block_is_redacted_whole() {
        let text = "key:\n-----BEGIN PRIVATE KEY-----\nABC\n-----END PRIVATE KEY-----\nbye";
        let v = Secrets::default().check_now(&Subject::text(text));
        assert_eq!(v.redacted.as_deref(), Some("key:\n[PRIVATE_KEY]\nbye"));
        assert_eq!(v.score, 1.0);
    }
}
