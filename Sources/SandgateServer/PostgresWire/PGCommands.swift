import Foundation
import SandgateCore
import SandgatePolicy
import SandgateSQLite

/// What a statement is, decided once when it is parsed (a simple query's statements: when each
/// one's turn comes, so a `SET` before it applies).
enum PGCommand: Sendable {
    case query(sql: String)
    case catalog(sql: String)
    case utility(tag: String)
    case show(name: String)
    case empty
    /// A statement refused before it runs (a `SET` of a `sandgate.*` parameter that would not
    /// take effect as written): answered with this error, never with a success tag.
    case refused(GatewayError)
}

/// A prepared statement (the unnamed one is `""`).
struct PGStatement: Sendable {
    let command: PGCommand
    let parameterTypes: [Int32]
    let parameterCount: Int
    var textBytes = 0
}

/// A bound statement: its parameters, result formats, and once run its rows or error.
struct PGPortal: Sendable {
    let statement: PGStatement
    let parameters: [SQLValue]
    let resultFormats: [Int16]
    var rows: PGRows?
    var error: GatewayError?
    var cursor = 0
    /// Rows sent by the latest Execute: CommandComplete reports these, as PostgreSQL does (a
    /// finished portal executed again answers `SELECT 0`).
    var batch = 0
    var noticed = false

    init(statement: PGStatement, parameters: [SQLValue], resultFormats: [Int16]) {
        self.statement = statement
        self.parameters = parameters
        self.resultFormats = resultFormats
    }

    /// Binary or text per column, from Bind's result formats (none: text; one: for all).
    func binaryFormats(count: Int) -> [Bool] {
        (0..<count).map { index in
            let format = resultFormats.isEmpty ? 0 : resultFormats.count == 1 ? resultFormats[0] : (index < resultFormats.count ? resultFormats[index] : 0)
            return format == 1
        }
    }
}

/// The session's names and settings: who it is for, and what `SET`/startup options changed.
struct PGSessionSettings: Sendable {
    /// The user name of the startup packet, before authentication proved it.
    var consumerClaim = ""
    /// The authenticated consumer (empty until the proof matched).
    var consumer = ""
    var dataset = ""
    var applicationName = ""
    /// The purpose declared with `options=-c sandgate.purpose=…` or `SET sandgate.purpose`; sent
    /// with every query and decided there (`PurposeRule`). Only these two spellings set it: SQL
    /// text is never searched for a purpose, so a comment cannot declare one.
    var purpose: String?
    /// Usage notices after each result (off with `client_min_messages=warning` or `sandgate.notices=off`).
    var notices = true

    /// The `sandgate.*` parameters a session can set.
    static let sandgateParameters = ["sandgate.purpose", "sandgate.notices"]

    mutating func set(_ name: String, _ value: String) {
        switch name.lowercased() {
        case "sandgate.purpose":
            let text = Self.settingValue(value)
            purpose = text.isEmpty || text.uppercased() == "DEFAULT" ? nil : text
        case "client_min_messages":
            notices = !["warning", "error", "log", "fatal", "panic"].contains(value.lowercased().trimmingCharacters(in: "'"))
        case "sandgate.notices":
            notices = !["off", "false", "0"].contains(value.lowercased().trimmingCharacters(in: "'"))
        default: break
        }
    }

    /// `-c name=value` pairs of the startup `options` parameter (PGOPTIONS).
    mutating func applyOptions(_ options: String) {
        let words = options.split(separator: " ")
        var index = 0
        while index < words.count {
            var setting = Substring("")
            if words[index] == "-c", index + 1 < words.count {
                setting = words[index + 1]
                index += 2
            } else if words[index].hasPrefix("-c") {
                setting = words[index].dropFirst(2)
                index += 1
            } else if words[index].hasPrefix("--") {
                setting = words[index].dropFirst(2)
                index += 1
            } else {
                index += 1
                continue
            }
            let parts = setting.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { set(String(parts[0]), String(parts[1])) }
        }
    }

