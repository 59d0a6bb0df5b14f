//! SourceStore on git2 bare repositories and a git smart-HTTP tower service for the paas SDK.
