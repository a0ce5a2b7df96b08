import Foundation
import SandgateSupport

/// What a record is (chain version 4's `kind`): the names the contract lists (docs/CONTRACT.md §7).
public enum RecordKind {
    /// A consumer's query or explain, run or refused.
    public static let query = "query"
    /// The refusals of a consumer in one minute that were not recorded one by one.
    public static let refusalSummary = "refusal_summary"
    /// A failed login, and the failed logins of an address that were not recorded one by one.
    public static let authFailure = "auth_failure"
    public static let authFailureSummary = "auth_failure_summary"
    /// Kinds reserved for the issues that build on version 4: a catalog query, an uploaded
    /// table, a template run, an access request and its decision.
    public static let catalog = "catalog"
    public static let upload = "upload"
    public static let template = "template"
    public static let accessRequest = "access_request"
    public static let accessDecision = "access_decision"
}

/// One member dataset a query read besides (or instead of) the record's own (chain version 4):
/// a collaboration's members, each with its version, holder and share when the query ran, and
/// the ε charged to that member's budget.
public struct RecordMember: Sendable, Hashable, Codable {
    public var dataset: String
    public var datasetVersion: String
    public var policyVersion: String
    public var holder: String
    public var holderSharePPM: Int64
    public var epsilonMicros: Int64

    public init(dataset: String, datasetVersion: String, policyVersion: String, holder: String, holderSharePPM: Int64 = 0, epsilonMicros: Int64 = 0) {
        self.dataset = dataset
        self.datasetVersion = datasetVersion
        self.policyVersion = policyVersion
        self.holder = holder
        self.holderSharePPM = holderSharePPM
        self.epsilonMicros = epsilonMicros
    }

    enum CodingKeys: String, CodingKey {
        case dataset, datasetVersion = "dataset_version", policyVersion = "policy_version", holder
        case holderSharePPM = "holder_share_ppm", epsilonMicros = "epsilon_micros"
    }
}

/// The value of a named extension field (chain version 4): an integer or a text, typed in the
/// canonical bytes so `1` and `"1"` never hash alike.
public enum RecordExtension: Sendable, Hashable, Codable {
    case integer(Int64)
    case text(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let number = try? container.decode(Int64.self) {
            self = .integer(number)
        } else {
            self = .text(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .integer(let number): try container.encode(number)
        case .text(let text): try container.encode(text)
        }
    }
}

/// How version 4's lists are stored in a column (both stores) and exported: JSON with sorted
/// keys, empty text when empty. Read back into values before hashing, so the stored spelling is
/// not part of the hash.
package enum RecordColumns {
    /// `query`, the kind of nearly every record, is stored as empty text (as records before
    /// version 4 have it): both read as `query`.
    package static func kind(_ kind: String) -> String { kind == RecordKind.query ? "" : kind }

    package static func members(_ members: [RecordMember]) -> String {
        members.isEmpty ? "" : encode(members)
    }

    package static func extensions(_ extensions: [String: RecordExtension]) -> String {
        extensions.isEmpty ? "" : encode(extensions)
    }

    /// nil when the stored text is not such a list (edited): the record then fails to verify.
    static func members(from text: String) -> [RecordMember]? {
        text.isEmpty ? [] : try? JSONDecoder().decode([RecordMember].self, from: Data(text.utf8))
    }

    static func extensions(from text: String) -> [String: RecordExtension]? {
        text.isEmpty ? [:] : try? JSONDecoder().decode([String: RecordExtension].self, from: Data(text.utf8))
    }

    private static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}

extension UsageRecord {
    /// Members and extensions a record keeps at most, and the bytes of an extension's name and text.
    public static let memberLimit = 16
    public static let extensionLimit = 16

    /// Version 4's fields cut to their bounds (`bounded`).
    mutating func boundVersion4() {
        kind = UTF8Text.prefix(kind, maxBytes: Self.nameLimit)
        members = members.prefix(Self.memberLimit).map { member in
            var member = member
            member.dataset = UTF8Text.prefix(member.dataset, maxBytes: Self.nameLimit)
            member.datasetVersion = UTF8Text.prefix(member.datasetVersion, maxBytes: Self.fieldLimit)
            member.policyVersion = UTF8Text.prefix(member.policyVersion, maxBytes: Self.fieldLimit)
            member.holder = UTF8Text.prefix(member.holder, maxBytes: Self.fieldLimit)
            return member
        }
        var kept: [String: RecordExtension] = [:]
        for (name, value) in extensions.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }).prefix(Self.extensionLimit) {
            let cutName = UTF8Text.prefix(name, maxBytes: Self.nameLimit)
            switch value {
            case .integer: kept[cutName] = value
            case .text(let text): kept[cutName] = .text(UTF8Text.prefix(text, maxBytes: Self.fieldLimit))
            }
        }
        extensions = kept
    }
}

extension CanonicalEncoder {
    /// Version 4's part of the canonical bytes: `kind` t; `members` i count, then per member
    /// dataset t, dataset_version t, policy_version t, holder t, holder_share_ppm i,
    /// epsilon_micros i; `extensions` i count, then per extension in increasing order of its
    /// name's UTF-8 bytes: name t and its value (i or t).
    mutating func version4(_ r: UsageRecord) {
        text(r.kind)
        integer(Int64(r.members.count))
        for member in r.members {
            text(member.dataset)
            text(member.datasetVersion)
            text(member.policyVersion)
            text(member.holder)
            integer(member.holderSharePPM)
            integer(member.epsilonMicros)
        }
        integer(Int64(r.extensions.count))
        for (name, value) in r.extensions.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }) {
            text(name)
            switch value {
            case .integer(let number): integer(number)
            case .text(let value): text(value)
            }
        }
    }
}

extension UsageRecord {
    /// Sets version 4's fields from their stored columns. Empty columns (every record of an
    /// earlier version) read as a `query` without members or extensions; stored lists that do not decode become a marker
    /// extension, so the record no longer verifies (never silently dropped).
    package mutating func readVersion4(kind storedKind: String, members storedMembers: String, extensions storedExtensions: String) {
        kind = storedKind.isEmpty ? RecordKind.query : storedKind
        if let decoded = RecordColumns.members(from: storedMembers) { members = decoded } else { extensions["sandgate.unreadable_members"] = .text(storedMembers) }
        if let decoded = RecordColumns.extensions(from: storedExtensions) {
            extensions.merge(decoded) { kept, _ in kept }
        } else {
            extensions["sandgate.unreadable_extensions"] = .text(storedExtensions)
        }
    }
}
