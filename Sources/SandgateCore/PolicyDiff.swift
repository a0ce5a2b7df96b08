import SandgatePolicy
import SandgateSQL
import SandgateSQLite

/// One change an edit makes to what consumers can see, in plain words.
public struct ExposureChange: Sendable, Equatable, CustomStringConvertible {
    public enum Direction: String, Sendable, Comparable {
        /// Consumers can see or do more (or may: a change sandgate cannot rank counts here).
        case wider = "exposes more"
        /// Consumers can see or do less.
        case narrower = "exposes less"
        /// No change in exposure (prices, descriptions, rotated keys).
        case neutral = "changes"

        public static func < (lhs: Direction, rhs: Direction) -> Bool { lhs.order < rhs.order }
        private var order: Int { self == .wider ? 0 : self == .narrower ? 1 : 2 }
    }

    public let direction: Direction
    /// How dangerous the change is when it widens exposure; changes are listed by it.
    public let severity: Int
    /// `dataset`, `dataset.table`, `dataset.table.column` or `consumer NAME`.
    public let subject: String
    public let message: String

    public var description: String {
        let mark = direction == .wider ? "+" : direction == .narrower ? "-" : "~"
        return "\(mark) \(direction.rawValue): \(subject): \(message)"
    }
}

/// What an edit of policies changes in exposure (`sandgate policy diff`), most dangerous first.
///
/// Conservative by design: a change sandgate cannot rank (an edited row filter, a different
/// privacy unit, a regex mask that keeps as much but differently) counts as widening, so a review
/// gate stops on it.
public enum PolicyDiff {
    /// One side of a comparison: datasets by name and, when present, the consumer directory.
    public struct Side: Sendable {
        public var datasets: [String: DatasetPolicy]
        public var consumers: ConsumerDirectory?

        public init(datasets: [String: DatasetPolicy], consumers: ConsumerDirectory?) {
            self.datasets = datasets
            self.consumers = consumers
        }
    }

    // Severities: the higher, the more dangerous a widening is.
    static let raw = 100, token = 90, maskWeaker = 80, rowFilter = 70, threshold = 60, publish = 50, grant = 40, limit = 30, aggregate = 20

