import Foundation
import SandgateLedger
import SandgatePolicy
import SandgateSQLite
import Synchronization

/// A consumer's ε budget on a dataset for one private query: the table's `budget.epsilon`, lowered
/// by the grant's `epsilon_budget`, counted since the start of its period.
public struct PrivacyBudget: Sendable {
    let micros: Int64
    let period: BudgetPeriod

    init(plan: PrivatePlan, grant: Grant) {
        micros = min(plan.budgetMicros, grant.epsilonBudgetMicros ?? .max)
        period = plan.period
    }

    /// The running totals' period that sums what this budget counts.
    static func totalsPeriod(_ period: BudgetPeriod) -> TotalsPeriod {
        switch period {
        case .day: .day
        case .month: .month
        case .total: .total
        }
    }

    /// When the budget refreshes next, as users read it.
    static func nextRefresh(_ period: BudgetPeriod, now: Int64) -> String {
        switch period {
        case .day: return "at 00:00 UTC"
        case .month: return "on the 1st of the month, 00:00 UTC"
        case .total: return "never (the budget is for all time; ask the data holder)"
        }
    }

    /// The refusal of a query whose ε does not fit in what is left.
    static func exhausted(remainingMicros: Int64, budgetMicros: Int64, needed: Int64, period: BudgetPeriod, now: Int64) -> GatewayError {
        GatewayError(.privacyBudgetExhausted,
                     "the privacy budget is spent: this query needs epsilon \(epsilonText(needed)), \(epsilonText(remainingMicros)) of \(epsilonText(budgetMicros)) is left",
                     hint: "remaining epsilon \(epsilonText(remainingMicros)); the budget refreshes \(nextRefresh(period, now: now)); repeating an earlier query costs nothing")
    }

    /// micro-ε as an exact decimal (`500000` → `0.5`): one spelling for JSON, notices and the CLI.
    public static func epsilonText(_ micros: Int64) -> String {
        let whole = micros / 1_000_000, fraction = abs(micros % 1_000_000)
        guard fraction != 0 else { return String(whole) }
        var digits = String(fraction)
        digits = String(repeating: "0", count: 6 - digits.count) + digits
        while digits.hasSuffix("0") { digits.removeLast() }
        return (micros < 0 && whole == 0 ? "-" : "") + "\(whole).\(digits)"
    }
}

/// The released groups of one private query, kept so that an identical query (same consumer,
/// same stage 1, same parameters, same runtime — so the same snapshot and policy) returns the
/// same noisy answer and spends nothing: repetition cannot average the noise away.
struct PrivateAnswer: Sendable {
    let runtime: DatasetRuntime
    let key: String
    let groups: ReleasedGroups

    init(runtime: DatasetRuntime, consumer: String, plan: PrivatePlan, parameters: QueryParameters, groups: ReleasedGroups) {
        self.runtime = runtime
        key = Self.key(consumer: consumer, plan: plan, parameters: parameters)
        self.groups = groups
    }

    /// The consumer, stage 1 and everything noised from it: which measurements, how each is
    /// calibrated, and which aggregates are computed from them (red team: keyed on stage 1 alone,
    /// `count(amount)`, `sum(amount)` and `avg(amount)` shared one answer, mislabelled), plus the
    /// parameters.
    static func key(consumer: String, plan: PrivatePlan, parameters: QueryParameters) -> String {
        var key = consumer + "\u{1F}" + plan.stageOneSQL + "\u{1F}"
        key += "\(plan.keyCount)\u{1F}\(plan.measurements)\u{1F}\(plan.calibrations)\u{1F}\(plan.aggregates)\u{1F}"
        switch parameters {
        case .none: break
        case .positional(let values): key += values.map(describe).joined(separator: "\u{1E}")
        case .named(let values): key += values.sorted { $0.key < $1.key }.map { $0.key + "=" + describe($0.value) }.joined(separator: "\u{1E}")
        }
        return key
    }

