import Foundation
import SandgateLedger
import SandgatePolicy
import SandgateSQLite
import SandgateSupport

/// Where a file of released data came from (`sandgate trace FILE --dataset D`, issue 13).
///
/// How: the file is read as bytes (CSV, JSON lines or anything else) and every value shaped like
/// a token is collected — 32 hex digits (a `join_key` token) or 64 (a `hash` value) standing on
/// their own. The gateway cannot invert a token, but it can recompute one: for each candidate
/// consumer it derives that consumer's key, masks every distinct value of the dataset's join-key
/// and hash-masked columns in the snapshot, and looks the results up among the file's tokens. A
/// match proves that the value was masked under that consumer's key — which only that consumer's
/// queries do. Then each of that consumer's recorded queries on the dataset (`ok`, rows > 0) is
/// run again, unrecorded, on the same snapshot version, and the ones whose result holds the
/// matched tokens are named. Only queries answered under the same dataset *and* policy versions
/// are re-run: under another policy the query may have masked with another key.
///
/// What it cannot do: trace masked values that are not tokens (`phone_cn`, `year`, … are the
/// same for every consumer); name a consumer on a `tokens: shared` dataset (every consumer gets
/// the same token); re-run a query on a snapshot that has changed since, or reproduce a query's
/// parameters (they are not recorded) — such queries are listed as candidates, not confirmed.
public struct TraceReport: Sendable {
    /// One recorded query of a matched consumer.
    public struct Query: Sendable, Equatable {
        public let queryID: String
        public let startedAt: Int64
        public let purpose: String
        public let rows: Int64
        /// Matched tokens of this consumer that the query's re-run result contains; nil when it
        /// could not be re-run (`note` says why).
        public let contains: Int?
        public let note: String
    }

    /// A consumer whose tokens the file holds.
    public struct Match: Sendable, Equatable {
        public let consumer: String
        /// Distinct tokens of the file that are this consumer's.
        public let tokens: Int
        /// Per source column (`table.column`): how many.
        public let columns: [String: Int]
        /// The consumer's recorded queries on the dataset, those confirmed first.
        public let queries: [Query]
    }

    public let dataset: String
    public let tokenScope: TokenScope
    public let bytesRead: Int
    public let lines: Int
    /// Distinct token-shaped values found in the file.
    public let candidates: Int
    /// True when the file held more distinct token-shaped values than are traced
    /// (`Trace.maxCandidates`): reading stopped there (`bytesRead`, `lines` count what was read)
    /// and the rest of the file was not examined, so the report is incomplete.
    public let candidatesCapped: Bool
    public let matches: [Match]
    /// On a shared-token dataset: tokens that are the dataset's (any consumer could have them).
    public let sharedTokens: Int
    /// Token-shaped values that match nobody's tokens.
    public var unmatched: Int { candidates - matches.reduce(0) { $0 + $1.tokens } - sharedTokens }
}

/// A trace failure with what went wrong (the file's contents never appear in it).
public struct TraceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

public enum Trace {
    /// Files larger than this are refused (split them): the trace reads everything it is given.
    public static let maxFileBytes = 256 << 20
    /// Distinct token-shaped values traced at most (memory stays bounded whatever the file holds).
    public static let maxCandidates = 200_000
    /// Recorded queries re-run at most per consumer (the most recent ones).
    public static let maxReruns = 200