    /// The changes from `old` to `new`, sorted: widening first, most severe first.
    public static func compare(old: Side, new: Side) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        for name in Set(old.datasets.keys).union(new.datasets.keys).sorted() {
            switch (old.datasets[name], new.datasets[name]) {
            case (nil, let added?):
                changes.append(.init(direction: .wider, severity: publish, subject: name,
                                     message: "dataset published (tables: \(added.tables.map(\.name).joined(separator: ", ")))"))
            case (_?, nil):
                changes.append(.init(direction: .narrower, severity: publish, subject: name, message: "dataset no longer published"))
            case (let before?, let after?):
                changes += compare(before, after)
            case (nil, nil):
                break
            }
        }
        if old.consumers != nil || new.consumers != nil {
            changes += compare(old.consumers ?? .empty, new.consumers ?? .empty)
        }
        return changes.enumerated().sorted { left, right in
            if left.element.direction != right.element.direction { return left.element.direction < right.element.direction }
            if left.element.severity != right.element.severity { return left.element.severity > right.element.severity }
            return left.offset < right.offset
        }.map(\.element)
    }

    // MARK: Datasets

    static func compare(_ old: DatasetPolicy, _ new: DatasetPolicy) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        let dataset = new.name
        if old.source != new.source {
            changes.append(.init(direction: .wider, severity: publish, subject: dataset,
                                 message: "source changed from \(old.source) to \(new.source): other data is published under the policy (review it)"))
        }
        changes += limitChanges(old.limits, new.limits, subject: dataset, what: "dataset")
        if old.pricing != new.pricing {
            var message = "pricing changed"
            if old.pricing.holderSharePPM != new.pricing.holderSharePPM {
                message += " (holder_share \(old.pricing.holderSharePPM) → \(new.pricing.holderSharePPM) parts per million)"
            }
            changes.append(.init(direction: .neutral, severity: 0, subject: dataset, message: message))
        }
        changes += purposeChanges(old, new)
        let oldTables = Dictionary(old.tables.map { ($0.name.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        let newTables = Dictionary(new.tables.map { ($0.name.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        for name in Set(oldTables.keys).union(newTables.keys).sorted() {
            let subject = "\(dataset).\(newTables[name]?.name ?? oldTables[name]?.name ?? name)"
            switch (oldTables[name], newTables[name]) {
            case (nil, let added?):
                let columns = added.visibleColumns.map(\.name).joined(separator: ", ")
                changes.append(.init(direction: .wider, severity: added.access == .rows ? raw : publish, subject: subject,
                                     message: "table published (access: \(added.access.rawValue); columns: \(columns))"))
            case (_?, nil):
                changes.append(.init(direction: .narrower, severity: publish, subject: subject, message: "table no longer published"))
            case (let before?, let after?):
                changes += compare(before, after, subject: subject, sample: SampleValues(source: new.sourcePath, table: after.name))
            case (nil, nil):
                break
            }
        }
        return changes
    }

    /// Purposes and token scope (issue 13). Dropping the list of purposes allows any use; shared
    /// tokens after per-consumer ones let consumers link their results.
    static func purposeChanges(_ old: DatasetPolicy, _ new: DatasetPolicy) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        let dataset = new.name
        let before = Set(old.purposes.map(\.name)), after = Set(new.purposes.map(\.name))
        if !before.isEmpty, after.isEmpty {
            changes.append(.init(direction: .wider, severity: grant, subject: dataset, message: "purposes no longer listed: queries need no purpose, any use is allowed"))
        } else if before.isEmpty, !after.isEmpty {
            changes.append(.init(direction: .narrower, severity: grant, subject: dataset,
                                 message: "every query must now declare a purpose (\(new.purposes.map(\.name).joined(separator: ", ")))"))
        } else {
            for name in after.subtracting(before).sorted() {
                changes.append(.init(direction: .wider, severity: grant, subject: dataset, message: "purpose \(name) allowed"))
            }
            for name in before.subtracting(after).sorted() {
                changes.append(.init(direction: .narrower, severity: grant, subject: dataset, message: "purpose \(name) no longer allowed"))
            }
        }
        if old.tokens != new.tokens {
            let shared = new.tokens == .shared
            changes.append(.init(direction: shared ? .wider : .narrower, severity: shared ? token : grant, subject: dataset,
                                 message: shared ? "tokens shared by every consumer: their results can be linked, and leaks no longer trace to a consumer"
                                                 : "tokens keyed per consumer: results no longer link across consumers (every token changes)"))
        }
        return changes
    }

    static func limitChanges(_ old: DatasetLimits, _ new: DatasetLimits, subject: String, what: String) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        func compare<T: Comparable>(_ key: String, _ before: T, _ after: T) {
            guard before != after else { return }
            changes.append(.init(direction: after > before ? .wider : .narrower, severity: limit, subject: subject,
                                 message: "\(what) \(key) \(after > before ? "raised" : "lowered") from \(before) to \(after)"))
        }
        compare("max_rows", old.maxRows, new.maxRows)
        compare("max_result_bytes", old.maxResultBytes, new.maxResultBytes)
        compare("timeout_ms", old.timeoutMilliseconds, new.timeoutMilliseconds)
        compare("max_vm_steps", old.maxVMSteps, new.maxVMSteps)
        return changes
    }

    // MARK: Tables

    static func compare(_ old: TablePolicy, _ new: TablePolicy, subject: String, sample: SampleValues) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        if old.access != new.access {
            let wider = new.access == .rows
            changes.append(.init(direction: wider ? .wider : .narrower, severity: raw, subject: subject,
                                 message: wider ? "access aggregate → rows: individual rows become visible" : "access rows → aggregate: only aggregates over groups remain"))
        }
        switch (old.rowFilter, new.rowFilter) {
        case (let filter?, nil):
            changes.append(.init(direction: .wider, severity: rowFilter, subject: subject, message: "row_filter \"\(filter)\" removed: every row becomes visible"))
        case (nil, let filter?):
            changes.append(.init(direction: .narrower, severity: rowFilter, subject: subject, message: "row_filter \"\(filter)\" added"))
        case (let before?, let after?) where before != after:
            changes.append(.init(direction: .wider, severity: rowFilter, subject: subject,
                                 message: "row_filter changed from \"\(before)\" to \"\(after)\": other rows may become visible (review it)"))
        default: break
        }
        if new.access == .aggregate, old.access == .aggregate {
            if let before = old.minGroupSize, let after = new.minGroupSize, before != after {
                changes.append(.init(direction: after < before ? .wider : .narrower, severity: threshold, subject: subject,
                                     message: "min_group_size \(after < before ? "lowered" : "raised") from \(before) to \(after)"))
            }
            if old.privacyUnit?.lowercased() != new.privacyUnit?.lowercased() {
                changes.append(.init(direction: .wider, severity: threshold, subject: subject,
                                     message: "privacy_unit changed from \(old.privacyUnit ?? "none") to \(new.privacyUnit ?? "none"): thresholds count something else (review it)"))
            }
            if old.smallGroups != new.smallGroups {
                let wider = new.smallGroups == .remainder
                changes.append(.init(direction: wider ? .wider : .narrower, severity: threshold, subject: subject,
                                     message: wider ? "small_groups drop → remainder: small groups are released merged" : "small_groups remainder → drop"))
            }
            changes += privacyChanges(old, new, subject: subject)
        }
        let oldColumns = Dictionary(old.columns.map { ($0.name.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        let newColumns = Dictionary(new.columns.map { ($0.name.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        for name in Set(oldColumns.keys).union(newColumns.keys).sorted() {
            let columnName = newColumns[name]?.name ?? oldColumns[name]?.name ?? name
            changes += compare(oldColumns[name], newColumns[name], subject: "\(subject).\(columnName)", access: new.access,
                               sample: { sample.values(of: columnName) })
        }
        return changes
    }

    /// `privacy:` (issue 10): removing it, a larger ε, δ, budget or contribution bound, or wider
    /// measure bounds expose more (wider bounds scale the noise up, but keep more of each value).
    static func privacyChanges(_ old: TablePolicy, _ new: TablePolicy, subject: String) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        switch (old.privacy, new.privacy) {
        case (.some, nil):
            changes.append(.init(direction: .wider, severity: threshold, subject: subject, message: "privacy removed: answers are exact again, and differencing two queries reveals one person"))
        case (nil, .some):
            changes.append(.init(direction: .narrower, severity: threshold, subject: subject, message: "privacy added: answers become differentially private"))
        case (let before?, let after?):
            func compare(_ key: String, _ from: Double, _ to: Double, _ text: (Double) -> String) {
                guard from != to else { return }
                changes.append(.init(direction: to > from ? .wider : .narrower, severity: threshold, subject: subject,
                                     message: "privacy \(key) \(to > from ? "raised" : "lowered") from \(text(from)) to \(text(to))"))
            }
            let epsilon = { (micros: Double) in PrivacyBudget.epsilonText(Int64(micros)) }
            compare("epsilon_per_query", Double(before.epsilonPerQueryMicros), Double(after.epsilonPerQueryMicros), epsilon)
            compare("delta", before.delta, after.delta) { "\($0)" }
            compare("budget.epsilon", Double(before.budgetMicros), Double(after.budgetMicros), epsilon)
            compare("max_groups_per_unit", Double(before.maxGroupsPerUnit), Double(after.maxGroupsPerUnit)) { String(Int($0)) }
            compare("max_rows_per_unit", Double(before.maxRowsPerUnit), Double(after.maxRowsPerUnit)) { String(Int($0)) }
            let order: [BudgetPeriod: Int] = [.total: 0, .month: 1, .day: 2]
            if before.period != after.period {
                let wider = (order[after.period] ?? 0) > (order[before.period] ?? 0)
                changes.append(.init(direction: wider ? .wider : .narrower, severity: threshold, subject: subject,
                                     message: "privacy budget period \(before.period.rawValue) → \(after.period.rawValue): the budget refreshes \(wider ? "more" : "less") often"))
            }
        case (nil, nil):
            break
        }
        if new.privacy != nil {
            for column in new.columns {
                guard let after = column.bounds, let before = old.column(named: column.name)?.bounds, before != after else { continue }
                let wider = after.lower < before.lower || after.upper > before.upper
                changes.append(.init(direction: wider ? .wider : .narrower, severity: threshold, subject: "\(subject).\(column.name)",
                                     message: "bounds [\(before.lower), \(before.upper)] → [\(after.lower), \(after.upper)]"))
            }
        }
        return changes
    }

    // MARK: Columns

    /// How much a role shows, for ordering (an unlisted column is hidden).
    static func rank(_ role: ColumnRole?) -> Int {
        switch role {
        case nil, .hidden?: 0
        case .joinKey?: 1
        case .measure?: 2
        case .dimension?, .visible?: 3
        }
    }

    static func roleName(_ column: ColumnPolicy?) -> String {
        guard let column else { return "not listed (hidden)" }
        return column.role.rawValue
    }

    static func compare(_ old: ColumnPolicy?, _ new: ColumnPolicy?, subject: String, access: TableAccess,
                        sample: () -> [String]) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        let before = rank(old?.role), after = rank(new?.role)
        if before != after || (old?.role != new?.role && old != nil && new != nil) {
            let shown = after >= 3
            let unmasked = shown && new?.mask == nil
            let severity = before <= 1 && unmasked ? raw : before <= 1 ? token : maskWeaker
            let message = "role \(roleName(old)) → \(roleName(new))" + (after > before && unmasked ? ": values become visible as they are" : after > before && shown ? " (masked: \(new?.mask?.summary ?? ""))" : "")
            changes.append(.init(direction: after > before ? .wider : after < before ? .narrower : .neutral, severity: severity, subject: subject, message: message))
        }
        // Masks matter where values are shown (visible or dimension, in both versions).
        if let old, let new, before >= 2, after >= 2 {
            switch (old.mask, new.mask) {
            case (let mask?, nil):
                changes.append(.init(direction: .wider, severity: raw, subject: subject,
                                     message: "mask \(mask.name) removed: values are shown as they are"))
            case (nil, let mask?):
                changes.append(.init(direction: .narrower, severity: raw, subject: subject, message: "mask \(mask.name) added (\(mask.summary))"))
            case (let maskBefore?, let maskAfter?):
                if let change = compare(maskBefore, maskAfter, subject: subject, sample: sample()) { changes.append(change) }
            case (nil, nil):
                break
            }
            let added = Set(new.aggregates).subtracting(old.aggregates), removed = Set(old.aggregates).subtracting(new.aggregates)
            if !added.isEmpty {
                let extremes = added.contains("min") || added.contains("max")
                changes.append(.init(direction: .wider, severity: extremes ? threshold : aggregate, subject: subject,
                                     message: "aggregates added: \(added.sorted().joined(separator: ", "))" + (extremes ? " (min/max release one individual's value)" : "")))
            }
            if !removed.isEmpty {
                changes.append(.init(direction: .narrower, severity: aggregate, subject: subject, message: "aggregates removed: \(removed.sorted().joined(separator: ", "))"))
            }
        }
        return changes
    }

    /// Compares two masks by what they reveal of sample values (the column's own data when the
    /// source is readable, plus fixed probes): characters kept that are not `*`.
    static func compare(_ old: Mask, _ new: Mask, subject: String, sample: [String]) -> ExposureChange? {
        let probes = sample + MaskProbe.fixed
        let before = MaskProbe.revealed(by: old, probes), after = MaskProbe.revealed(by: new, probes)
        let same = MaskProbe.outputs(of: old, probes) == MaskProbe.outputs(of: new, probes)
        if same, old.name == new.name, old.onNoMatch == new.onNoMatch { return nil }
        let names = old.name == new.name ? "mask \(new.name) edited" : "mask \(old.name) → \(new.name)"
        if after > before {
            return .init(direction: .wider, severity: maskWeaker, subject: subject,
                         message: "\(names): keeps more (\(MaskProbe.format(before)) → \(MaskProbe.format(after)) characters per value on samples)")
        }
        if after < before {
            return .init(direction: .narrower, severity: maskWeaker, subject: subject,
                         message: "\(names): keeps less (\(MaskProbe.format(before)) → \(MaskProbe.format(after)) characters per value on samples)")
        }
        if new.onNoMatch == .keep, old.onNoMatch != .keep {
            return .init(direction: .wider, severity: maskWeaker, subject: subject, message: "\(names): values the pattern does not match are now kept as they are")
        }
        return .init(direction: .wider, severity: maskWeaker, subject: subject,
                     message: "\(names): keeps as much on samples but differently (review it)")
    }

    // MARK: Consumers

    static func compare(_ old: ConsumerDirectory, _ new: ConsumerDirectory) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        for name in Set(old.consumers.keys).union(new.consumers.keys).sorted() {
            let subject = "consumer \(name)"
            switch (old.consumers[name], new.consumers[name]) {
            case (nil, let added?):
                let grants = added.grants.keys.sorted()
                changes.append(.init(direction: grants.isEmpty ? .neutral : .wider, severity: grant, subject: subject,
                                     message: "added" + (grants.isEmpty ? " without grants" : " with grants: \(grants.joined(separator: ", "))")))
                if added.role == .operator {
                    changes.append(.init(direction: .wider, severity: grant, subject: subject, message: "role operator: sees server-wide stats"))
                }
            case (_?, nil):
                changes.append(.init(direction: .narrower, severity: grant, subject: subject, message: "removed"))
            case (let before?, let after?):
                if before.keySHA256 != after.keySHA256 {
                    changes.append(.init(direction: .neutral, severity: 0, subject: subject, message: "key replaced (rotated)"))
                }
                if before.role != after.role {
                    changes.append(.init(direction: after.role == .operator ? .wider : .narrower, severity: grant, subject: subject,
                                         message: "role \(before.role.rawValue) → \(after.role.rawValue)"))
                }
                for dataset in Set(before.grants.keys).union(after.grants.keys).sorted() {
                    switch (before.grants[dataset], after.grants[dataset]) {
                    case (nil, _?):
                        changes.append(.init(direction: .wider, severity: grant, subject: subject, message: "grant added for dataset \(dataset)"))
                    case (_?, nil):
                        changes.append(.init(direction: .narrower, severity: grant, subject: subject, message: "grant for dataset \(dataset) revoked"))
                    case (let old?, let new?):
                        changes += grantChanges(old, new, subject: subject, dataset: dataset)
                    case (nil, nil):
                        break
                    }
                }
            case (nil, nil):
                break
            }
        }
        return changes
    }

    /// A grant's limit or quota: nil means "the dataset's own" (or unlimited), the widest value.
    static func grantChanges(_ old: Grant, _ new: Grant, subject: String, dataset: String) -> [ExposureChange] {
        var changes: [ExposureChange] = []
        func compare(_ key: String, _ before: Int64?, _ after: Int64?) {
            guard before != after else { return }
            let wider = (after ?? .max) > (before ?? .max)
            func text(_ value: Int64?) -> String { value.map(String.init) ?? "none" }
            changes.append(.init(direction: wider ? .wider : .narrower, severity: limit, subject: subject,
                                 message: "\(dataset) \(key) \(wider ? "raised" : "lowered") from \(text(before)) to \(text(after))"))
        }
        compare("max_rows", old.maxRows.map(Int64.init), new.maxRows.map(Int64.init))
        compare("daily_queries", old.dailyQueries.map(Int64.init), new.dailyQueries.map(Int64.init))
        compare("daily_rows", old.dailyRows.map(Int64.init), new.dailyRows.map(Int64.init))
        compare("timeout_ms", old.timeoutMilliseconds.map(Int64.init), new.timeoutMilliseconds.map(Int64.init))
        compare("max_vm_steps", old.maxVMSteps, new.maxVMSteps)
        compare("max_result_bytes", old.maxResultBytes.map(Int64.init), new.maxResultBytes.map(Int64.init))
        compare("epsilon_budget (micro-ε)", old.epsilonBudgetMicros, new.epsilonBudgetMicros)
        // Purposes (issue 13): a purpose granted is wider, one taken away narrower; limits per
        // purpose compare like the grant's own.
        let before = old.purposes ?? [:], after = new.purposes ?? [:]
        for name in Set(after.keys).subtracting(before.keys).sorted() {
            changes.append(.init(direction: .wider, severity: grant, subject: subject, message: "\(dataset) purpose \(name) granted"))
        }
        for name in Set(before.keys).subtracting(after.keys).sorted() {
            changes.append(.init(direction: .narrower, severity: grant, subject: subject, message: "\(dataset) purpose \(name) no longer granted"))
        }
        for name in Set(before.keys).intersection(after.keys).sorted() {
            guard let was = before[name], let now = after[name], was != now else { continue }
            compare("max_rows for purpose \(name)", was.maxRows.map(Int64.init), now.maxRows.map(Int64.init))
            compare("timeout_ms for purpose \(name)", was.timeoutMilliseconds.map(Int64.init), now.timeoutMilliseconds.map(Int64.init))
            compare("max_vm_steps for purpose \(name)", was.maxVMSteps, now.maxVMSteps)
            compare("max_result_bytes for purpose \(name)", was.maxResultBytes.map(Int64.init), now.maxResultBytes.map(Int64.init))
        }
        return changes
    }
}

/// Up to 200 text values of a column from a policy's source, read only when a mask comparison
/// needs them. Values stay in memory and are never printed.
struct SampleValues {
    let source: String
    let table: String

    func values(of column: String) -> [String] {
        guard !source.isEmpty, let db = try? Connection(path: source, mode: .readOnly) else { return [] }
        let sql = "SELECT CAST(\(Renderer.identifier(column)) AS TEXT) FROM \(Renderer.identifier(table)) WHERE \(Renderer.identifier(column)) IS NOT NULL LIMIT 200"
        let rows = (try? db.rows(sql)) ?? []
        return rows.compactMap { row in if case .text(let text)? = row.first { text } else { nil } }
    }
}

/// Applies masks to probe values to compare what they reveal.
enum MaskProbe {
    /// Values of the shapes the presets are written for, and a few others.
    static let fixed = ["13812345678", "110101195102020011", "li.lei@example.cn", "王小明", "Li Lei", "1990-05-17",
                        "1990-05-17 10:20:30", "6222021234567890", "abcdefghijklmnop", "42"]

    /// Characters of the input the masked values keep, averaged over `probes`: the characters
    /// (not `*`) equal to the input's at the same place counted from the start or from the end,
    /// whichever is more (`138****5678` keeps 7 of `13812345678`, `***@example.cn` keeps 11,
    /// `1990-05-01` keeps 8 of `1990-05-17` and `1990-01-01` 7). A hash or a token keeps no
    /// characters but links equal values, so it counts a little above none.
    static func revealed(by mask: Mask, _ probes: [String]) -> Double {
        switch mask.kind {
        case .null: return 0
        case .hash, .joinToken: return 0.5
        default: break
        }
        var total = 0
        for (probe, output) in zip(probes, outputs(of: mask, probes)) {
            guard let output else { continue }
            let input = Array(probe), masked = Array(output)
            func kept(_ pairs: Zip2Sequence<[Character], [Character]>) -> Int { pairs.filter { $0 == $1 && $1 != "*" }.count }
            total += max(kept(zip(input, masked)), kept(zip(Array(input.reversed()), Array(masked.reversed()))))
        }
        return Double(total) / Double(max(1, probes.count))
    }

    static func outputs(of mask: Mask, _ probes: [String]) -> [String?] {
        let evaluator = MaskEvaluator(mask: mask, key: Array(repeating: 1, count: 32))
        return probes.map { probe in
            Array(probe.utf8).withUnsafeBufferPointer { buffer in
                switch evaluator.apply(buffer) {
                case .null: nil
                case .text(let output): String(decoding: output, as: UTF8.self)
                }
            }
        }
    }

    static func format(_ value: Double) -> String {
        let rounded = (value * 100).rounded() / 100
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}
