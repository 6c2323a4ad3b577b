//! `provider:model` ids, the table of known providers, and the builder behind them.

#[cfg(feature = "http")]
use std::time::Duration;

use any_core::{BoxChatService, BoxEmbedService, Error, Result};
#[cfg(any(feature = "local", feature = "http"))]
use any_core::{ChatServiceExt, EmbedServiceExt};

#[cfg(feature = "local")]
use crate::providers::local::{EmbedSource, LocalChat, LocalEmbed, LocalSource};

/// What a provider can do, declared rather than discovered by failure.
///
/// For servers that run whatever model they were started with (vLLM, llama.cpp, Ollama,
/// ...), a capability says the *API* supports it; the loaded model must support it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Answers stream as they are generated.
    pub streaming: bool,
    /// Tool (function) calls.
    pub tools: bool,
    /// JSON mode: any valid JSON object.
    pub json_mode: bool,
    /// Output constrained to a JSON Schema.
    pub json_schema: bool,
    /// An embeddings endpoint.
    pub embeddings: bool,
    /// Images in messages.
    pub vision: bool,
}

/// How a provider is reached: which client speaks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// The built-in backend, in this process.
    Local,
    /// OpenAI's Chat Completions API.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

/// One row of the provider table: a name, where it is, which environment variables
/// configure it, and what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderInfo {
    /// The name before the colon in `provider:model`.
    pub name: &'static str,
    /// Which client speaks to it.
    pub protocol: Protocol,
    /// The API's base URL (empty for `local`).
    pub base_url: &'static str,
    /// The variable holding the API key, if the provider takes one.
    pub api_key_env: Option<&'static str>,
    /// Whether a key is required (hosted APIs) or optional (local servers).
    pub api_key_required: bool,
    /// The variable that overrides the base URL.
    pub base_url_env: Option<&'static str>,
    /// What it can do.
    pub capabilities: Capabilities,
    /// Whether the server accepts `top_k`, `min_p` and `repetition_penalty`.
    pub sampling_extensions: bool,
    /// What it is, in a few words.
    pub description: &'static str,
}

const fn caps(tools: bool, json_schema: bool, embeddings: bool, vision: bool) -> Capabilities {
    Capabilities {
        streaming: true,
        tools,
        json_mode: true,
        json_schema,
        embeddings,
        vision,
    }
}

const fn hosted(
    name: &'static str,
    base_url: &'static str,
    key: &'static str,
    base_env: &'static str,
    capabilities: Capabilities,
    sampling_extensions: bool,
    description: &'static str,
) -> ProviderInfo {
    ProviderInfo {
        name,
        protocol: Protocol::OpenAi,
        base_url,
        api_key_env: Some(key),
        api_key_required: true,
        base_url_env: Some(base_env),
        capabilities,
        sampling_extensions,
        description,
    }
}

const fn self_hosted(
    name: &'static str,
    base_url: &'static str,
    key: &'static str,
    base_env: &'static str,
    capabilities: Capabilities,
    description: &'static str,
) -> ProviderInfo {
    ProviderInfo {
        name,
        protocol: Protocol::OpenAi,
        base_url,
        api_key_env: Some(key),
        api_key_required: false,
        base_url_env: Some(base_env),
        capabilities,
        sampling_extensions: true,
        description,
    }
}