    /// A parameter with its storage class, so `1` and `'1'` are different keys.
    static func describe(_ value: SQLValue) -> String {
        switch value {
        case .null: return "n"
        case .integer(let number): return "i\(number)"
        case .real(let number): return "r\(number.bitPattern)"
        case .text(let text): return "t" + text
        case .blob(let bytes): return "b" + bytes.map { String($0, radix: 16) }.joined(separator: ",")
        }
    }
}

/// The answers a runtime remembers, bounded by the number of answers and by the values they hold
/// together (the oldest half is dropped when either is full). A dropped answer is charged again
/// when asked again, so forgetting never undercharges.
final class PrivateAnswers: Sendable {
    private struct State {
        var entries: [String: ReleasedGroups] = [:]
        var order: [String] = []
        var values = 0
    }

    private let state = Mutex(State())
    static let capacity = 10_000
    /// Values (cells of released groups) kept in all; about 16 bytes and more each.
    static let valueCapacity = 4_000_000

    func answer(for key: String) -> ReleasedGroups? {
        state.withLock { $0.entries[key] }
    }

    func remember(_ key: String, _ groups: ReleasedGroups) {
        let size = groups.rows.reduce(0) { $0 + $1.count }
        guard size <= Self.valueCapacity / 4 else { return }
        state.withLock { state in
            guard state.entries[key] == nil else { return }
            while !state.order.isEmpty, state.order.count >= Self.capacity || state.values + size > Self.valueCapacity {
                let dropped = state.order.prefix(max(1, state.order.count / 2))
                for old in dropped { state.values -= state.entries.removeValue(forKey: old).map { $0.rows.reduce(0) { $0 + $1.count } } ?? 0 }
                state.order.removeFirst(dropped.count)
            }
            state.entries[key] = groups
            state.order.append(key)
            state.values += size
        }
    }
}

extension DatasetRuntime {
    /// The answer an identical earlier query of `consumer` released, if remembered.
    func rememberedAnswer(consumer: String, plan: PrivatePlan, parameters: QueryParameters) -> PrivateAnswer? {
        let key = PrivateAnswer.key(consumer: consumer, plan: plan, parameters: parameters)
        return privateAnswers.answer(for: key).map { PrivateAnswer(runtime: self, key: key, groups: $0) }
    }

    /// Remembers `answer` (called once its record is committed).
    func remember(_ answer: PrivateAnswer) {
        privateAnswers.remember(answer.key, answer.groups)
    }
}

extension PrivateAnswer {
    init(runtime: DatasetRuntime, key: String, groups: ReleasedGroups) {
        self.runtime = runtime
        self.key = key
        self.groups = groups
    }
}

/// What is left of a consumer's ε budget on a dataset (the `quota` op, `sandgate usage quota`).
public struct PrivacyBudgetStatus: Sendable, Equatable {
    public let budgetMicros: Int64
    /// Committed records' ε since the period began (queries in flight are not counted).
    public let spentMicros: Int64
    public let period: BudgetPeriod
    /// When the budget refreshes next, in words.
    public let refresh: String

    public var remainingMicros: Int64 { max(0, budgetMicros - spentMicros) }

    /// The status for `consumer` on `policy`'s private tables (the smallest budget among them, as
    /// lowered by the grant), or nil when the dataset has no private table.
    public static func read(policy: DatasetPolicy, grant: Grant, consumer: String, ledger: any LedgerStore, now: Int64) throws(LedgerError) -> PrivacyBudgetStatus? {
        guard let privacy = policy.tables.compactMap(\.privacy).min(by: { $0.budgetMicros < $1.budgetMicros }) else { return nil }
        let budget = min(privacy.budgetMicros, grant.epsilonBudgetMicros ?? .max)
        let spent = try ledger.totals(consumer: consumer, dataset: policy.name, at: now)[PrivacyBudget.totalsPeriod(privacy.period)].epsilonMicros
        return PrivacyBudgetStatus(budgetMicros: budget, spentMicros: spent, period: privacy.period,
                                   refresh: PrivacyBudget.nextRefresh(privacy.period, now: now))
    }
}
