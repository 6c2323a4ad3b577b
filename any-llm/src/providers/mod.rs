//! The providers: where a model runs and how it is reached.
//!
//! - `local`: the built-in GGUF backend ([`any_llm_local`]), in this process (feature `local`).
//! - [`openai`]: any OpenAI-compatible Chat Completions server (feature `http`).
//! - [`anthropic`]: Anthropic's Messages API (feature `http`).
//!
//! Most code reaches them through [`crate::model`] and [`crate::Provider`]; the typed
//! services here are for code that wants their own knobs.

#[cfg(feature = "http")]
pub mod anthropic;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "http")]
pub mod openai;

#[cfg(feature = "http")]
pub use connection::Connection;

#[cfg(feature = "http")]
mod connection {
    use crate::http::HttpClient;
    use reqwest::header::HeaderMap;

    /// Where a hosted provider is and how to authenticate: what [`crate::Provider`]
    /// resolves from arguments and environment variables.
    #[derive(Debug, Clone)]
    #[non_exhaustive]
    pub struct Connection {
        /// The provider's name, for error messages (`"groq"`, `"anthropic"`).
        pub provider: String,
        /// The API's base URL, without a trailing slash.
        pub base_url: String,
        /// The API key, if the provider needs one.
        pub api_key: Option<String>,
        /// Headers sent with every request, besides authentication.
        pub headers: HeaderMap,
        /// The HTTP client (the process-wide one unless options were given).
        pub client: HttpClient,
    }

    impl Connection {
        /// A connection to `base_url` (a trailing `/` is dropped) over `client`.
        pub fn new(
            provider: impl Into<String>,
            base_url: impl Into<String>,
            api_key: Option<String>,
            client: HttpClient,
        ) -> Self {
            let mut base_url = base_url.into();
            while base_url.ends_with('/') {
                base_url.pop();
            }
            Connection {
                provider: provider.into(),
                base_url,
                api_key,
                headers: HeaderMap::new(),
                client,
            }
        }
    }
}
