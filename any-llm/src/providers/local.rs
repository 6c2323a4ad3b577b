//! The `local` provider: the built-in backend, each model file opened once per process and
//! shared by every service that names it.
//!
//! `local` and `local:default` are the embedded default model (or the file `ANY_MODEL`
//! names, as [`crate::local::default_model`] says); `local:/path/to/model.gguf` is that
//! file. Embeddings come from a sentence encoder ([`LocalEmbed`]; [`EmbedSource`] says which
//! names mean what). Opening is lazy: [`LocalChat`] is created at once, and the model is loaded (and
//! the default model downloaded, the first time) on the first request, off the async
//! threads; later services and requests reuse the same [`LocalModel`].

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use any_core::{ChatRequest, ChatStream, EmbedRequest, EmbedResponse, Error, Result};
use tokio::sync::OnceCell;
use tower::ServiceExt;

use crate::local::LocalModel;

mod embed;
pub use embed::{EmbedSource, LocalEmbed};

/// Which file a local service runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocalSource {
    /// The embedded default model (or `ANY_MODEL`).
    Default,
    /// A GGUF file.
    File(PathBuf),
}

impl LocalSource {
    /// The source a `local:` model name stands for: empty or `default` is the default
    /// model, anything else a path or the name of a cached model
    /// ([`cache::resolve`](crate::local::cache::resolve)).
    ///
    /// # Errors
    /// [`Error::ModelNotFound`] if it is neither an existing file nor a cached model.
    pub fn parse(name: &str) -> Result<LocalSource> {
        match name {
            "" | "default" => Ok(LocalSource::Default),
            spec => crate::local::cache::resolve(spec).map(LocalSource::File),
        }
    }
}

/// The model of `source`, opened on first use and shared by the whole process.
///
/// # Errors
/// As [`crate::local::default_model`] or [`LocalModel::open`]; a failed open is not
/// remembered, so a later call tries again.
pub async fn shared_model(source: &LocalSource) -> Result<LocalModel> {
    static MODELS: Shared<LocalSource, LocalModel> = OnceLock::new();
    open_shared(&MODELS, source.clone(), |source| async move {
        match source {
            LocalSource::Default => crate::local::default_model().await,
            LocalSource::File(path) => tokio::task::spawn_blocking(move || LocalModel::open(path))
                .await
                .map_err(|e| {
                    Error::model_with_source(format!("loading the model panicked: {e}"), e)
                })?,
        }
    })
    .await
}

/// What a process has opened, by source: each opened once, on first use.
type Shared<K, V> = OnceLock<Mutex<HashMap<K, Arc<OnceCell<V>>>>>;

/// The value for `key` in `cells`, opened by `open` the first time (a failed open is not
/// remembered). Concurrent first uses wait for one open.
async fn open_shared<K, V, F, Fut>(cells: &Shared<K, V>, key: K, open: F) -> Result<V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
    F: FnOnce(K) -> Fut,
    Fut: Future<Output = Result<V>>,
{
    let cell = {
        let mut map = cells
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_default().clone()
    };
    cell.get_or_try_init(|| open(key)).await.cloned()
}

/// A chat (and embedding) service over a shared local model, opened on its first request.
///
/// ```no_run
/// use any_core::ChatServiceExt;
/// use any_llm::providers::local::{LocalChat, LocalSource};
///
/// # #[tokio::main] async fn main() -> any_core::Result<()> {
/// let model = LocalChat::new(LocalSource::Default);
/// println!("{}", model.complete("Name a fruit.").await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalChat {
    source: LocalSource,
}

impl LocalChat {
    /// A service over `source` (nothing is opened yet).
    pub fn new(source: LocalSource) -> Self {
        LocalChat { source }
    }

    /// Which file it runs.
    pub fn source(&self) -> &LocalSource {
        &self.source
    }
}

impl tower::Service<ChatRequest> for LocalChat {
    type Response = ChatStream;
    type Error = Error;
    type Future = any_core::ChatFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: ChatRequest) -> Self::Future {
        let source = self.source.clone();
        Box::pin(async move { shared_model(&source).await?.oneshot(request).await })
    }
}

impl tower::Service<EmbedRequest> for LocalChat {
    type Response = EmbedResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<EmbedResponse>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: EmbedRequest) -> Self::Future {
        let source = self.source.clone();
        Box::pin(async move { shared_model(&source).await?.oneshot(request).await })
    }
}
