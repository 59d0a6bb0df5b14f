//! Router for the paas SDK: a hyper/tower reverse proxy with hot route swaps, load balancing, health checks and draining.
