//! Bulk delete (`PROTOCOLS.md`, "Bulk delete"): `POST|DELETE /v1/A?bulk-delete` with a
//! `text/plain` body of newline-separated, URL-encoded `/container/object` or
//! `/container` paths; objects are deleted first, then containers, each as its own
//! (authorized) sub-request. The answer is always 200 with a result document in the
//! format asked by `Accept` (Swift's `get_heartbeat_response_body`).

use http::{HeaderValue, Method, Response, StatusCode};

use cairn_common::constraints::Constraints;
use cairn_common::http::{full, Body};

use crate::account::xml_escape;
use crate::server::{Ctx, Proxy};

pub const MAX_DELETES_PER_REQUEST: usize = 10_000;
pub const MAX_FAILED_DELETES: usize = 1_000;

/// Longest `/container/object` a bulk delete accepts (Swift's `max_path_length`): follows
/// the effective name constraints so that lowering or raising them changes it too.
fn max_path_length(c: &Constraints) -> usize {
    c.max_container_name_length + c.max_object_name_length + 2
}

/// The outcome of a bulk (or SLO) delete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeleteReport {
    pub deleted: u64,
    pub not_found: u64,
    /// `(quoted path, status line)`.
    pub errors: Vec<(String, String)>,
    /// `Response Status`, e.g. `200 OK`.
    pub status: String,
    pub body: String,
}

fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

/// The wanted result format: `text/plain`, `application/json` or `…/xml`.
pub fn result_format(accept: Option<&str>) -> &'static str {
    let a = accept.unwrap_or("").to_ascii_lowercase();
    if a.contains("application/json") {
        "application/json"
    } else if a.contains("application/xml") {
        "application/xml"
    } else if a.contains("text/xml") {
        "text/xml"
    } else {
        "text/plain"
    }
}

/// Render a report (`root` is the XML root tag, `delete`).
pub fn render(report: &DeleteReport, format: &str, root: &str) -> String {
    let fields = [
        ("Number Deleted", report.deleted.to_string()),
        ("Number Not Found", report.not_found.to_string()),
        ("Response Body", report.body.clone()),
        ("Response Status", report.status.clone()),
    ];
    if format == "application/json" {
        let mut m = serde_json::Map::new();
        for (k, v) in &fields {
            let v = match *k {
                "Number Deleted" => serde_json::json!(report.deleted),
                "Number Not Found" => serde_json::json!(report.not_found),
                _ => serde_json::json!(v),
            };
            m.insert((*k).to_string(), v);
        }
        m.insert(
            "Errors".into(),
            serde_json::json!(report
                .errors
                .iter()
                .map(|(p, s)| serde_json::json!([p, s]))
                .collect::<Vec<_>>()),
        );
        return serde_json::Value::Object(m).to_string();
    }
    if format.ends_with("/xml") {
        let mut out = format!("<{root}>\n");
        for (k, v) in &fields {
            let key = k.replace(' ', "_").to_lowercase();
            out.push_str(&format!("<{key}>{}</{key}>\n", xml_escape(v)));
        }
        out.push_str("<errors>\n");
        for (p, s) in &report.errors {
            out.push_str(&format!(
                "<object><name>{}</name><status>{}</status></object>\n",
                xml_escape(p),
                xml_escape(s)
            ));
        }
        out.push_str(&format!("</errors>\n</{root}>\n"));
        return out;
    }
    let mut out = String::new();
    for (k, v) in &fields {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push_str("Errors:\n");
    for (p, s) in &report.errors {
        out.push_str(&format!("{p}, {s}\n"));
    }
    out
}

/// A 200 response carrying a rendered report.
pub fn report_response(report: &DeleteReport, accept: Option<&str>) -> Response<Body> {
    let format = result_format(accept);
    let body = render(report, format, "delete");
    let mut r = Response::new(full(body));
    let ct = if format == "text/plain" {
        "text/plain; charset=utf-8".to_string()
    } else {
        format!("{format}; charset=utf-8")
    };
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("text/plain")),
    );
    r
}

/// Split the request body into decoded names.
pub fn parse_names(
    body: &[u8],
    max_path_length: usize,
) -> Result<Vec<String>, (StatusCode, String)> {
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.len() > max_path_length * 2 {
            return Err((StatusCode::BAD_REQUEST, "Invalid File Name".into()));
        }
        let name = percent_encoding::percent_decode_str(line)
            .decode_utf8_lossy()
            .into_owned();
        out.push(name);
        if out.len() > MAX_DELETES_PER_REQUEST {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Maximum Bulk Deletes: {MAX_DELETES_PER_REQUEST} per request"),
            ));
        }
    }
    Ok(out)
}

