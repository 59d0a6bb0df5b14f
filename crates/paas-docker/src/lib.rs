//! Builder and Scheduler on the Docker Engine API (bollard) for the paas SDK.
