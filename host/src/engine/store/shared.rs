//! A store shared by the tasks of one process: a mutex around one
//! connection, used from async code through `spawn_blocking`, so a commit's
//! fsync never stalls the async runtime.

use std::sync::{Arc, Mutex};

use super::{Store, StoreError};

#[derive(Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    pub fn new(store: Store) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` on a blocking thread with the store locked.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while locked leaves no half-done transaction (rusqlite
            // rolls back on drop), so a poisoned lock is safe to take.
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on this thread (for non-async callers).
    pub fn run_blocking<R>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}
