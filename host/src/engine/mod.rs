//! The engine: the queue and its delivery, and nothing of how a person or
//! an assistant reaches them.
//!
//! Its modules, each building on those listed before it: the configuration
//! ([`config`]), the data dir ([`paths`]), the project of a folder
//! ([`project`]), time ([`clock`]), the text
//! helpers every layer shares ([`text`]), the policy runtime ([`policy`]),
//! the SQLite queue ([`store`]), the Mem0 client ([`mem0`]), one delivery
//! run ([`worker`]), the parts of one process put together ([`app`]), the
//! daemon's lock, record and token in the data dir ([`daemon`]), and the
//! delivery loop a long-running process runs ([`service`]).
//!
//! May import: the engine only. Nothing here knows the command line, MCP,
//! the dashboard, or the user's machine outside the data dir.

pub mod config;

pub mod paths;

pub mod project;

pub mod clock;

pub mod text;

pub mod policy;

pub mod store;

pub mod mem0;

pub mod worker;

pub mod app;

pub mod daemon;

pub mod service;
