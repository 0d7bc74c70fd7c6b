//! `workloads.shop.recommendations.Recommendations`: the served model, and rebuilds that
//! ingest new orders and swap a new model in without making requests wait.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::log::info;
use crate::model::{py_round, Baskets, Model, ScoredProduct};
use crate::orders::Orders;
use crate::rpc::ShopError;
use crate::store::Store;

pub const INGEST_BATCH: i64 = 2000;

/// `contracts.ModelStats`, fields in the contract's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    pub baskets: usize,
    pub products: usize,
    pub pairs: usize,
    pub build_seconds: f64,
    pub built_at: f64,
}

impl ModelStats {
    fn of(model: &Model) -> ModelStats {
        ModelStats {
            baskets: model.baskets,
            products: model.products(),
            pairs: model.pairs,
            build_seconds: py_round(model.build_seconds, 3),
            built_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

/// What only a rebuild touches; its mutex is Python's `_rebuild_lock`.
struct Ingest {
    store: Store,
    baskets: Baskets,
    orders: Option<Box<dyn Orders>>,
}

pub struct Recommendations {
    model: RwLock<Arc<Model>>,
    ingest: Mutex<Ingest>,
    stats: Mutex<ModelStats>,
}

impl Recommendations {
    /// Loads every basket and builds the first model; no ingest at start, as in Python.
    pub fn open(path: &Path, orders: Option<Box<dyn Orders>>) -> Result<Recommendations, String> {
        let store = Store::open(path).map_err(|e| format!("{}: {}", path.display(), e))?;
        let baskets = store
            .baskets()
            .map_err(|e| format!("{}: cannot load baskets: {}", path.display(), e))?;
        let model = Model::build(&baskets);
        let stats = ModelStats::of(&model);
        Ok(Recommendations {
            model: RwLock::new(Arc::new(model)),
            ingest: Mutex::new(Ingest {
                store,
                baskets,
                orders,
            }),
            stats: Mutex::new(stats),
        })
    }

    pub fn stats(&self) -> ModelStats {
        lock(&self.stats).clone()
    }

    fn current(&self) -> Arc<Model> {
        let model = self.model.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&model)
    }

    pub fn related(&self, product_id: i128, k: i128) -> Vec<ScoredProduct> {
        self.current().related(product_id, k)
    }

    /// Ingests new orders, builds a new model outside any lock `related` takes, swaps it in.
    pub fn rebuild(&self) -> Result<ModelStats, ShopError> {
        let mut ingest = lock(&self.ingest);
        let added = ingest.ingest()?;
        let model = Arc::new(Model::build(&ingest.baskets));
        let stats = ModelStats::of(&model);
        info!(
            "model rebuilt: {} baskets ({} new), {} products, {} pairs in {:.3} s",
            stats.baskets, added, stats.products, stats.pairs, model.build_seconds
        );
        let previous = {
            let mut current = self.model.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, model)
        };
        drop(previous); // freed (if no request still holds it) outside the lock
        *lock(&self.stats) = stats.clone();
        Ok(stats)
    }
}

impl Ingest {
    /// Appends the baskets of orders placed since the last ingest; the baskets of each batch
    /// are kept even if a later batch fails, as in Python.
    fn ingest(&mut self) -> Result<usize, ShopError> {
        let mut last = self.store.last_order_id().map_err(db_error)?;
        let mut added = 0;
        loop {
            let orders = match self.orders.as_mut() {
                Some(orders) => orders.since(last, INGEST_BATCH)?,
                None => {
                    return Err(ShopError::unavailable(
                        "orders unavailable: no orders endpoint was given (--orders-socket or --orders-url)",
                    ))
                }
            };
            let newest = match orders.last() {
                Some(o) => o.id,
                None => return Ok(added),
            };
            let batch: Vec<(i64, Vec<i64>)> = orders
                .into_iter()
                .map(|o| (o.id, o.lines.iter().map(|l| l.product_id).collect()))
                .collect();
            self.store.append(&batch, newest).map_err(db_error)?;
            last = newest;
            for (_, basket) in &batch {
                self.baskets.push(basket);
            }
            added += batch.len();
        }
    }
}

fn db_error(e: rusqlite::Error) -> ShopError {
    ShopError::new("shop_error", format!("OperationalError: {}", e))
}

/// A panic in one call must not wedge the others: take the data back from a poisoned lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