/// The known providers. The OpenAI-compatible ones are rows, not code: one client speaks
/// to all of them.
static PROVIDERS: &[ProviderInfo] = &[
    ProviderInfo {
        name: "local",
        protocol: Protocol::Local,
        base_url: "",
        api_key_env: None,
        api_key_required: false,
        base_url_env: None,
        // Tools: calls are constrained and parsed when `tool_choice` forces one (required or
        // a named function); with `auto` the local model answers in text.
        capabilities: Capabilities {
            streaming: true,
            tools: true,
            json_mode: true,
            json_schema: true,
            embeddings: true,
            vision: false,
        },
        sampling_extensions: true,
        description: "the built-in GGUF backend (`local` = the default model, `local:/path/model.gguf`)",
    },
    hosted(
        "openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        caps(true, true, true, true),
        false,
        "OpenAI",
    ),
    ProviderInfo {
        name: "anthropic",
        protocol: Protocol::Anthropic,
        base_url: "https://api.anthropic.com",
        api_key_env: Some("ANTHROPIC_API_KEY"),
        api_key_required: true,
        base_url_env: Some("ANTHROPIC_BASE_URL"),
        capabilities: caps(true, true, false, true),
        sampling_extensions: false,
        description: "Anthropic's Messages API (JSON Schema through a forced tool)",
    },
    self_hosted(
        "vllm",
        "http://localhost:8000/v1",
        "VLLM_API_KEY",
        "VLLM_BASE_URL",
        caps(true, true, true, true),
        "vLLM's OpenAI-compatible server",
    ),
    self_hosted(
        "llamacpp",
        "http://localhost:8080/v1",
        "LLAMACPP_API_KEY",
        "LLAMACPP_BASE_URL",
        caps(true, true, true, true),
        "llama.cpp's `llama-server`",
    ),
    self_hosted(
        "llamafile",
        "http://localhost:8080/v1",
        "LLAMAFILE_API_KEY",
        "LLAMAFILE_BASE_URL",
        caps(false, false, true, false),
        "a llamafile's built-in server",
    ),
    self_hosted(
        "ollama",
        "http://localhost:11434/v1",
        "OLLAMA_API_KEY",
        "OLLAMA_BASE_URL",
        caps(true, true, true, true),
        "Ollama's OpenAI-compatible endpoint",
    ),
    self_hosted(
        "lmstudio",
        "http://localhost:1234/v1",
        "LMSTUDIO_API_KEY",
        "LMSTUDIO_BASE_URL",
        caps(true, true, true, true),
        "LM Studio's local server",
    ),
    hosted(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        "MISTRAL_BASE_URL",
        caps(true, true, true, true),
        false,
        "Mistral AI",
    ),
    hosted(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        "GROQ_BASE_URL",
        caps(true, true, false, true),
        false,
        "Groq",
    ),
    hosted(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        "TOGETHER_BASE_URL",
        caps(true, true, true, true),
        true,
        "Together AI",
    ),
    hosted(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BASE_URL",
        caps(true, false, false, false),
        false,
        "DeepSeek (JSON mode, no JSON Schema)",
    ),
    hosted(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        "OPENROUTER_BASE_URL",
        caps(true, true, false, true),
        true,
        "OpenRouter (many models behind one key)",
    ),
    hosted(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        "FIREWORKS_BASE_URL",
        caps(true, true, true, true),
        true,
        "Fireworks AI",
    ),
    hosted(
        "xai",
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        "XAI_BASE_URL",
        caps(true, true, false, true),
        false,
        "xAI",
    ),
];

/// The known providers, in a stable order: `local`, `openai`, `anthropic`, then the other
/// OpenAI-compatible servers.
///
/// ```
/// let names: Vec<_> = any_llm::providers().iter().map(|p| p.name).collect();
/// assert!(names.contains(&"ollama") && names.contains(&"anthropic"));
/// ```
pub fn providers() -> &'static [ProviderInfo] {
    PROVIDERS
}

/// Splits `provider:model` at the first colon (`ollama:gemma3:4b` is provider `ollama`,
/// model `gemma3:4b`); an id without a colon is a provider with its default model.
///
/// ```
/// assert_eq!(any_llm::parse_model_id("ollama:gemma3:4b"), ("ollama", "gemma3:4b"));
/// assert_eq!(any_llm::parse_model_id("local"), ("local", ""));
/// ```
pub fn parse_model_id(id: &str) -> (&str, &str) {
    id.split_once(':').unwrap_or((id, ""))
}

/// The chat model `id` (`provider:model`), with keys and base URLs from the provider's
/// environment variables.
///
/// ```no_run
/// use any_core::ChatServiceExt;
/// # #[tokio::main] async fn main() -> any_core::Result<()> {
/// let local = any_llm::model("local")?;                 // the embedded default model
/// let gpt = any_llm::model("openai:gpt-4o-mini")?;      // OPENAI_API_KEY
/// let gemma = any_llm::model("ollama:gemma3:4b")?;      // a local Ollama, no key
/// println!("{}", local.complete("Hi!").await?);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidRequest`] for an unknown provider (listing the known ones) or a missing
/// model name; [`Error::Authentication`] naming the variable to set when a key is needed
/// and missing; [`Error::ModelNotFound`] for a `local:` path with no file.
pub fn model(id: &str) -> Result<BoxChatService> {
    let (provider, name) = parse_model_id(id);
    Provider::named(provider)?.model(name)
}

/// The embedding model `id` (`provider:model`); see [`model`].
///
/// `local` (and `local:default`) is the local sentence encoder, all-MiniLM-L6-v2;
/// `local:chat` the default chat model's hidden states, as before there was an encoder; the
/// table at [`EmbedSource`](crate::providers::local::EmbedSource) lists every `local` name.
///
/// ```no_run
/// use any_core::EmbedServiceExt;
/// # #[tokio::main] async fn main() -> any_core::Result<()> {
/// let embedder = any_llm::embedder("local")?;
/// let vectors = embedder.embed(["My sister Ingrid lives in Bergen."]).await?;
/// assert_eq!(vectors[0].len(), 384);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`model`]; [`Error::Unsupported`] if the provider has no embeddings.
pub fn embedder(id: &str) -> Result<BoxEmbedService> {
    let (provider, name) = parse_model_id(id);
    Provider::named(provider)?.embedder(name)
}

