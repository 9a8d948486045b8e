//! Routes: a table of paths and handlers. A page is added with one line in [`ROUTES`].

use super::context::Context;
use super::metrics;
use super::moments::{self, Moment};
use crate::Report;
use crate::read::profile::Profile;
use crate::report::json::Baseline;
use crate::report::mappings;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// The longest `?seconds=N` of a delta profile (a worker waits that long).
pub(crate) const MAX_DELTA_SECONDS: u64 = 60;

/// One request: method, path and query pairs (not percent-decoded: no value needs it), the
/// query as sent, and the body (only a `POST` has one).
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub raw_query: String,
    pub body: Vec<u8>,
}

impl Request {
    /// From a request target in origin form (`/path?query`); `None` for any other form.
    pub fn parse(method: &str, target: &str) -> Option<Request> {
        if !target.starts_with('/') {
            return None;
        }
        let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
        let query = query_text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Some(Request {
            method: method.to_string(),
            path: path.to_string(),
            query,
            raw_query: query_text.to_string(),
            body: Vec::new(),
        })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra: Vec<(&'static str, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            body,
            extra: Vec::new(),
        }
    }

    pub fn text(status: u16, message: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            message.as_bytes().to_vec(),
        )
    }

    fn with_snapshot(mut self, id: u64) -> Response {
        self.extra.push(("X-Heapsampler-Snapshot", id.to_string()));
        self
    }

    /// Status line and headers (every connection is closed after one answer).
    pub fn head(&self, _head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            410 => "Gone",
            411 => "Length Required",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: close\r\nCache-Control: no-store\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}

type Handler = fn(&Request, &Context) -> Response;

/// The paths that take a `POST` (with a body); every route takes `GET` and `HEAD`.
pub(crate) const POST_PATHS: &[&str] = &["/debug/pprof/symbol"];

/// Every route: exact paths. `/` is the heap timeline page with feature `html`, else the index.
pub(crate) const ROUTES: &[(&str, Handler)] = &[
    ("/", timeline),
    ("/debug/pprof", index),
    ("/debug/pprof/", index),
    ("/debug/pprof/heap", heap),
    ("/debug/pprof/allocs", allocs),
    ("/debug/pprof/symbol", symbol),
    ("/heap.json", heap_json),
    ("/metrics", metrics_route),
];

pub(crate) fn route(request: &Request, context: &Context) -> Response {
    match ROUTES.iter().find(|(path, _)| *path == request.path) {
        Some((_, handler)) => handler(request, context),
        None => Response::text(
            404,
            &format!(
                "no such page: {}; see /debug/pprof/\n",
                crate::report::escape(&request.path)
            ),
        ),
    }
}

/// The heap timeline page (`timeline`) of the directory of the process's running
/// reporter: the same page as `heapsampler html DIR`, live. Without a running reporter (or
/// without feature `html`) the index, which says how to get the page.
fn timeline(request: &Request, context: &Context) -> Response {
    #[cfg(feature = "html")]
    if let Some(dir) = crate::service::reporter::running_dirs().pop() {
        let options = crate::timeline::Options {
            title: format!("heap timeline of process {}", std::process::id()),
            ..Default::default()
        };
        return match crate::read::profiler_work(|| crate::timeline::page_from_dir(&dir, &options)) {
            Ok(page) => Response::new(200, "text/html; charset=utf-8", page.into_bytes()),
            // No report written yet, or none readable: the index says where to look.
            Err(_) => index(request, context),
        };
    }
    index(request, context)
}

fn index(_: &Request, _: &Context) -> Response {
    let rows = [
        (
            "heap",
            "/debug/pprof/heap",
            "in-use memory by call site, pprof (?seconds=N: the change over N seconds)",
        ),
        (
            "allocs",
            "/debug/pprof/allocs",
            "allocations since start by call site, pprof",
        ),
        (
            "symbol",
            "/debug/pprof/symbol",
            "function names of addresses (POST 0x… addresses joined by +), for go tool pprof",
        ),
        (
            "heap.json",
            "/heap.json",
            "the JSON heap report of now (docs/report-format.md)",
        ),
        ("metrics", "/metrics", "Prometheus/OpenMetrics text"),
        (
            "timeline",
            "/",
            "the heap timeline page (feature html, while a Reporter writes reports)",
        ),
    ];
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><title>heapsampler</title></head><body>\n\
         <h1>heapsampler</h1>\n<p>go tool pprof http://HOST/debug/pprof/heap</p>\n<table>\n",
    );
    for (name, href, what) in rows {
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{href}\">{name}</a></td><td>{what}</td></tr>"
        );
    }
    page.push_str("</table>\n</body></html>\n");
    Response::new(200, "text/html; charset=utf-8", page.into_bytes())
}