    /// A setting's value without one pair of surrounding quotes (`'x'`, `"x"`, `E'x'` is not
    /// unquoted and so is not a valid purpose name); `''` inside single quotes is one quote.
    static func settingValue(_ text: String) -> String {
        if text.count >= 2, text.hasPrefix("'"), text.hasSuffix("'") {
            return String(text.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'")
        }
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { return String(text.dropFirst().dropLast()) }
        return text
    }

    /// `SHOW name` (lower-cased, words as typed): the purpose, the catalog's settings, the two-word
    /// spellings PostgreSQL accepts, and the session's user.
    func showValue(_ name: String) -> String {
        switch name {
        case "sandgate.purpose", "sandgate . purpose": purpose ?? ""
        case "session_authorization", "session authorization": consumer
        case "transaction isolation level": "read committed"
        default: PGCatalog.settings.first { $0.name.lowercased() == name }?.value ?? ""
        }
    }
}

/// A statement classified, and the settings its `SET` or `RESET` changes: applied by the state
/// when the statement's turn comes, so that classifying (which may run off the event loop, before
/// the statements ahead of it ran) changes nothing itself.
struct PGClassified: Sendable {
    let command: PGCommand
    /// `(name, value)` pairs for `PGSessionSettings.set`, in order.
    var settings: [PGSetting] = []
}

/// One setting a statement changes (`RESET sandgate.purpose` is the purpose set to `DEFAULT`).
struct PGSetting: Sendable, Equatable {
    let name: String
    let value: String
}

/// Statements classified: utility commands PostgreSQL clients send on their own, `SET`/`SHOW`,
/// catalog queries and data queries (CONTRACT.md §6, What clients send on their own).
extension PGSessionSettings {
    func classify(_ sql: String) -> PGClassified { classify(tokens: PGDialect.tokenize(sql), sql: sql) }

    func classify(tokens: [PGDialect.Token], sql: String) -> PGClassified {
        let words = tokens.filter { !$0.isSpace }
        guard let first = words.first else { return PGClassified(command: .empty) }
        switch first.upper {
        case "SET": return set(tokens: tokens, words: words)
        case "RESET":
            let resetsPurpose = words.count >= 2 && ["ALL", "SANDGATE.PURPOSE"].contains(words.dropFirst().map(\.upper).joined())
            return PGClassified(command: .utility(tag: "RESET"), settings: resetsPurpose ? [PGSetting(name: "sandgate.purpose", value: "DEFAULT")] : [])
        case "BEGIN", "START": return PGClassified(command: .utility(tag: "BEGIN"))
        case "COMMIT", "END": return PGClassified(command: .utility(tag: "COMMIT"))
        case "ROLLBACK", "ABORT": return PGClassified(command: .utility(tag: "ROLLBACK"))
        case "DISCARD": return PGClassified(command: .utility(tag: "DISCARD ALL"))
        case "DEALLOCATE", "SAVEPOINT", "RELEASE", "LISTEN", "UNLISTEN": return PGClassified(command: .utility(tag: first.upper))
        case "SHOW": return PGClassified(command: .show(name: words.dropFirst().map(\.text).joined(separator: " ").lowercased()))
        default:
            if PGCatalog.isCatalogQuery(tokens) {
                return PGClassified(command: .catalog(sql: PGDialect.catalogSQL(sql, consumer: consumer, dataset: dataset)))
            }
            return PGClassified(command: .query(sql: PGDialect.render(PGDialect.translate(tokens))))
        }
    }

    /// Applies the settings a classified statement changes; its command.
    mutating func apply(_ classified: PGClassified) -> PGCommand {
        for setting in classified.settings { set(setting.name, setting.value) }
        return classified.command
    }

    /// `SET`: strictly for `sandgate.*`, leniently (answered, mostly ignored) for the rest.
    private func set(tokens: [PGDialect.Token], words: [PGDialect.Token]) -> PGClassified {
        if let strict = setSandgateParameter(tokens: tokens) { return strict }
        var settings: [PGSetting] = []
        if words.count >= 3 {
            // A dotted name (`sandgate.purpose`) is several tokens: the name is everything up
            // to `=`/`TO`, the value everything after it (`public-health.v2` is several too).
            let nameStart = words[1].upper == "SESSION" || words[1].upper == "LOCAL" ? 2 : 1
            if let equals = words.firstIndex(where: { $0.text == "=" || $0.upper == "TO" }), equals > nameStart, equals + 1 < words.count {
                settings.append(PGSetting(name: words[nameStart..<equals].map(\.text).joined(), value: words[(equals + 1)...].map(\.text).joined()))
            }
        }
        return PGClassified(command: .utility(tag: "SET"), settings: settings)
    }

    /// The highest `$n` in `sql`.
    static func parameterCount(_ sql: String) -> Int { parameterCount(PGDialect.tokenize(sql)) }

