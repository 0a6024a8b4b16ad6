//! `--weave URL --weave-project ENTITY/PROJECT`: each recorded call also goes to a W&B Weave
//! trace server, as a Weave call (see `llm_observability::WeaveSink`).

use llm_observability::{LlmObservabilityLayerBuilder, WeaveSink};

/// The Weave flags.
#[derive(Debug, clap::Args)]
pub(crate) struct WeaveFlags {
    /// Also send each call to this W&B Weave trace server, as a Weave call.
    ///
    /// W&B cloud is `https://trace.wandb.ai`; a self-hosted or local trace server has its own
    /// URL. The API key comes from WANDB_API_KEY (HTTP Basic auth, user `api`); a local trace
    /// server needs none. Calls appear in the project within the sink's batch interval (about
    /// 200 ms). A refused key is logged once, not per call. Needs --weave-project.
    #[arg(long, value_name = "URL", requires = "weave_project")]
    weave: Option<String>,
    /// The Weave project calls are written to, ENTITY/PROJECT.
    #[arg(long, value_name = "ENTITY/PROJECT", requires = "weave")]
    weave_project: Option<String>,
}

impl WeaveFlags {
    /// Adds the Weave sink to `builder` when `--weave` is given.
    pub(crate) fn add_sink(
        &self,
        builder: LlmObservabilityLayerBuilder,
    ) -> Result<LlmObservabilityLayerBuilder, llm_observability::WeaveError> {
        let (Some(url), Some(project)) = (&self.weave, &self.weave_project) else {
            return Ok(builder);
        };
        let sink = WeaveSink::builder(project.as_str())
            .base_url(url.as_str())
            .build()?;
        tracing::info!(
            "sending calls to Weave at {} (project {project})",
            sink.endpoint()
        );
        Ok(builder.sink(sink))
    }
}
