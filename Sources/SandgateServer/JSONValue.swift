import Foundation
import NIOCore
import SandgateLedger
import SandgateSQLite

/// A decoded JSON value of a request line.
enum JSONValue: Decodable, Equatable, Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    case real(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .real(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    static func parse(_ bytes: ByteBufferView) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The value as JSON text, for echoing a request's `id` (strings and numbers only).
    var idText: String? {
        switch self {
        case .string(let value): return JSONText.quoted(value)
        case .integer(let value): return String(value)
        case .real(let value) where value.isFinite: return "\(value)"
        default: return nil
        }
    }

    /// A bound parameter value (§5): numbers, strings, null, booleans as 1/0, `{"base64": …}` blobs.
    var sqlValue: SQLValue? {
        switch self {
        case .null: return .null
        case .bool(let value): return .integer(value ? 1 : 0)
        case .integer(let value): return .integer(value)
        case .real(let value): return .real(value)
        case .string(let value): return .text(value)
        case .object(let fields):
            guard fields.count == 1, case .string(let encoded)? = fields["base64"], let data = Data(base64Encoded: encoded) else { return nil }
            return .blob(Array(data))
        case .array: return nil
        }
    }
}
