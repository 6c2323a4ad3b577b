//! The `local` provider's embeddings: the sentence encoder by default, a chat model's hidden
//! states when asked.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use any_core::{EmbedRequest, EmbedResponse, Error, Result};
use tower::ServiceExt;

use super::{LocalSource, Shared, open_shared, shared_model};
use crate::local::bert::SentenceEncoder;

/// What a local embedding service runs, as `local:NAME` names it for
/// [`embedder`](crate::embedder):
///
/// | name | embeddings from |
/// |---|---|
/// | `local`, `local:default` | the default sentence encoder, all-MiniLM-L6-v2 (or the folder `ANY_EMBED_MODEL` names) |
/// | `local:/path/to/folder` | the sentence-transformers model in that folder |
/// | `local:chat` | the default chat model's hidden states, mean-pooled (what `local` gave before the sentence encoder) |
/// | `local:/path/to/model.gguf` | that chat model's hidden states |
///
/// ```
/// use any_llm::providers::local::EmbedSource;
/// assert_eq!(EmbedSource::parse("")?, EmbedSource::Default);
/// assert!(matches!(EmbedSource::parse("chat")?, EmbedSource::ChatModel(_)));
/// # Ok::<(), any_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EmbedSource {
    /// The default sentence encoder.
    Default,
    /// A sentence-transformers model folder.
    Folder(PathBuf),
    /// A chat model's mean-pooled hidden states.
    ChatModel(LocalSource),
}

impl EmbedSource {
    /// The source a `local:` embedding model name stands for (see the table above).
    ///
    /// # Errors
    /// [`Error::ModelNotFound`] for a path to nothing.
    pub fn parse(name: &str) -> Result<EmbedSource> {
        match name {
            "" | "default" => Ok(EmbedSource::Default),
            "chat" => Ok(EmbedSource::ChatModel(LocalSource::Default)),
            path => {
                let path = PathBuf::from(path);
                if path.is_dir() {
                    Ok(EmbedSource::Folder(path))
                } else {
                    LocalSource::parse(name).map(EmbedSource::ChatModel)
                }
            }
        }
    }
}

/// The sentence encoder of `source` (not [`EmbedSource::ChatModel`]), opened on first use and
/// shared by the whole process.
async fn shared_encoder(folder: Option<PathBuf>) -> Result<SentenceEncoder> {
    static ENCODERS: Shared<Option<PathBuf>, SentenceEncoder> = OnceLock::new();
    open_shared(&ENCODERS, folder, |folder| async move {
        match folder {
            None => crate::local::default_embedder().await,
            Some(dir) => tokio::task::spawn_blocking(move || SentenceEncoder::open(dir))
                .await
                .map_err(|e| {
                    Error::model_with_source(format!("loading the encoder panicked: {e}"), e)
                })?,
        }
    })
    .await
}

/// An embedding service over a shared local model, opened on its first request (the default
/// encoder downloaded, the first time).
///
/// ```no_run
/// use any_core::EmbedServiceExt;
/// use any_llm::providers::local::{EmbedSource, LocalEmbed};
///
/// # #[tokio::main] async fn main() -> any_core::Result<()> {
/// let embedder = LocalEmbed::new(EmbedSource::Default);
/// let vectors = embedder.embed(["Where does my sister live?"]).await?;
/// assert_eq!(vectors[0].len(), 384);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LocalEmbed {
    source: EmbedSource,
}

impl LocalEmbed {
    /// A service over `source` (nothing is opened yet).
    pub fn new(source: EmbedSource) -> Self {
        LocalEmbed { source }
    }

    /// What it runs.
    pub fn source(&self) -> &EmbedSource {
        &self.source
    }
}

impl tower::Service<EmbedRequest> for LocalEmbed {
    type Response = EmbedResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<EmbedResponse>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: EmbedRequest) -> Self::Future {
        let source = self.source.clone();
        Box::pin(async move {
            match source {
                EmbedSource::Default => shared_encoder(None).await?.oneshot(request).await,
                EmbedSource::Folder(dir) => shared_encoder(Some(dir)).await?.oneshot(request).await,
                EmbedSource::ChatModel(model) => shared_model(&model).await?.oneshot(request).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_the_encoder_a_folder_or_a_chat_model() {
        assert_eq!(EmbedSource::parse("default").unwrap(), EmbedSource::Default);
        let dir = std::env::temp_dir();
        assert_eq!(
            EmbedSource::parse(dir.to_str().unwrap()).unwrap(),
            EmbedSource::Folder(dir)
        );
        assert_eq!(
            EmbedSource::parse("chat").unwrap(),
            EmbedSource::ChatModel(LocalSource::Default)
        );
        let err = EmbedSource::parse("/no/such/model.gguf").unwrap_err();
        assert!(matches!(err, Error::ModelNotFound(_)), "{err}");
    }
}
