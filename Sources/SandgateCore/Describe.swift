import SandgatePolicy

/// A dataset as one consumer sees it: visible tables and columns, effective limits and prices.
/// Never shows hidden columns, unlisted tables, mask patterns or the row filter's text.
public struct DatasetDescription: Sendable {
    public struct Column: Sendable {
        public let name: String
        public let role: String
        /// The type of the values the consumer receives: the source's declared type (`INTEGER`,
        /// `TEXT`, …; empty when the source declares none), or `TEXT` for masked columns and
        /// join keys (masks return text), `NULL` for the `null` mask.
        public let type: String
        /// The mask's preset name, `regex`, `join_key` token, or nil when shown as is.
        public let mask: String?
        /// What the mask does, in words (`year only (YYYY-01-01)`); nil when shown as is.
        public let maskSummary: String?
        public let aggregates: [String]
        /// A measure's `bounds` (values are clamped to them on private tables).
        public var bounds: MeasureBounds? = nil
    }

    public struct Table: Sendable {
        public let name: String
        public let access: String
        public let rowFilter: Bool
        public let minGroupSize: Int?
        public let columns: [Column]
        /// The `privacy:` block of a differentially private table (issue 10).
        public var privacy: PrivacyPolicy? = nil
    }

    public let dataset: String
    public let description: String
    public let owner: String
    public let tables: [Table]
    public let limits: DatasetLimits
    public let pricing: Pricing
    /// The purposes the consumer may use (for the operator: every purpose the dataset lists).
    public let purposes: [PurposeDeclaration]
    /// True when every query must declare one of `purposes`.
    public let purposeRequired: Bool
    /// `shared` or `per_consumer` (tokens traceable to their receiver).
    public let tokens: String
}

extension Gateway {
    /// Describes `dataset` for `consumer` (nil: the dataset's own limits, for the operator).
    public func describe(dataset: String, consumer: String?) -> Result<DatasetDescription, GatewayError> {
        guard let runtime = runtime(dataset) else {
            return .failure(GatewayError(.unknownDataset, "no dataset named '\(dataset)'"))
        }
        var limits = runtime.policy.limits
        var purposes = runtime.policy.purposes
        var required = !purposes.isEmpty
        if let consumer {
            guard let known = consumers.consumers[consumer] else {
                return .failure(GatewayError(.authFailed, "unknown consumer '\(consumer)'"))
            }
            guard let grant = known.grants[dataset] else {
                return .failure(GatewayError(.notGranted, "consumer '\(consumer)' has no grant for dataset '\(dataset)'"))
            }
            limits = limits.lowered(by: grant)
            let allowed = PurposeRule.allowed(dataset: runtime.policy, grant: grant)
            required = allowed.required
            purposes = allowed.names.map { name in
                runtime.policy.purpose(named: name) ?? PurposeDeclaration(name: name, description: "", location: runtime.policy.sourceLocation)
            }
        }
        let policy = runtime.policy
        let tables = policy.tables.map { table in
            var described = DatasetDescription.Table(
                name: table.name, access: table.access.rawValue, rowFilter: table.rowFilter != nil,
                minGroupSize: table.minGroupSize,
                columns: table.visibleColumns.map { column in
                    let declared = runtime.facts.declaredTypes[table.name.lowercased()]?[column.name.lowercased()] ?? ""
                    let type = switch column.mask?.kind {
                    case nil: declared.uppercased()
                    case .null?: "NULL"
                    default: "TEXT"
                    }
                    var described = DatasetDescription.Column(
                        name: column.name, role: column.role.rawValue, type: type,
                        mask: column.role == .joinKey ? "token" : column.mask?.name, maskSummary: column.mask?.summary,
                        aggregates: column.aggregates)
                    described.bounds = column.bounds
                    return described
                })
            described.privacy = table.privacy
            return described
        }
        return .success(DatasetDescription(
            dataset: dataset, description: policy.description, owner: policy.owner, tables: tables, limits: limits,
            pricing: policy.pricing, purposes: purposes, purposeRequired: required, tokens: policy.tokens.rawValue))
    }
}
