//! The table of sites: one row per site of each process's newest report, sortable by live
//! bytes, growth and allocation rate (inline script), each row opening its symbolized stack.

use super::text::{self, attr, html};
use crate::Report;
use crate::leaks::LeakSuspect;
use crate::report::json::ReportSite;
use std::fmt::Write;

/// A site's name: the function that asked for the memory ([`Report::top_function`]), or its
/// innermost address when the report is not symbolized.
pub(crate) fn site_name(report: &Report, site: &ReportSite) -> String {
    if let Some(name) = report.top_function(site) {
        return name.to_string();
    }
    match site.addresses.iter().find(|&&a| a != 0) {
        Some(a) => format!("{a:#x}"),
        None => "[unknown]".to_string(),
    }
}

pub(crate) struct Row<'a> {
    pub process: String,
    pub report: &'a Report,
    pub site: &'a ReportSite,
    /// Least-squares growth of live bytes over the process's last reports, bytes/s.
    pub growth: f64,
    /// Bytes allocated per second over the same reports.
    pub rate: f64,
    pub suspect: Option<&'a LeakSuspect>,
}

/// The table, with its search box; `total` is how many sites there were in all.
pub(crate) fn table(rows: &[Row], total: usize, growth_reports: usize) -> String {
    let mut s = String::new();
    s.push_str(
        "<p><input id=\"site-search\" type=\"search\" placeholder=\"search functions and files\" \
         aria-label=\"search sites\"> <span id=\"site-count\"></span></p>",
    );
    if rows.len() < total {
        let _ = write!(
            s,
            "<p class=\"note\">The {} sites holding the most live bytes of {total} are listed.</p>",
            rows.len()
        );
    }
    let _ = write!(
        s,
        "<table id=\"sites\"><thead><tr><th>site (click: stack)</th><th>process</th>\
         <th><button data-key=\"live\">live bytes ▾</button></th><th>error</th>\
         <th><button data-key=\"growth\">growth ▾</button><br><small>last {growth_reports} reports</small></th>\
         <th><button data-key=\"rate\">allocation rate ▾</button><br><small>last {growth_reports} reports</small></th><th>leak suspect</th></tr></thead><tbody>"
    );
    for row in rows {
        let site = row.site;
        let name = site_name(row.report, site);
        let _ = write!(
            s,
            "<tr data-live=\"{:.0}\" data-growth=\"{:.3}\" data-rate=\"{:.3}\"",
            site.live_bytes, row.growth, row.rate
        );
        if row.suspect.is_some() {
            let _ = write!(s, " class=\"suspect\" data-suspect=\"{}\"", attr(&name));
        }
        let _ = write!(
            s,
            "><td><details><summary>{}</summary><ol class=\"stack\">",
            html(&name)
        );
        for f in row.report.site_frames(site) {
            let function = match &f.function {
                Some(n) => html(n),
                None => format!("{:#x}", f.address),
            };
            let _ = write!(s, "<li>{function}");
            if let Some(file) = &f.file {
                let _ = write!(s, " <span class=\"loc\">{}", html(file));
                if let Some(line) = f.line {
                    let _ = write!(s, ":{line}");
                }
                s.push_str("</span>");
            }
            s.push_str("</li>");
        }
        let _ = write!(
            s,
            "</ol><p class=\"note\">stack {}</p></details></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>",
            site.stack_id,
            html(&row.process),
            text::bytes(site.live_bytes),
            text::rel_error(row.report.sample_interval, site.live_bytes),
            text::rate(row.growth),
            text::rate(row.rate),
        );
        if let Some(l) = row.suspect {
            let _ = write!(
                s,
                "{} ({:.1}%)",
                text::rate(l.growth_bytes_per_sec),
                l.confidence * 100.0
            );
        }
        s.push_str("</td></tr>");
    }
    s.push_str("</tbody></table>");
    s
}

/// Sorting by a column's button and filtering by the search box: the only script the page
/// runs itself.
pub(crate) const SCRIPT: &str = r#"
(function () {
  var table = document.getElementById('sites');
  if (!table) return;
  var body = table.tBodies[0];
  var count = document.getElementById('site-count');
  var rows = Array.prototype.slice.call(body.rows);
  function shown() {
    var n = rows.filter(function (r) { return !r.hidden; }).length;
    count.textContent = n + ' of ' + rows.length + ' sites';
  }
  var order = {};
  table.querySelectorAll('th button').forEach(function (b) {
    b.addEventListener('click', function () {
      var key = b.getAttribute('data-key');
      var sign = order[key] = -(order[key] || 1);
      rows.sort(function (x, y) {
        return sign * (parseFloat(x.getAttribute('data-' + key)) - parseFloat(y.getAttribute('data-' + key)));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  document.getElementById('site-search').addEventListener('input', function (e) {
    var q = e.target.value.toLowerCase();
    rows.forEach(function (r) { r.hidden = q !== '' && r.textContent.toLowerCase().indexOf(q) < 0; });
    shown();
  });
  shown();
})();
"#;