    /// The distinct token-shaped values of the file at `path` (lower-cased), the bytes and lines
    /// read; reading stops (`capped`) at the first new value beyond `maxCandidates`.
    static func candidates(path: String) throws(TraceError) -> (tokens: Set<String>, bytes: Int, lines: Int, capped: Bool) {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw TraceError("cannot read \(path)") }
        defer { try? handle.close() }
        var tokens: Set<String> = []
        var capped = false
        // A word is a maximal run of letters, digits, `_` and non-ASCII bytes; a token is a word
        // of exactly 32 or 64 hex digits (so a longer hex string or `x…` never counts).
        var word: [UInt8] = []
        var inWord = false, allHex = true, length = 0
        var total = 0, lines = 0
        func endWord() {
            if inWord, allHex, length == 32 || length == 64 {
                let token = String(decoding: word.map { $0 >= 65 && $0 <= 70 ? $0 + 32 : $0 }, as: UTF8.self)
                if tokens.count < maxCandidates || tokens.contains(token) {
                    tokens.insert(token)
                } else {
                    capped = true
                }
            }
            inWord = false
            word.removeAll(keepingCapacity: true)
        }
        while true {
            let chunk: Data
            do {
                chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            } catch {
                throw TraceError("cannot read \(path): \(error.localizedDescription)")
            }
            if chunk.isEmpty { break }
            guard total + chunk.count <= maxFileBytes else { throw TraceError("\(path) is larger than \(maxFileBytes >> 20) MiB: split it and trace the parts") }
            for byte in chunk {
                total += 1
                let isHex = (byte >= 48 && byte <= 57) || (byte >= 97 && byte <= 102) || (byte >= 65 && byte <= 70)
                let isWord = isHex || (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || byte == 95 || byte >= 0x80
                if byte == 10 { lines += 1 }
                guard isWord else {
                    endWord()
                    if capped { return (tokens, total, lines, true) }
                    continue
                }
                if !inWord { inWord = true; allHex = true; length = 0 }
                length += 1
                if !isHex { allHex = false }
                if allHex, length <= 64 { word.append(byte) }
            }
        }
        endWord()
        if total > 0, lines == 0 { lines = 1 }
        return (tokens, total, lines, capped)
    }

    /// The snapshot's distinct values of the columns whose masked form is a token: `join_key`
    /// columns of rows tables (domain 2) and `hash`-masked columns (domain 1), by `table.column`.
    static func sourceValues(_ runtime: DatasetRuntime) throws(TraceError) -> [(column: String, mask: Mask, values: [[UInt8]])] {
        let connection: Connection
        do {
            connection = try Connection(path: runtime.snapshot.path, mode: .readOnly)
        } catch {
            throw TraceError("cannot open the snapshot of dataset '\(runtime.policy.name)': \(error.message)")
        }
        var columns: [(String, Mask, [[UInt8]])] = []
        for table in runtime.policy.tables {
            for column in table.visibleColumns {
                let mask: Mask
                if column.role == .joinKey, table.access == .rows {
                    mask = .joinKey
                } else if let columnMask = column.mask, case .hash = columnMask.kind {
                    mask = columnMask
                } else {
                    continue
                }
                var values: [[UInt8]] = []
                do {
                    let name = SandboxConnection.identifier(column.name), tableName = SandboxConnection.identifier(table.name)
                    // Text as SQLite converts a value for a mask function (numbers as their text).
                    guard let statement = try connection.prepare("SELECT DISTINCT CAST(\(name) AS TEXT) FROM main.\(tableName) WHERE \(name) IS NOT NULL") else { continue }
                    while try statement.step() {
                        values.append(statement.withBytes(at: 0) { Array($0) })
                    }
                } catch {
                    throw TraceError("cannot read \(table.name).\(column.name) from the snapshot: \(error.message)")
                }
                columns.append(("\(table.name).\(column.name)", mask, values))
            }
        }
        return columns
    }

    /// Which of `candidates` are `key`'s tokens, by column.
    static func matches(_ candidates: Set<String>, key: [UInt8], columns: [(column: String, mask: Mask, values: [[UInt8]])]) -> [String: Set<String>] {
        var found: [String: Set<String>] = [:]
        for column in columns {
            let evaluator = MaskEvaluator(mask: column.mask, key: key)
            for value in column.values {
                let token: String? = value.withUnsafeBufferPointer { input in
                    guard case .text(let output) = evaluator.apply(input) else { return nil }
                    return String(decoding: output, as: UTF8.self)
                }
                if let token, candidates.contains(token) { found[column.column, default: []].insert(token) }
            }
        }
        return found
    }
}