/// The moment a profile route serves: `?snapshot=<id>` (a kept one), or a new one.
fn moment_for(request: &Request, context: &Context) -> Result<Arc<Moment>, Response> {
    match request.param("snapshot") {
        None => Ok(context.moments.fresh()),
        Some(v) => {
            let id: u64 = v
                .parse()
                .map_err(|_| Response::text(400, "snapshot must be a snapshot id (a number)\n"))?;
            context.moments.get(id).ok_or_else(|| {
                Response::text(
                    410,
                    &format!(
                        "snapshot {id} is no longer kept (the last {} are)\n",
                        moments::KEPT
                    ),
                )
            })
        }
    }
}

/// Checks the parameters Go's handlers take: `gc` (accepted, nothing to collect), `debug`
/// (only 0: the text form is not served), `seconds`.
fn pprof_params(request: &Request) -> Result<Option<u64>, Response> {
    if let Some(debug) = request.param("debug")
        && debug != "0"
    {
        return Err(Response::text(
            400,
            "debug=N text output is not served; omit it for the protobuf profile\n",
        ));
    }
    match request.param("seconds") {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_DELTA_SECONDS).contains(&n) => Ok(Some(n)),
            _ => Err(Response::text(
                400,
                &format!("seconds must be a whole number from 1 to {MAX_DELTA_SECONDS}\n"),
            )),
        },
    }
}

/// `/debug/pprof/symbol` (`super::symbol`): the addresses are the body of a `POST`, else
/// the query.
fn symbol(request: &Request, _: &Context) -> Response {
    let input = if request.method == "POST" {
        &request.body[..]
    } else {
        request.raw_query.as_bytes()
    };
    match super::symbol::answer(input) {
        Ok(text) => Response::text(200, &text),
        Err(message) => Response::text(400, &message),
    }
}

fn heap(request: &Request, context: &Context) -> Response {
    pprof_route(request, context, false)
}

fn allocs(request: &Request, context: &Context) -> Response {
    pprof_route(request, context, true)
}

fn pprof_route(request: &Request, context: &Context, allocs: bool) -> Response {
    let seconds = match pprof_params(request) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let start = match moment_for(request, context) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Some(seconds) = seconds else {
        return pprof_response(render_pprof(&start.profile, allocs)).with_snapshot(start.id);
    };
    // Waits in short steps so that stopping the endpoint is not held up.
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        if context.stopping.load(std::sync::atomic::Ordering::Acquire) {
            return Response::text(503, "the endpoint is stopping\n");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let end = context.moments.fresh();
    let delta = moments::delta(&end.profile, &start.profile);
    pprof_response(render_pprof(&delta, allocs)).with_snapshot(end.id)
}

fn pprof_response(bytes: Vec<u8>) -> Response {
    let mut r = Response::new(200, "application/octet-stream", bytes);
    r.extra.push((
        "Content-Disposition",
        "attachment; filename=\"heap.pb.gz\"".into(),
    ));
    r
}

/// The gzipped pprof of an unsymbolized profile of this process (symbolized per distinct
/// address while rendering), with the process's mappings.
pub(crate) fn render_pprof(profile: &Profile, allocs: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = crate::report::pprof::render_resolving(profile, &mappings::current(), allocs, &mut out);
    out
}

fn heap_json(request: &Request, context: &Context) -> Response {
    let moment = match moment_for(request, context) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let report = if request.param("snapshot").is_some() {
        // A moment served again must not count twice in the rates and the leak trend: its
        // rates are since the process started.
        Report::build(&moment.profile, None, Vec::new(), mappings::current())
    } else {
        let mut json = context.json.lock();
        let (baseline, detector) = &mut *json;
        let suspects = detector.observe(&moment.profile);
        let report = Report::build(
            &moment.profile,
            baseline.as_ref(),
            suspects,
            mappings::current(),
        );
        *baseline = Some(Baseline::of(&moment.profile));
        report
    };
    Response::new(
        200,
        "application/json",
        report.to_string_pretty().into_bytes(),
    )
    .with_snapshot(moment.id)
}

fn metrics_route(_: &Request, context: &Context) -> Response {
    let text = metrics::render(context);
    Response::new(200, metrics::METRICS_CONTENT_TYPE, text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_queries() {
        let r = Request::parse("GET", "/debug/pprof/heap?seconds=5&gc=1&&flag").unwrap();
        assert_eq!(r.path, "/debug/pprof/heap");
        assert_eq!(r.param("seconds"), Some("5"));
        assert_eq!(r.param("gc"), Some("1"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.param("none"), None);
        assert!(Request::parse("GET", "*").is_none());
        assert!(Request::parse("GET", "http://host/").is_none());
    }

    #[test]
    fn bad_parameters_get_400() {
        let check = |target: &str| {
            let r = Request::parse("GET", target).unwrap();
            pprof_params(&r).err().map(|r| r.status)
        };
        assert_eq!(check("/h?seconds=0"), Some(400));
        assert_eq!(check("/h?seconds=61"), Some(400));
        assert_eq!(check("/h?seconds=x"), Some(400));
        assert_eq!(check("/h?debug=1"), Some(400));
        assert_eq!(check("/h?debug=0&gc=1&seconds=60"), None);
    }
}