    /// The highest `$n` among `tokens`.
    static func parameterCount(_ tokens: [PGDialect.Token]) -> Int {
        tokens.reduce(0) { highest, token in
            token.kind == .parameter ? max(highest, Int(token.text.dropFirst()) ?? 0) : highest
        }
    }
}

extension PGSessionSettings {
    /// `SET [SESSION] sandgate.name {=|TO} value`, checked strictly: the purpose decides what a
    /// consumer may see and is recorded with every query, so a `SET` that would leave the old one
    /// in force is an error, never a `SET` tag. nil when the statement does not set a `sandgate.*`
    /// parameter (ordinary PostgreSQL parameters are accepted as before).
    func setSandgateParameter(tokens: [PGDialect.Token]) -> PGClassified? {
        var rest = Array(tokens.drop { $0.isSpace }.dropFirst())
        while let last = rest.last, last.isSpace || last.text == ";" { rest.removeLast() }
        let words = rest.filter { !$0.isSpace }
        let scope = words.first?.upper
        var index = scope == "SESSION" || scope == "LOCAL" ? 1 : 0
        let name = Self.parameterName(words, from: &index)
        guard name.lowercased().hasPrefix("sandgate.") else { return nil }
        if let refusal = Self.checkName(name, scope: scope, words: words, at: index) { return PGClassified(command: refusal) }
        // The value: one string or identifier, or unquoted tokens with nothing between them
        // (`public-health.v2`); anything after it is an error, not ignored.
        guard let equals = rest.firstIndex(where: { !$0.isSpace && ($0.text == "=" || $0.upper == "TO") }) else { return nil }
        let valueTokens = Array(rest[(equals + 1)...].drop { $0.isSpace })
        guard let firstValue = valueTokens.first else {
            return PGClassified(command: Self.refuse(.syntaxError, "SET \(name) needs a value", hint: "write SET \(name) = '…'"))
        }
        let quoted = firstValue.kind == .string || firstValue.kind == .quotedIdentifier
        if valueTokens.contains(where: \.isSpace) || (quoted && valueTokens.count > 1) {
            return PGClassified(command: Self.refuse(.syntaxError, "trailing text after the value of SET \(name)", hint: "give one value: SET \(name) = '…'"))
        }
        return PGClassified(command: .utility(tag: "SET"), settings: [PGSetting(name: name, value: valueTokens.map(\.text).joined())])
    }

    /// The name: words, `.` and quoted identifiers (`"sandgate.purpose"` is the same name).
    private static func parameterName(_ words: [PGDialect.Token], from index: inout Int) -> String {
        var name = ""
        while index < words.count, words[index].kind == .word || words[index].kind == .quotedIdentifier || words[index].text == ".",
              words[index].text != "=", words[index].upper != "TO", words[index].upper != "FROM" {
            let word = words[index]
            name += word.kind == .quotedIdentifier ? String(word.text.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") : word.text.lowercased()
            index += 1
        }
        return name
    }

    /// Why a `SET` of the `sandgate.*` parameter `name` would not take effect as written, if it would not.
    private static func checkName(_ name: String, scope: String?, words: [PGDialect.Token], at index: Int) -> PGCommand? {
        let shown = String(name.prefix(64))
        guard scope != "LOCAL" else {
            return refuse(.badRequest, "SET LOCAL is not supported for \(shown): sandgate has no transactions, so the setting would outlive ROLLBACK",
                          hint: "use SET \(shown) = '…' (for the session) and SET it again or RESET it to change it")
        }
        guard sandgateParameters.contains(name.lowercased()) else {
            let nearest = NearestName.closest(to: name, among: sandgateParameters).map { "; did you mean '\($0)'?" } ?? ""
            return refuse(.badRequest, "unrecognized configuration parameter \"\(shown)\"\(nearest)",
                          hint: "sandgate parameters: " + sandgateParameters.joined(separator: ", "))
        }
        guard index < words.count, words[index].text == "=" || words[index].upper == "TO" else {
            if index < words.count, words[index].upper == "FROM" {
                return refuse(.syntaxError, "SET \(name) FROM CURRENT is not supported", hint: "write SET \(name) = '…'")
            }
            return refuse(.syntaxError, "SET \(name) needs = or TO and a value", hint: "write SET \(name) = '…'")
        }
        return nil
    }

    private static func refuse(_ code: ErrorCode, _ message: String, hint: String = "") -> PGCommand {
        .refused(GatewayError(code, message, hint: hint))
    }
}