extension Gateway {
    /// Traces the file at `path` against `dataset` (see `TraceReport`). Reads the ledger and the
    /// snapshot; re-runs recorded queries without recording or charging them (nothing is released).
    public func trace(path: String, dataset: String) throws(TraceError) -> TraceReport {
        guard let runtime = Name.isValid(dataset) ? runtime(dataset) : nil else {
            throw TraceError("no dataset named '\(dataset)' is available")
        }
        let file = try Trace.candidates(path: path)
        var report = TraceReport(dataset: dataset, tokenScope: runtime.policy.tokens, bytesRead: file.bytes, lines: file.lines,
                                 candidates: file.tokens.count, candidatesCapped: file.capped, matches: [], sharedTokens: 0)
        guard !file.tokens.isEmpty else { return report }
        let columns = try Trace.sourceValues(runtime)
        guard runtime.policy.tokens == .perConsumer else {
            let shared = Trace.matches(file.tokens, key: runtime.key, columns: columns)
            report = TraceReport(dataset: dataset, tokenScope: .shared, bytesRead: file.bytes, lines: file.lines, candidates: file.tokens.count,
                                 candidatesCapped: file.capped, matches: [], sharedTokens: shared.values.reduce(Set<String>()) { $0.union($1) }.count)
            return report
        }
        // Every consumer that ever queried the dataset (a revoked one too), and those granted it.
        var records: [String: [UsageRecord]] = [:]
        do {
            try ledger.records(dataset: dataset) { record in
                if record.status == .ok, record.rows > 0 { records[record.consumer, default: []].append(record) }
                return true
            }
        } catch {
            throw TraceError("cannot read the ledger: \(error.message)")
        }
        let directory = consumers
        var names = Set(records.keys)
        for (name, consumer) in directory.consumers where consumer.grants[dataset] != nil { names.insert(name) }
        var matches: [TraceReport.Match] = []
        for name in names.sorted() where Name.isValid(name) {
            let key = DatasetSecret.consumerKey(datasetKey: runtime.key, consumer: name)
            let found = Trace.matches(file.tokens, key: key, columns: columns)
            let tokens = found.values.reduce(Set<String>()) { $0.union($1) }
            guard !tokens.isEmpty else { continue }
            let queries = rerun(records[name] ?? [], consumer: name, runtime: runtime, tokens: tokens)
            matches.append(TraceReport.Match(consumer: name, tokens: tokens.count, columns: found.mapValues(\.count), queries: queries))
        }
        return TraceReport(dataset: dataset, tokenScope: .perConsumer, bytesRead: file.bytes, lines: file.lines, candidates: file.tokens.count,
                           candidatesCapped: file.capped, matches: matches, sharedTokens: 0)
    }

    /// Runs `records` again (most recent first, at most `Trace.maxReruns`) as `consumer` on the
    /// runtime's snapshot and counts the matched tokens in each result. Nothing is recorded.
    private func rerun(_ records: [UsageRecord], consumer: String, runtime: DatasetRuntime, tokens: Set<String>) -> [TraceReport.Query] {
        var queries: [TraceReport.Query] = []
        for (index, record) in records.sorted(by: { $0.startedAt > $1.startedAt }).enumerated() {
            func listed(_ note: String, contains: Int? = nil) {
                queries.append(TraceReport.Query(queryID: record.queryID, startedAt: record.startedAt, purpose: record.purpose, rows: record.rows,
                                                 contains: contains, note: note))
            }
            guard index < Trace.maxReruns else { listed("not re-run (only the \(Trace.maxReruns) most recent are)"); continue }
            guard record.datasetVersion == runtime.snapshot.sha256 else { listed("not re-run: the dataset changed since"); continue }
            // A query answered under another policy version may have masked with other keys (a
            // switch from shared to per-consumer tokens): re-running it now would prove nothing.
            guard record.policyVersion == runtime.policy.version else { listed("not re-run: the policy changed since"); continue }
            guard case .success(let prepared) = runtime.prepare(record.sql) else { listed("not re-run: the policy in force refuses it"); continue }
            let limits = runtime.policy.limits
            let outcome = try? runtime.pool(for: consumer).withConnection { sandbox in
                sandbox.execute(sql: prepared.rendered, parameters: .none, limits: limits, rowLimit: max(1, Int(clamping: record.rows)), plan: prepared.plan)
            }
            guard case .success(let execution)? = outcome else { listed("not re-run: it failed now (parameters are not recorded)"); continue }
            var seen = 0
            var counted: Set<String> = []
            for row in execution.result.rows {
                for value in row {
                    if case .text(let text) = value, tokens.contains(text), counted.insert(text).inserted { seen += 1 }
                }
            }
            listed(seen > 0 ? "re-run on the same dataset and policy versions" : "re-run: holds none of them", contains: seen)
        }
        return queries.sorted { ($0.contains ?? -1, $0.startedAt) > ($1.contains ?? -1, $1.startedAt) }
    }
}

