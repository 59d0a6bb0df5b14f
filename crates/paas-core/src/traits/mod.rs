//! The six stage traits. Each is `#[async_trait]`, `Send + Sync + Debug + 'static`, used as
//! `Arc<dyn Trait>`; each method documents its contract.

pub mod builder;
pub mod log_sink;
pub mod release_store;
pub mod router;
pub mod scheduler;
pub mod source;

pub use builder::{BuildRequest, Builder, ImageRequest, OutputSender, PruneRequest};
pub use log_sink::LogSink;
pub use release_store::{ListReleases, ReleaseStore};
pub use router::{DrainReport, DrainRequest, Router};
pub use scheduler::{
    web_endpoints, ConvergeReport, ConvergeRequest, HealthCheck, HealthRequest, InstanceEvent,
    OutputStream, RunHandle, RunOutput, RunRequest, Scheduler, StartRequest, StopRequest,
};
pub use source::{CommitFilesRequest, CommitInfo, ExportRequest, SourceFile, SourceStore};