/// A provider with the keys, addresses and timeouts to reach it: the builder behind
/// [`model`], for values that do not come from the environment.
///
/// ```
/// use std::time::Duration;
/// use any_llm::Provider;
///
/// # fn main() -> any_core::Result<()> {
/// // Any OpenAI-compatible server, by address.
/// let model = Provider::openai()
///     .base_url("http://10.0.0.7:8000/v1")
///     .api_key("token-abc")
///     .header("x-team", "search")
///     .timeout(Duration::from_secs(60))
///     .model("qwen2.5-7b-instruct")?;
/// assert!(Provider::named("groq")?.capabilities().tools);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Provider {
    info: ProviderInfo,
    api_key: Option<String>,
    base_url: Option<String>,
    headers: Vec<(String, String)>,
    #[cfg(feature = "http")]
    http: Option<crate::http::HttpOptions>,
}

impl Provider {
    /// The provider of that name.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] listing the known names.
    pub fn named(name: &str) -> Result<Provider> {
        let Some(info) = PROVIDERS.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
            return Err(Error::InvalidRequest(format!(
                "unknown provider `{name}`; known providers: {}",
                known.join(", ")
            )));
        };
        Ok(Self::from_info(*info))
    }

    /// A provider from a row of your own (a server not in the table).
    pub fn from_info(info: ProviderInfo) -> Provider {
        Provider {
            info,
            api_key: None,
            base_url: None,
            headers: Vec::new(),
            #[cfg(feature = "http")]
            http: None,
        }
    }

    fn known(name: &str) -> Provider {
        Self::named(name).unwrap_or_else(|e| unreachable!("`{name}` is a row of the table: {e}"))
    }

    /// OpenAI, or any OpenAI-compatible server with [`Provider::base_url`].
    pub fn openai() -> Provider {
        Self::known("openai")
    }

    /// Anthropic.
    pub fn anthropic() -> Provider {
        Self::known("anthropic")
    }

    /// The built-in backend.
    pub fn local() -> Provider {
        Self::known("local")
    }

    /// The row this provider was made from.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// What it can do.
    pub fn capabilities(&self) -> Capabilities {
        self.info.capabilities
    }

    /// The API key (instead of the environment variable).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The base URL (instead of the environment variable or the default).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// A header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How the HTTP client connects and waits (a client of its own; by default the
    /// process-wide one).
    #[cfg(feature = "http")]
    pub fn http_options(mut self, options: crate::http::HttpOptions) -> Self {
        self.http = Some(options);
        self
    }

    /// The longest a whole request may take (a shorthand for [`Provider::http_options`]).
    #[cfg(feature = "http")]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.http = Some(self.http.unwrap_or_default().timeout(limit));
        self
    }

    /// The longest wait for a connection (a shorthand for [`Provider::http_options`]).
    #[cfg(feature = "http")]
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.http = Some(self.http.unwrap_or_default().connect_timeout(limit));
        self
    }

    /// The chat model `name` of this provider.
    ///
    /// # Errors
    /// As [`model`].
    pub fn model(&self, name: &str) -> Result<BoxChatService> {
        #[cfg(not(any(feature = "local", feature = "http")))]
        let _ = name;
        match self.info.protocol {
            #[cfg(feature = "local")]
            Protocol::Local => Ok(LocalChat::new(LocalSource::parse(name)?).boxed_chat()),
            #[cfg(not(feature = "local"))]
            Protocol::Local => Err(self.missing_feature("local")),
            #[cfg(feature = "http")]
            Protocol::OpenAi => {
                let name = self.model_name(name)?;
                Ok(
                    crate::providers::openai::OpenAiChat::new(self.connection()?, name)?
                        .sampling_extensions(self.info.sampling_extensions)
                        .boxed_chat(),
                )
            }
            #[cfg(feature = "http")]
            Protocol::Anthropic => {
                let name = self.model_name(name)?;
                Ok(
                    crate::providers::anthropic::AnthropicChat::new(self.connection()?, name)?
                        .boxed_chat(),
                )
            }
            #[cfg(not(feature = "http"))]
            _ => Err(self.missing_feature("http")),
        }
    }

    /// The embedding model `name` of this provider.
    ///
    /// # Errors
    /// As [`model`]; [`Error::Unsupported`] if the provider has no embeddings.
    pub fn embedder(&self, name: &str) -> Result<BoxEmbedService> {
        if !self.info.capabilities.embeddings {
            return Err(Error::Unsupported(format!(
                "{} has no embeddings endpoint",
                self.info.name
            )));
        }
        #[cfg(not(any(feature = "local", feature = "http")))]
        let _ = name;
        match self.info.protocol {
            #[cfg(feature = "local")]
            Protocol::Local => Ok(LocalEmbed::new(EmbedSource::parse(name)?).boxed_embed()),
            #[cfg(not(feature = "local"))]
            Protocol::Local => Err(self.missing_feature("local")),
            #[cfg(feature = "http")]
            Protocol::OpenAi => {
                let name = self.model_name(name)?;
                Ok(
                    crate::providers::openai::OpenAiEmbed::new(self.connection()?, name)?
                        .boxed_embed(),
                )
            }
            #[cfg(feature = "http")]
            Protocol::Anthropic => Err(Error::Unsupported("anthropic has no embeddings".into())),
            #[cfg(not(feature = "http"))]
            _ => Err(self.missing_feature("http")),
        }
    }

    #[cfg(not(all(feature = "http", feature = "local")))]
    fn missing_feature(&self, feature: &str) -> Error {
        Error::Unsupported(format!(
            "{} needs any-llm's `{feature}` feature, which this build leaves out",
            self.info.name
        ))
    }

    #[cfg(feature = "http")]
    fn model_name<'a>(&self, name: &'a str) -> Result<&'a str> {
        if name.is_empty() {
            return Err(Error::InvalidRequest(format!(
                "no model name: write `{}:<model>`",
                self.info.name
            )));
        }
        Ok(name)
    }

    /// The base URL and key from the arguments, else the environment, else the row.
    #[cfg(feature = "http")]
    pub fn connection(&self) -> Result<crate::providers::Connection> {
        use reqwest::header::{HeaderName, HeaderValue};
        let env = |var: Option<&str>| {
            var.and_then(|v| std::env::var(v).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let base_url = self
            .base_url
            .clone()
            .or_else(|| env(self.info.base_url_env))
            .unwrap_or_else(|| self.info.base_url.to_owned());
        let api_key = self.api_key.clone().or_else(|| env(self.info.api_key_env));
        // A hosted API needs its key; the same client pointed elsewhere (a local server
        // behind OPENAI_BASE_URL, say) may not.
        let at_default = base_url.trim_end_matches('/') == self.info.base_url;
        if api_key.is_none() && self.info.api_key_required && at_default {
            let var = self
                .info
                .api_key_env
                .unwrap_or("the provider's key variable");
            return Err(Error::Authentication(format!(
                "{}: no API key; set {var} or pass one with Provider::api_key",
                self.info.name
            )));
        }
        let client = match &self.http {
            Some(options) => crate::http::HttpClient::new(options)?,
            None => crate::http::HttpClient::shared()?,
        };
        let mut connection =
            crate::providers::Connection::new(self.info.name, base_url, api_key, client);
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::InvalidRequest(format!("`{name}` is not a valid header name"))
            })?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                Error::InvalidRequest(format!("the value of header `{name}` is not valid"))
            })?;
            connection.headers.append(name, value);
        }
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_and_missing_names_are_clear_errors() {
        let err = model("nope:x").unwrap_err().to_string();
        assert!(
            err.contains("unknown provider `nope`") && err.contains("ollama"),
            "{err}"
        );
        let err = model("openai").unwrap_err().to_string();
        assert!(
            err.contains("openai:<model>") || err.contains("API key"),
            "{err}"
        );
        let err = model("local:/no/such/file.gguf").unwrap_err();
        assert!(matches!(err, Error::ModelNotFound(m) if m.contains("/no/such/file.gguf")));
        let err = embedder("groq:x").unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)));
    }

    #[test]
    fn a_missing_key_names_its_variable() {
        // A key variable no test sets: the row's own is looked up, so use a row of ours.
        let info = ProviderInfo {
            name: "acme",
            api_key_env: Some("ANY_LLM_TEST_UNSET_KEY"),
            base_url_env: None,
            ..*Provider::openai().info()
        };
        let err = Provider::from_info(ProviderInfo {
            base_url: "https://acme.invalid/v1",
            ..info
        })
        .model("m")
        .unwrap_err();
        assert!(matches!(err, Error::Authentication(m) if m.contains("ANY_LLM_TEST_UNSET_KEY")));
        // Pointed at another server, no key is needed.
        Provider::from_info(ProviderInfo {
            base_url: "https://acme.invalid/v1",
            ..info
        })
        .base_url("http://127.0.0.1:9/v1")
        .model("m")
        .unwrap();
        assert!(
            Provider::openai()
                .header("bad header", "x")
                .api_key("k")
                .model("m")
                .is_err()
        );
    }

    #[test]
    fn ids_split_at_the_first_colon() {
        assert_eq!(parse_model_id("ollama:gemma3:4b"), ("ollama", "gemma3:4b"));
        assert_eq!(
            parse_model_id("local:/m/a:b.gguf"),
            ("local", "/m/a:b.gguf")
        );
        assert_eq!(parse_model_id("openai:"), ("openai", ""));
        let names: Vec<_> = providers().iter().map(|p| p.name).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "provider names are unique");
    }
}
