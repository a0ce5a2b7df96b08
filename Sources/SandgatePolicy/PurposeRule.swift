/// The one rule deciding a query's purpose (DESIGN.md §11, issue 13), shared by `run`, `explain`
/// and `columns`, so that no front end can decide it differently.
///
/// - A dataset that lists purposes requires one on every query: it must be listed by the dataset
///   *and* by the consumer's grant (a grant that lists none allows none — fail closed: the
///   operator must grant each purpose the holder allows).
/// - A dataset that lists none leaves the purpose optional; a purpose given is recorded. If the
///   grant lists purposes, a query must carry one of those (the operator restricted the grant).
/// - A purpose is a `Name`; anything else is refused before it is compared with anything.
public enum PurposeRule {
    /// Why a purpose was refused; every kind is the error code `purpose_not_allowed`.
    public enum Refusal: Error, Sendable, Equatable {
        case missing
        /// Not a valid name, or named by neither the dataset nor the grant.
        case unknown(String)
        /// The dataset allows it, this consumer's grant does not.
        case notGranted(String)
        /// The grant names it, the dataset (its holder) does not allow it.
        case notAllowedByDataset(String)
    }

    /// The decided purpose ("" when none is required and none was given) and its limits.
    public struct Decision: Sendable, Equatable {
        public let purpose: String
        public let limits: PurposeLimits
    }

    /// The purposes a consumer may use the dataset for, in the dataset's order (then the grant's,
    /// sorted, when the dataset lists none). Empty with `required == false`: any or none.
    public static func allowed(dataset: DatasetPolicy, grant: Grant) -> (names: [String], required: Bool) {
        let granted = grant.purposes ?? [:]
        if !dataset.purposes.isEmpty {
            return (dataset.purposes.map(\.name).filter { granted[$0] != nil }, true)
        }
        guard grant.purposes != nil else { return ([], false) }
        return (granted.keys.sorted(), true)
    }

    /// Decides `requested` (nil or empty: none given) for `grant` on `dataset`.
    public static func decide(_ requested: String?, dataset: DatasetPolicy, grant: Grant) -> Result<Decision, Refusal> {
        let (names, required) = allowed(dataset: dataset, grant: grant)
        guard let requested, !requested.isEmpty else {
            return required ? .failure(.missing) : .success(Decision(purpose: "", limits: .none))
        }
        guard Name.isValid(requested) else { return .failure(.unknown(String(requested.prefix(64)))) }
        let inDataset = dataset.purpose(named: requested) != nil
        let limits = grant.purposes?.first { Array($0.key.utf8) == Array(requested.utf8) }?.value
        if !required { return .success(Decision(purpose: requested, limits: .none)) }
        if names.contains(where: { Array($0.utf8) == Array(requested.utf8) }) {
            return .success(Decision(purpose: requested, limits: limits ?? .none))
        }
        if inDataset { return .failure(.notGranted(requested)) }
        if limits != nil { return .failure(.notAllowedByDataset(requested)) }
        return .failure(.unknown(requested))
    }

    /// The message and hint for a refusal (no values, only names the consumer may know: the
    /// purposes it may use, and the one it sent). A purpose the consumer was not granted reads
    /// exactly like one that does not exist.
    public static func explain(_ refusal: Refusal, dataset: DatasetPolicy, grant: Grant) -> (message: String, hint: String) {
        let names = allowed(dataset: dataset, grant: grant).names
        let list = names.isEmpty ? "none (ask the operator to grant one)" : names.joined(separator: ", ")
        let hint = "allowed purposes for dataset '\(dataset.name)': \(list); declare one with `purpose` (JSON lines), --purpose (CLI) or SET sandgate.purpose (PostgreSQL)"
        switch refusal {
        case .missing:
            return ("dataset '\(dataset.name)' requires a purpose on every query", hint)
        case .unknown(let name), .notGranted(let name):
            // One message for both: a different one for a purpose the dataset lists would let a
            // consumer probe for purposes it was not granted.
            return ("unknown purpose '\(name)' for dataset '\(dataset.name)'\(NearestName.suggestion(for: name, among: names))", hint)
        case .notAllowedByDataset(let name):
            return ("dataset '\(dataset.name)' does not allow purpose '\(name)' (its holder does not list it)", hint)
        }
    }
}
