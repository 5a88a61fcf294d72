//! CSV as the exports write it: RFC 4180 quoting, CRLF line ends, and cells defused so that a
//! spreadsheet never runs one as a formula.

/// One CSV cell. Cells a spreadsheet would run as a formula (leading `=`, `+`, `-`, `@`, tab or
/// CR) get a leading `'`, so an exported user agent or email cannot execute in the reviewer's sheet.
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One CSV line of `cells`, each defused and quoted as needed.
pub fn csv_line<'a>(cells: impl IntoIterator<Item = &'a str>) -> String {
    let cells: Vec<String> = cells.into_iter().map(csv_field).collect();
    cells.join(",") + "\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1"), "'-1");
    }

    #[test]
    fn a_line_ends_with_crlf() {
        assert_eq!(csv_line(["a", "b,c", ""]), "a,\"b,c\",\r\n");
    }
}