/// Delete `names` (`/container[/object]`, decoded) of `ctx.account` with sub-requests.
pub(crate) async fn delete_names(
    p: &Proxy,
    ctx: &Ctx,
    names: &[String],
    report: &mut DeleteReport,
) {
    let objects = names.iter().filter(|n| n.trim_matches('/').contains('/'));
    let containers = names.iter().filter(|n| !n.trim_matches('/').contains('/'));
    let mut failed_5xx = false;
    for name in objects.chain(containers) {
        let trimmed = name.trim_start_matches('/');
        let (c, o) = match trimmed.split_once('/') {
            Some((c, o)) => (c.to_string(), Some(o.to_string())),
            None => (trimmed.trim_end_matches('/').to_string(), None),
        };
        let quoted = cairn_common::http::quote(name);
        if c.is_empty() || o.as_deref() == Some("") || name.contains('\0') {
            report
                .errors
                .push((quoted, status_line(StatusCode::PRECONDITION_FAILED)));
            continue;
        }
        let mut sub = ctx.sub();
        sub.method = Method::DELETE;
        sub.query = None;
        sub.container = Some(c);
        sub.object = o.clone();
        let resp = if o.is_some() {
            Box::pin(crate::object::handle(p, &mut sub)).await
        } else {
            Box::pin(crate::container::handle(p, &mut sub)).await
        };
        let s = resp.status();
        if s.is_success() {
            report.deleted += 1;
        } else if s == StatusCode::NOT_FOUND {
            report.not_found += 1;
        } else {
            failed_5xx |= s.is_server_error();
            report.errors.push((quoted, status_line(s)));
            if report.errors.len() >= MAX_FAILED_DELETES {
                report.status = status_line(StatusCode::BAD_REQUEST);
                report.body = "Max delete failures exceeded".into();
                return;
            }
        }
    }
    report.status = if !report.errors.is_empty() {
        status_line(if failed_5xx {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::BAD_REQUEST
        })
    } else if report.deleted == 0 && report.not_found == 0 {
        report.body = "Invalid bulk delete.".into();
        status_line(StatusCode::BAD_REQUEST)
    } else {
        status_line(StatusCode::OK)
    };
}

/// `POST|DELETE /v1/A?bulk-delete`.
pub(crate) async fn bulk_delete(p: &Proxy, ctx: &mut Ctx) -> Response<Body> {
    let accept = ctx.header("accept").map(str::to_string);
    let mut report = DeleteReport {
        status: status_line(StatusCode::OK),
        ..Default::default()
    };
    if let Some(ct) = ctx.header("content-type") {
        if !ct.starts_with("text/plain") {
            return crate::headers::status_response(StatusCode::NOT_ACCEPTABLE);
        }
    }
    let chunked = ctx
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if !ctx.headers.contains_key("content-length") && !chunked {
        return crate::headers::status_response(StatusCode::LENGTH_REQUIRED);
    }
    let body = ctx.take_body();
    let max_path = max_path_length(p.constraints());
    let limit = (MAX_DELETES_PER_REQUEST + 1) * (max_path * 3 + 1);
    let names = match body.collect_limited(limit).await {
        Ok(b) => parse_names(&b, max_path),
        Err(_) => Err((StatusCode::BAD_REQUEST, "Invalid bulk delete body".into())),
    };
    match names {
        Ok(names) => delete_names(p, ctx, &names, &mut report).await,
        Err((s, msg)) => {
            report.status = status_line(s);
            report.body = msg;
        }
    }
    report_response(&report, accept.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rendering() {
        assert_eq!(
            parse_names(
                b"/c/o%201\n\n c2 \n/c/%E2%98%83\n",
                max_path_length(&Constraints::default())
            )
            .unwrap(),
            vec!["/c/o 1", "c2", "/c/☃"]
        );
        let r = DeleteReport {
            deleted: 2,
            not_found: 1,
            errors: vec![("/c/x".into(), "409 Conflict".into())],
            status: "400 Bad Request".into(),
            body: String::new(),
        };
        assert_eq!(
            render(&r, "text/plain", "delete"),
            "Number Deleted: 2\nNumber Not Found: 1\nResponse Body: \nResponse Status: 400 Bad Request\nErrors:\n/c/x, 409 Conflict\n"
        );
        let v: serde_json::Value =
            serde_json::from_str(&render(&r, "application/json", "delete")).unwrap();
        assert_eq!(v["Number Deleted"], 2);
        assert_eq!(v["Errors"][0][1], "409 Conflict");
        assert!(
            render(&r, "application/xml", "delete").contains("<number_deleted>2</number_deleted>")
        );
        assert_eq!(result_format(Some("application/json")), "application/json");
        assert_eq!(result_format(None), "text/plain");
    }
}
