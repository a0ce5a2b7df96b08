import SandgateSQL

/// Functions whose cost one call can blow up, admitted only with literal, small arguments
/// (DESIGN.md §2.3: `printf('%.*c', 2147483647, 'x')` burns seconds inside one uninterruptible call).
enum FunctionRules {
    /// Not in the general allowlist; allowed only when `check` accepts the call.
    static let boundedFunctions: Set<String> = ["printf", "format"]
    /// Largest width or precision a format may ask for.
    static let maximumWidth = 1000

    static func check(_ call: FunctionCall) throws(GatewayError) {
        guard boundedFunctions.contains(call.name.lowercased()) else { return }
        guard case .literal(.string(let format))? = call.arguments.first else {
            throw GatewayError(.functionNotAllowed, "\(call.name)() needs a literal format string", hint: "write the format as a string literal")
        }
        let characters = Array(format.unicodeScalars)
        var index = 0
        while index < characters.count {
            guard characters[index] == "%" else { index += 1; continue }
            index += 1
            while index < characters.count, "-+ #0!,".unicodeScalars.contains(characters[index]) { index += 1 }
            for part in 0..<2 {
                if part == 1 {
                    guard index < characters.count, characters[index] == "." else { break }
                    index += 1
                }
                if index < characters.count, characters[index] == "*" {
                    throw GatewayError(.functionNotAllowed, "\(call.name)() with a '*' width or precision is not allowed", hint: "write the width as a number up to \(maximumWidth)")
                }
                var digits = ""
                while index < characters.count, ("0"..."9").contains(characters[index]) {
                    digits.unicodeScalars.append(characters[index])
                    index += 1
                }
                if digits.count > 4 || (Int(digits) ?? 0) > maximumWidth {
                    throw GatewayError(.functionNotAllowed, "\(call.name)() width or precision \(digits) is above \(maximumWidth)")
                }
            }
            index += 1
        }
    }
}
