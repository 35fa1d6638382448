//! Reading `text/event-stream` bodies that the filter's own upstream calls
//! return whole (a proxy-wasm callout is buffered). Only the `data` field of
//! each event matters here; streaming to clients does not pass through this.

/// The data of each complete event in `body`, in order.
pub fn events(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = data.take() {
                out.push(d);
            }
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            }
        }
    }
    // A stream cut without its final blank line still delivered its event.
    out.extend(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events() {
        assert_eq!(events("event: message\ndata: {\"a\":1}\n\n"), vec!["{\"a\":1}"]);
        assert_eq!(events("id: 1\r\ndata: a\r\ndata: b\r\n\r\n: comment\n\ndata:c\n"), vec!["a\nb", "c"]);
        assert_eq!(events("retry: 100\n\n"), Vec::<String>::new());
        assert_eq!(events(""), Vec::<String>::new());
    }
}