extension TraceReport {
    /// The report as one JSON object (`trace --format json`): the file's figures, then per
    /// matched consumer its tokens by column and its recorded queries (`contains` null when the
    /// query was not re-run, with the reason in `note`).
    public var json: String {
        JSONWriter.object { json in
            json.field("dataset", dataset)
            json.field("tokens", tokenScope.rawValue)
            json.field("bytes", bytesRead)
            json.field("lines", lines)
            json.field("candidates", candidates)
            json.field("capped", candidatesCapped)
            json.field("shared_tokens", sharedTokens)
            json.field("unmatched", unmatched)
            json.field("traceable", candidates > 0)
            json.field("complete", !candidatesCapped)
            json.array("matches") { json in matches.forEach { Self.write($0, to: &json) } }
        } + "\n"
    }

    private static func write(_ match: Match, to json: inout JSONWriter) {
        json.object { json in
            json.field("consumer", match.consumer)
            json.field("tokens", match.tokens)
            json.object("columns") { json in
                for column in match.columns.keys.sorted() { json.field(column, match.columns[column] ?? 0) }
            }
            json.array("queries") { json in
                for query in match.queries {
                    json.object { json in
                        json.field("query_id", query.queryID)
                        json.field("started_at", Timestamp.rfc3339(query.startedAt))
                        json.field("purpose", query.purpose)
                        json.field("rows", query.rows)
                        json.field("contains", query.contains)
                        json.field("note", query.note)
                    }
                }
            }
        }
    }

    /// The report as the `trace` command prints it.
    public var text: String {
        var out = "trace of dataset \(dataset) (tokens: \(tokenScope.rawValue)): \(bytesRead) bytes, \(lines) lines, \(candidates) distinct token-shaped values\n"
        if candidatesCapped {
            out += "incomplete: reading stopped at \(Trace.maxCandidates) distinct token-shaped values (after \(bytesRead) bytes, \(lines) lines); the rest of the file was not examined (split it and trace the parts)\n"
        }
        if candidates == 0 {
            return out + "cannot trace: the file holds no join_key tokens or hash values; masked values that are not tokens (phone_cn, year, …) are the same for every consumer and do not trace\n"
        }
        if tokenScope == .shared {
            out += "\(sharedTokens) of them are tokens of this dataset, but its tokens are shared by every consumer: the receiver cannot be named (set `tokens: per_consumer` for future releases)\n"
            return out
        }
        if matches.isEmpty {
            // Values past the cap were not examined: "not released" is only said of a whole file.
            out += candidatesCapped ? "no consumer's tokens match among the values read; the rest of the file may hold some\n"
                                    : "no consumer's tokens match: the values were not released by this gateway for this dataset (or by another key)\n"
        }
        for match in matches {
            let columns = match.columns.keys.sorted().map { "\($0): \(match.columns[$0] ?? 0)" }.joined(separator: ", ")
            out += "consumer \(match.consumer): \(match.tokens) tokens (\(columns))\n"
            for query in match.queries {
                let figure = query.contains.map { "holds \($0) of them" } ?? "candidate"
                out += "  query \(query.queryID) at \(Timestamp.rfc3339(query.startedAt)) purpose \(query.purpose.isEmpty ? "-" : query.purpose) rows \(query.rows): \(figure) — \(query.note)\n"
            }
        }
        if unmatched > 0 { out += "\(unmatched) token-shaped values match no consumer's tokens\n" }
        return out
    }
}
