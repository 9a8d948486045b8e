//! heapsampler's profiles served by a web framework of your own (axum here) instead of the
//! built-in endpoint: four handlers around `heapsampler::http`'s plain functions.
//!
//! ```text
//! cargo run --features http --example axum_endpoint
//! go tool pprof http://127.0.0.1:3000/debug/pprof/heap
//! curl http://127.0.0.1:3000/metrics
//! ```
//!
//! `AXUM_ENDPOINT_SECONDS=<n>` stops it after n seconds (it serves until killed otherwise).
//! The rendering is synchronous and takes milliseconds to tens of milliseconds on a large
//! profile, so it runs on tokio's blocking pool, off the async workers.

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

#[global_allocator]
static GLOBAL: heapsampler::Sampler<std::alloc::System> =
    heapsampler::Sampler::new(std::alloc::System);

async fn pprof_heap() -> impl IntoResponse {
    let bytes = tokio::task::spawn_blocking(heapsampler::http::pprof_heap_bytes)
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes)
}

/// `go tool pprof` asks this route for the names of a profile's addresses when the profile
/// has none (`-symbolize=remote`).
async fn pprof_symbol(body: Bytes) -> impl IntoResponse {
    let answer = tokio::task::spawn_blocking(move || heapsampler::http::pprof_symbol(&body))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match answer {
        Ok(text) => (StatusCode::OK, text),
        Err(message) => (StatusCode::BAD_REQUEST, message),
    }
}

async fn metrics() -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(heapsampler::http::metrics_text)
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            heapsampler::http::METRICS_CONTENT_TYPE,
        )],
        text,
    )
}

async fn heap_json() -> impl IntoResponse {
    let text = tokio::task::spawn_blocking(heapsampler::http::heap_json)
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], text)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let app = Router::new()
        .route("/debug/pprof/heap", get(pprof_heap))
        .route("/debug/pprof/symbol", post(pprof_symbol))
        .route("/metrics", get(metrics))
        .route("/heap.json", get(heap_json));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("serving on http://{}", listener.local_addr()?);
    let seconds: Option<u64> = std::env::var("AXUM_ENDPOINT_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let server = axum::serve(listener, app);
    match seconds {
        Some(s) => {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(s), server).await;
            Ok(())
        }
        None => server.await,
    }
}
