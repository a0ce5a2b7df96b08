/// RFC 4180 CSV fields: one implementation for the ledger exports, invoices and query results.
public enum CSV {
    /// A field quoted when it holds a comma, quote, CR or LF (quotes doubled).
    ///
    /// With `spreadsheetSafe`, text that a spreadsheet would run as a formula — starting with
    /// `=`, `+`, `-`, `@`, a tab or a CR — gets a leading `'` (OWASP's advice), so
    /// `=HYPERLINK(…)` in a failed login's name shows as text. Plain numbers (`-5`, `1.5`) are
    /// left alone: they are values, not formulas.
    public static func field(_ text: String, spreadsheetSafe: Bool = false) -> String {
        var value = text
        if spreadsheetSafe, let first = text.unicodeScalars.first, startsFormula(first), !isPlainNumber(text) {
            value = "'" + text
        }
        guard value.utf8.contains(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0A || $0 == 0x0D }) else { return value }
        // By scalar: `replacing` works on Characters and misses a quote a combining mark follows.
        var quoted = String.UnicodeScalarView()
        quoted.append("\"")
        for scalar in value.unicodeScalars {
            quoted.append(scalar)
            if scalar == "\"" { quoted.append("\"") }
        }
        quoted.append("\"")
        return String(quoted)
    }

    /// One CSV line (CRLF-terminated).
    public static func line(_ fields: [String], spreadsheetSafe: Bool = false) -> String {
        fields.map { field($0, spreadsheetSafe: spreadsheetSafe) }.joined(separator: ",") + "\r\n"
    }

    /// `=`, `+`, `-`, `@`, their fullwidth forms, and every control character (a reader that
    /// drops a leading NUL or newline would leave the next character first).
    private static func startsFormula(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x3D, 0x2B, 0x2D, 0x40, 0xFF1D, 0xFF0B, 0xFF0D, 0xFF20, 0x00...0x1F, 0x7F: true
        default: false
        }
    }

    /// `-?digits[.digits]`: a number a spreadsheet reads as a number, never as a formula.
    private static func isPlainNumber(_ text: String) -> Bool {
        var bytes = Substring(text).utf8[...]
        if bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        let parts = bytes.split(separator: UInt8(ascii: "."), maxSplits: 1, omittingEmptySubsequences: false)
        return !bytes.isEmpty && parts.count <= 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy { (48...57).contains($0) } }
    }
}
