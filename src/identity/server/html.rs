//! Small server-rendered pages: one layout, escaped text, no script. Accessibility basics:
//! a language, a title per page, labelled inputs with autocomplete hints, errors announced
//! (`role="alert"`) and linked to the form.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1b1b1b}\
label{display:block;margin-top:1rem;font-weight:600}\
input{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;border:1px solid #666;border-radius:4px}\
button{margin-top:1.5rem;font-size:1rem;padding:.6rem 1.2rem;background:#0b5cad;color:#fff;border:0;border-radius:4px;cursor:pointer}\
.alert{background:#fdecea;border-left:4px solid #b00020;padding:.75rem;margin:1rem 0}\
.ok{background:#e7f4ea;border-left:4px solid #1e7e34;padding:.75rem;margin:1rem 0}\
code,.secret{font-family:ui-monospace,monospace;word-break:break-all}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem;border-bottom:1px solid #ddd}";

/// A complete page.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} · roster</title><style>{STYLE}</style></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(h);
    r
}

/// No caching of pages with secrets, no framing, no referrer (the accept link carries its
/// token in the URL), no script at all.
pub fn security_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
}

pub fn alert(message: &str) -> String {
    if message.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"alert\" role=\"alert\" id=\"form-error\">{}</p>",
        esc(message)
    )
}

pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

/// A labelled input. `kind` is the input type, `auto` the autocomplete hint.
pub fn input(name: &str, label: &str, kind: &str, auto: &str, value: &str, extra: &str) -> String {
    format!(
        "<label for=\"{n}\">{l}</label><input id=\"{n}\" name=\"{n}\" type=\"{k}\" autocomplete=\"{a}\" value=\"{v}\" {extra}>",
        n = esc(name),
        l = esc(label),
        k = esc(kind),
        a = esc(auto),
        v = esc(value)
    )
}

/// The QR code of `text` as an inline SVG image (a data: URL, allowed by the page's CSP).
pub fn qr_svg(text: &str) -> Option<String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    );
    use base64::Engine;
    Some(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert!(hidden("t", "\"><img src=x>").contains("&quot;&gt;&lt;img"));
    }

    #[test]
    fn qr_codes_render() {
        let url = qr_svg("otpauth://totp/roster:bob%40acme.example?secret=ABC").expect("qr");
        assert!(url.starts_with("data:image/svg+xml;base64,"));
    }
}
