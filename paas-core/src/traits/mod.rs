//! The six stage traits. Each is `#[async_trait]`, `Send + Sync + Debug + 'static`, used as
//! `Arc<dyn Trait>`; each method documents its contract.

mod builder;
mod log_sink;
mod release_store;
mod router;
mod scheduler;
mod source;

pub use builder::{BuildRequest, Builder, ImageRequest, OutputSender, PruneRequest};
pub use log_sink::LogSink;
pub use release_store::{ListReleases, ReleaseStore};
pub use router::{DrainReport, DrainRequest, Router};
pub use scheduler::{
    sort_instances, web_endpoints, ConvergeReport, ConvergeRequest, HealthCheck, HealthRequest,
    InstanceEvent, OutputStream, RunHandle, RunOutput, RunRequest, Scheduler, StartRequest,
    StopRequest,
};
pub use source::{CommitFilesRequest, CommitInfo, ExportRequest, SourceFile, SourceStore};
mod forward;
